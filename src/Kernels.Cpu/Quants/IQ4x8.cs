using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>
/// IQ4_NL and IQ4_XS weights repacked at load time, 8 rows interleaved as <see cref="Q4_0x8"/> (one int32 lane per row), for the
/// decode GEMV, which the plain dots left compute-bound (per 32 elements of one row: a lookup, abs and sign, two multiplies and a
/// horizontal sum at the end). Here each 32-byte vector of nibbles holds 4 elements of 8 rows: one <c>vpshufb</c> looks up their
/// values and one <c>vpdpbusd</c> takes them against 4 broadcast activations. The AVX-VNNI flavour looks up kvalue + 128 (unsigned)
/// and takes 128·Σy off per block (the activations' block sums); the AVX2 flavour takes |kvalue| against y with kvalue's sign
/// (<c>vpmaddubsw</c>'s int16 pairs: 2·127·127 fits). The integer sums are the reference's, exactly.
/// IQ4_NL group-block (144 bytes): Q4_0x8's exactly (8 fp16 d, then P_0..P_3), written by <see cref="Q4_0x8.Repack"/>.
/// IQ4_XS group super-block (1088 bytes, 8 × 136): 8 fp16 d at 0; L (32 bytes) at 16, whose byte 8·(ib mod 4) + r holds the low 4 bits
/// of sub-block ib's 6-bit scale of row r, in its low nibble for ib &lt; 4, its high nibble for ib ≥ 4; H (16 bytes) at 48, whose byte
/// 8·(ib mod 2) + r holds the top 2 bits at bit 2·(ib / 2); then per sub-block ib (128 bytes each, from 64) P_0..P_3 as Q4_0x8's.
/// Prompts convert whole groups into <see cref="Q8_0x8"/> groups for its tiles (<see cref="QuantKernel.ConvertGroup"/>), the same bytes
/// that <see cref="IQ4.NlToQ8_0"/> / <see cref="IQ4.XsToQ8_0x2"/> then the Q8_0 repack would give.
/// </summary>
internal static unsafe class IQ4x8
{
    public const int Rows = 8;
    public const int NlGroupBlockBytes = Rows * IQ4Format.NlTypeSize;
    public const int XsGroupBytes = Rows * IQ4Format.XsTypeSize;
    private const int NlQuants = Rows * sizeof(ushort); // P_0, after the 8 scales
    private const int XsLow = 16, XsHigh = 48, XsQuants = 64;

    /// <summary>The 16 values in both 128-bit lanes: kvalue + 128 as bytes for AVX-VNNI (what the Q8_0x8 biased layout holds), else kvalue.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Table<T>() where T : struct, IIntDot
    {
        var t = Vector128.Create(IQ4Format.Values);
        if (typeof(T) == typeof(VnniDot)) t ^= Vector128.Create(unchecked((sbyte)0x80));
        return Vector256.Create(t, t);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Broadcast(byte* p) => Vector256.Create(*(int*)p).AsSByte();

    /// <summary>The integer sum's start: −128·Σy for the biased values (AVX-VNNI), 0 for the signed ones.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Start<T>(int sumY) where T : struct, IIntDot =>
        typeof(T) == typeof(VnniDot) ? Vector256.Create(-128 * sumY) : Vector256<int>.Zero;

    /// <summary>s + the looked-up values of <paramref name="idx"/> (nibbles) · <paramref name="y"/>, 4 products per row lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Lookup<T>(Vector256<int> s, Vector256<sbyte> table, Vector256<byte> idx, Vector256<sbyte> y)
        where T : struct, IIntDot
    {
        Vector256<sbyte> v = Avx2.Shuffle(table, idx.AsSByte());
        return typeof(T) == typeof(VnniDot) ? T.DotU8S8(s, v.AsByte(), y) : T.DotU8S8(s, Avx2.Abs(v), Avx2.Sign(y, v));
    }

    /// <summary>
    /// One 32-element block of 8 rows (P_0..P_3 at <paramref name="p"/>) against its 32 activations at <paramref name="y"/>:
    /// <paramref name="start"/> + Σ value·y per row lane.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Block<T>(byte* p, byte* y, Vector256<int> start, Vector256<sbyte> table) where T : struct, IIntDot
    {
        Vector256<int> s0 = start, s1 = default;
        Step<T>(p, y, 0, table, ref s0, ref s1); // written out: constant offsets (the JIT does not unroll loops)
        Step<T>(p, y, 1, table, ref s0, ref s1);
        Step<T>(p, y, 2, table, ref s0, ref s1);
        Step<T>(p, y, 3, table, ref s0, ref s1);
        return s0 + s1;
    }

    /// <summary>P_j at <paramref name="p"/> against the 32 activations at <paramref name="y"/> (elements 4j.. low, 16 + 4j.. high).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step<T>(byte* p, byte* y, int j, Vector256<sbyte> table, ref Vector256<int> s0, ref Vector256<int> s1)
        where T : struct, IIntDot
    {
        var m4 = Vector256.Create((byte)0x0F);
        Vector256<byte> q = Vector256.Load(p + 32 * j);
        s0 = Lookup<T>(s0, table, q & m4, Broadcast(y + 4 * j));
        s1 = Lookup<T>(s1, table, Vector256.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & m4, Broadcast(y + 16 + 4 * j));
    }

    /// <summary>8 IQ4_NL rows of the group · one Q8_0 activation row (blocks, block sums Σqs, block scales) → result[0..7].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void DotNl<T>(int n, byte* group, byte* a, float* result) where T : struct, IIntDot
    {
        int nb = n / IQ4Format.NlBlockSize;
        int* sums = Q8_0.BlockSums(a, nb);
        float* dys = Q8_0.BlockScales(a, nb);
        var table = Table<T>();
        var c = HalfScales.Constants.Create();
        Vector256<float> acc = default;
        for (int b = 0; b < nb; b++)
        {
            byte* g = group + (nint)b * NlGroupBlockBytes, p = g + NlQuants;
            Simd.Prefetch(g + Q4_0x8.PrefetchDistance, NlGroupBlockBytes); // the group-block that far ahead of the stream
            byte* y = a + (nint)b * Q8_0Format.TypeSize + Q8_0Format.QsOffset;
            // |Σ| ≤ 32·127·127 < 2^24: the int → float conversion is exact
            Vector256<float> s = Avx.ConvertToVector256Single(Block<T>(p, y, Start<T>(sums[b]), table));
            acc = Fma.MultiplyAdd(s, HalfScales.Load8Scaled((ushort*)g, c) * (dys[b] * HalfScales.Unbias), acc);
        }
        acc.Store(result);
    }

    /// <summary>8 rows · 4 activation rows → result[c * 8 + r] (four GEMVs: a batch of a few tokens).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4Nl<T>(int n, byte* group, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        for (int c = 0; c < 4; c++) DotNl<T>(n, group, a + c * aStride, result + 8 * c);
    }

    /// <summary>Interleaves 8 IQ4_XS rows (<paramref name="src"/> + r * <paramref name="srcStride"/>) into <paramref name="dst"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RepackXs(byte* src, nint srcStride, byte* dst, int n)
    {
        for (int i = 0; i < n / IQ4Format.XsBlockSize; i++)
        {
            byte* g = dst + (nint)i * XsGroupBytes;
            for (int r = 0; r < Rows; r++)
            {
                var x = (BlockIQ4_XS*)(src + r * srcStride + (nint)i * IQ4Format.XsTypeSize);
                ((ushort*)g)[r] = x->D;
                for (int k = 0; k < 4; k++) g[XsLow + 8 * k + r] = (byte)(Raw(x, k) & 15 | (Raw(x, k + 4) & 15) << 4);
                for (int k = 0; k < 2; k++)
                    g[XsHigh + 8 * k + r] = (byte)(Raw(x, k) >> 4 | Raw(x, k + 2) >> 4 << 2 | Raw(x, k + 4) >> 4 << 4 | Raw(x, k + 6) >> 4 << 6);
                for (int ib = 0; ib < 8; ib++)
                    for (int j = 0; j < 4; j++)
                        Unsafe.WriteUnaligned(g + XsQuants + 128 * ib + 32 * j + 4 * r, Unsafe.ReadUnaligned<uint>(x->Qs + 16 * ib + 4 * j));
            }
        }

        static int Raw(BlockIQ4_XS* x, int ib) => IQ4Format.XsScale(x, ib) + 32;
    }

    /// <summary>Sub-block <paramref name="ib"/>'s scales (ls − 32) of the group's 8 rows, one per int32 lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> XsScales(byte* g, int ib)
    {
        Vector256<int> lo = Avx2.ConvertToVector256Int32(g + XsLow + 8 * (ib & 3)), hi = Avx2.ConvertToVector256Int32(g + XsHigh + 8 * (ib & 1));
        lo = Vector256.ShiftRightLogical(lo, 4 * (ib >> 2)) & Vector256.Create(15);
        hi = Vector256.ShiftRightLogical(hi, 2 * (ib >> 1)) & Vector256.Create(3);
        return (lo | hi << 4) - Vector256.Create(32);
    }

    /// <summary>8 IQ4_XS rows of the group · one Q8_K activation row → result[0..7]: per super-block d·d_y·Σ_ib (ls − 32)·Σ kvalue·y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void DotXs<T>(int n, byte* group, byte* a, float* result) where T : struct, IIntDot
    {
        var table = Table<T>();
        var c = HalfScales.Constants.Create();
        Vector256<float> acc = default;
        for (int i = 0; i < n / IQ4Format.XsBlockSize; i++)
        {
            byte* g = group + (nint)i * XsGroupBytes;
            byte* y = a + (nint)i * Q8_KFormat.TypeSize;
            short* bsums = (short*)(y + Q8_KFormat.BSumsOffset);
            Vector256<int> isum = default;
            for (int ib = 0; ib < 8; ib++)
            {
                byte* p = g + XsQuants + 128 * ib, q = y + Q8_KFormat.QsOffset + 32 * ib;
                Simd.Prefetch(p + Q4_0x8.PrefetchDistance, 128);
                Vector256<int> s = Block<T>(p, q, Start<T>(bsums[2 * ib] + bsums[2 * ib + 1]), table);
                isum += Avx2.MultiplyLow(s, XsScales(g, ib)); // |Σ_ib| ≤ 8·32·32·127·128: no overflow
            }
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), HalfScales.Load8Scaled((ushort*)g, c) * (*(float*)y * HalfScales.Unbias), acc);
        }
        acc.Store(result);
    }

    /// <summary>8 rows · 4 activation rows → result[c * 8 + r].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4Xs<T>(int n, byte* group, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        for (int c = 0; c < 4; c++) DotXs<T>(n, group, a + c * aStride, result + 8 * c);
    }

    /// <summary>
    /// An IQ4_NL group of <paramref name="n"/> columns → a <see cref="Q8_0x8"/> group (biased for AVX-VNNI, signed for AVX2, as the
    /// Q8_0 kernels of that level repack): the same d, and V_j / V_{4 + j} the looked-up low / high nibbles of P_j.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void NlToQ8_0x8<T>(byte* src, byte* dst, int n) where T : struct, IIntDot
    {
        var table = Table<T>();
        for (int b = 0; b < n / IQ4Format.NlBlockSize; b++)
        {
            byte* g = src + (nint)b * NlGroupBlockBytes, o = dst + (nint)b * Q8_0x8.GroupBlockBytes;
            Vector128.Load(g).Store(o);
            LookUpBlock(g + NlQuants, o, table);
        }
    }

    /// <summary>P_0..P_3 at <paramref name="p"/> looked up into V_0..V_7 of the Q8_0x8 group-block at <paramref name="o"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LookUpBlock(byte* p, byte* o, Vector256<sbyte> table)
    {
        var m4 = Vector256.Create((byte)0x0F);
        for (int j = 0; j < 4; j++)
        {
            Vector256<byte> q = Vector256.Load(p + 32 * j);
            Vector256<byte> h = Vector256.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & m4;
            Avx2.Shuffle(table, (q & m4).AsSByte()).Store((sbyte*)(o + NlQuants + 32 * j));
            Avx2.Shuffle(table, h.AsSByte()).Store((sbyte*)(o + NlQuants + 32 * (4 + j)));
        }
    }

    /// <summary>
    /// An IQ4_XS group of <paramref name="n"/> columns → a <see cref="Q8_0x8"/> group of 2n columns, as <see cref="IQ4.XsToQ8_0x2"/>
    /// then the Q8_0 repack of that level give: blocks 0..n/32 the hi parts of (ls − 32)·kvalue with scale 32·d, then the lo parts
    /// with scale d.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void XsToQ8_0x8x2<T>(byte* src, byte* dst, int n) where T : struct, IIntDot
    {
        var table = Table<Avx2Dot>(); // the signed values: they are multiplied first
        var m4 = Vector256.Create((byte)0x0F);
        var bias = Vector256.Create(typeof(T) == typeof(VnniDot) ? unchecked((sbyte)0x80) : (sbyte)0);
        var lowRows = Vector256.Create(0, 0, 1, 1, 2, 2, 3, 3);
        var highRows = Vector256.Create(4, 4, 5, 5, 6, 6, 7, 7);
        int blocks = n / 32;
        ushort* dHi = stackalloc ushort[Rows];
        for (int i = 0; i < n / IQ4Format.XsBlockSize; i++)
        {
            byte* g = src + (nint)i * XsGroupBytes;
            for (int r = 0; r < Rows; r++) dHi[r] = HalfBits.FromFloat(32 * HalfBits.ToFloat(((ushort*)g)[r]));
            for (int ib = 0; ib < 8; ib++)
            {
                byte* hi = dst + (nint)(8 * i + ib) * Q8_0x8.GroupBlockBytes, lo = hi + (nint)blocks * Q8_0x8.GroupBlockBytes;
                Vector128.Load(dHi).Store((ushort*)hi);
                Vector128.Load((ushort*)g).Store((ushort*)lo);
                // each row's scale in the 4 int16 lanes of its 4 bytes, rows 0-3 then 4-7
                Vector256<int> sc = XsScales(g, ib), s0 = Avx2.PermuteVar8x32(sc, lowRows), s1 = Avx2.PermuteVar8x32(sc, highRows);
                Vector256<short> a0 = (s0 & Vector256.Create(0xFFFF) | s0 << 16).AsInt16(), a1 = (s1 & Vector256.Create(0xFFFF) | s1 << 16).AsInt16();
                byte* p = g + XsQuants + 128 * ib;
                for (int j = 0; j < 4; j++)
                {
                    Vector256<byte> q = Vector256.Load(p + 32 * j);
                    Vector256<byte> h = Vector256.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & m4;
                    Split(Avx2.Shuffle(table, (q & m4).AsSByte()), a0, a1, bias, hi + 16 + 32 * j, lo + 16 + 32 * j);
                    Split(Avx2.Shuffle(table, h.AsSByte()), a0, a1, bias, hi + 16 + 32 * (4 + j), lo + 16 + 32 * (4 + j));
                }
            }
        }
    }

    /// <summary>
    /// IQ4_XS prompts in one pass (<see cref="ScaledVia"/>): a group of <paramref name="n"/> columns → a <see cref="Q8_0x8"/> group of
    /// the kvalues alone (biased for AVX-VNNI), each 32-element sub-block one Q8_0 block whose scale d·(ls − 32), exact in float32
    /// but not in the group's fp16, comes from <see cref="XsTileScales"/> instead (the group's d are left zero).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void XsToQ8_0x8<T>(byte* src, byte* dst, int n) where T : struct, IIntDot
    {
        var table = Table<T>();
        for (int b = 0; b < n / 32; b++)
        {
            byte* p = src + (nint)(b / 8) * XsGroupBytes + XsQuants + 128 * (b % 8), o = dst + (nint)b * Q8_0x8.GroupBlockBytes;
            Vector128<byte>.Zero.Store(o);
            LookUpBlock(p, o, table);
        }
    }

    /// <summary>Sub-block ib's scales d·(ls − 32) of the group's 8 rows as floats (exact: 11 by 6 significant bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> XsBlockScales(byte* g, int ib) => F16.Load8((ushort*)g) * Avx.ConvertToVector256Single(XsScales(g, ib));

    /// <summary>The Q8_0 tile's scales for two consecutive IQ4_XS groups: scales[16·b + r] = d_r·(ls_{r,b} − 32) per 32-element block b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void XsTileScales(int n, byte* group, nint groupStride, float* scales)
    {
        for (int b = 0; b < n / 32; b++)
        {
            byte* g = group + (nint)(b / 8) * XsGroupBytes;
            XsBlockScales(g, b % 8).Store(scales + 16 * b);
            XsBlockScales(g + groupStride, b % 8).Store(scales + 16 * b + 8);
        }
    }

    /// <summary>
    /// 8 IQ4_XS rows of the group · one row of the Q8_0 tiles' activations (<see cref="ScaledVia"/>: the tokens a tile leaves): per
    /// 32-element block Σ kvalue·y exactly, times d·(ls − 32) and the activations' d. Those activations' block sums are −128·Σqs for
    /// AVX-VNNI (<see cref="Q8_0.VnniSumFactor"/>), the start of the biased sums as they are.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void DotXsQ8_0<T>(int n, byte* group, byte* a, float* result) where T : struct, IIntDot
    {
        int nb = n / 32;
        int* sums = Q8_0.BlockSums(a, nb);
        float* dys = Q8_0.BlockScales(a, nb);
        var table = Table<T>();
        Vector256<float> acc = default;
        for (int b = 0; b < nb; b++)
        {
            byte* g = group + (nint)(b / 8) * XsGroupBytes, p = g + XsQuants + 128 * (b % 8);
            Simd.Prefetch(p + Q4_0x8.PrefetchDistance, 128);
            byte* y = a + (nint)b * Q8_0Format.TypeSize + Q8_0Format.QsOffset;
            Vector256<int> start = typeof(T) == typeof(VnniDot) ? Vector256.Create(sums[b]) : default; // already −128·Σqs
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Block<T>(p, y, start, table)), XsBlockScales(g, b % 8) * dys[b], acc);
        }
        acc.Store(result);
    }

    /// <summary>8 rows · 4 activation rows → result[c * 8 + r].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4XsQ8_0<T>(int n, byte* group, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        for (int c = 0; c < 4; c++) DotXsQ8_0<T>(n, group, a + c * aStride, result + 8 * c);
    }

    /// <summary>32 values (rows 0-3, then 4-7) times their rows' scales: the hi parts (p &gt;&gt; 5) and the lo parts (p &amp; 31), biased.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Split(Vector256<sbyte> v, Vector256<short> a0, Vector256<short> a1, Vector256<sbyte> bias, byte* hi, byte* lo)
    {
        var m31 = Vector256.Create((short)31);
        Vector256<short> p0 = Avx2.ConvertToVector256Int16(v.GetLower()) * a0, p1 = Avx2.ConvertToVector256Int16(v.GetUpper()) * a1;
        (Vector256.Narrow(Vector256.ShiftRightArithmetic(p0, 5), Vector256.ShiftRightArithmetic(p1, 5)) ^ bias).Store((sbyte*)hi);
        (Vector256.Narrow(p0 & m31, p1 & m31) ^ bias).Store((sbyte*)lo);
    }
}
