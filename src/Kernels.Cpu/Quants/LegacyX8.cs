using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>A legacy 32-element weight type with 8-row repacked kernels in <see cref="LegacyX8"/>.</summary>
internal interface ILegacyX8
{
    /// <summary>Bytes per plain block.</summary>
    static abstract int TypeSize { get; }

    /// <summary>value = d·q + m (Q4_1, Q5_1; activations Q8_1), else d·(q − 16) (Q5_0; activations Q8_0).</summary>
    static abstract bool HasMin { get; }

    /// <summary>5-bit quants (a fifth bit per element in qh), else 4-bit.</summary>
    static abstract bool FiveBit { get; }
}

internal struct Q4_1x8 : ILegacyX8
{
    public static int TypeSize => Q4_1Format.TypeSize;
    public static bool HasMin => true;
    public static bool FiveBit => false;
}

internal struct Q5_0x8 : ILegacyX8
{
    public static int TypeSize => Q5_0Format.TypeSize;
    public static bool HasMin => false;
    public static bool FiveBit => true;
}

internal struct Q5_1x8 : ILegacyX8
{
    public static int TypeSize => Q5_1Format.TypeSize;
    public static bool HasMin => true;
    public static bool FiveBit => true;
}

/// <summary>
/// Q4_1, Q5_0 and Q5_1 weights repacked at load time, 8 rows interleaved so one int32 lane holds one row (as <see cref="Q4_0x8"/>).
/// Same bytes per block as the plain type. Group-block b for rows r = 0..7: d[8] fp16 (16 B), for Q4_1/Q5_1 m[8] fp16 (16 B), then
/// P_j (j = 0..3, 32 bytes each) whose byte 4r + e holds the low 4 bits of element 4j + e of row r in its low nibble and those of
/// element 16 + 4j + e in its high nibble, then for Q5_0/Q5_1 H (32 B) whose byte 4r + e holds the fifth bits: bit j of element
/// 4j + e, bit 4 + j of element 16 + 4j + e. The −16 of Q5_0 enters as −16·Σy through the Q8_0 activations' block sums; the
/// m·s term of Q4_1/Q5_1 through the Q8_1 activations' float s (<see cref="Q8_1"/>), so the sums equal the reference's.
/// </summary>
internal static unsafe partial class LegacyX8
{
    public const int Rows = 8;
    private const int MinsOffset = Rows * sizeof(ushort);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int GroupBlockBytes<F>() where F : struct, ILegacyX8 => Rows * F.TypeSize;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int QuantsOffset<F>() where F : struct, ILegacyX8 => F.HasMin ? 2 * MinsOffset : MinsOffset;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int HighOffset<F>() where F : struct, ILegacyX8 => QuantsOffset<F>() + 4 * 32;

    /// <summary>Bytes per block of the activation rows: Q8_1 for the min types, Q8_0 for Q5_0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ActBlockBytes<F>() where F : struct, ILegacyX8 => F.HasMin ? Q8_1Format.TypeSize : Q8_0Format.TypeSize;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ActQs<F>() where F : struct, ILegacyX8 => F.HasMin ? Q8_1Format.QsOffset : Q8_0Format.QsOffset;

    /// <summary>Floats per weight block that <see cref="TileScales{F}"/> writes: d of 16 rows, then m of 16 rows for the min types.</summary>
    public static int TileScaleFloats<F>() where F : struct, ILegacyX8 => F.HasMin ? 32 : 16;

    /// <summary>Interleaves 8 plain rows (<paramref name="src"/> + r * <paramref name="srcStride"/>) into <paramref name="dst"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Repack<F>(byte* src, nint srcStride, byte* dst, int n) where F : struct, ILegacyX8
    {
        int nb = n / 32;
        // plain block fields: d at 0, then m (min types), then qh (5-bit types), then qs[16]
        int qhOffset = F.HasMin ? 4 : 2, qsOffset = (F.HasMin ? 4 : 2) + (F.FiveBit ? 4 : 0);
        for (int b = 0; b < nb; b++)
        {
            byte* g = dst + (nint)b * GroupBlockBytes<F>();
            for (int r = 0; r < Rows; r++)
            {
                byte* blk = src + r * srcStride + (nint)b * F.TypeSize;
                ((ushort*)g)[r] = *(ushort*)blk;
                if (F.HasMin) ((ushort*)(g + MinsOffset))[r] = *(ushort*)(blk + 2);
                for (int j = 0; j < 4; j++)
                    for (int e = 0; e < 4; e++)
                        g[QuantsOffset<F>() + 32 * j + 4 * r + e] = blk[qsOffset + 4 * j + e];
                if (!F.FiveBit) continue;
                uint qh = *(uint*)(blk + qhOffset);
                for (int e = 0; e < 4; e++)
                {
                    uint h = 0;
                    for (int j = 0; j < 4; j++) h |= (((qh >> (4 * j + e)) & 1) << j) | (((qh >> (16 + 4 * j + e)) & 1) << (4 + j));
                    g[HighOffset<F>() + 4 * r + e] = (byte)h;
                }
            }
        }
    }

    /// <summary>
    /// Vectors j of a group-block (8 rows × elements 4j..4j+3 and 16+4j..16+4j+3) as whole quants: the nibbles, and for the 5-bit
    /// types the fifth bit moved to bit 4 (16-bit shifts keep each wanted bit within its byte; the mask drops the rest).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Unpack<F>(byte* g, int j, out Vector256<byte> lo, out Vector256<byte> hi) where F : struct, ILegacyX8
    {
        var m4 = Vector256.Create((byte)0x0F);
        Vector256<byte> p = Vector256.Load(g + QuantsOffset<F>() + 32 * j);
        lo = p & m4;
        hi = Vector256.ShiftRightLogical(p.AsUInt16(), 4).AsByte() & m4;
        if (F.FiveBit)
        {
            Vector256<ushort> h = Vector256.Load((ushort*)(g + HighOffset<F>()));
            var m10 = Vector256.Create((byte)0x10);
            lo |= Vector256.ShiftLeft(h, 4 - j).AsByte() & m10;
            hi |= Vector256.ShiftRightLogical(h, j).AsByte() & m10;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Broadcast(byte* p) => Vector256.Create(*(int*)p).AsSByte();

    /// <summary>The integer sum's start: −16·Σy for Q5_0 (its offset), 0 for the min types.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Start<F>(byte* a, int nb, int b) where F : struct, ILegacyX8 => F.HasMin ? 0 : -16 * Q8_0.BlockSums(a, nb)[b];

    /// <summary>The activation block's scale d as float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ActScale<F>(byte* a, int nb, int b) where F : struct, ILegacyX8 =>
        F.HasMin ? Q8_1.BlockScales(a, nb)[b] : Q8_0.BlockScales(a, nb)[b];

    /// <summary>8 rows of the group · one activation row (with its trailers) → result[0..7].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    public static void Dot<F, T>(int n, byte* group, byte* a, float* result) where F : struct, ILegacyX8 where T : struct, IIntDot
    {
        int nb = n / 32;
        Vector256<float> acc = default, accMin = default;
        var c = HalfScales.Constants.Create();
        for (int b = 0; b < nb; b++)
        {
            byte* g = group + (nint)b * GroupBlockBytes<F>();
            Simd.Prefetch(g + Q4_0x8.PrefetchDistance, GroupBlockBytes<F>()); // the group-block that far ahead of the stream
            byte* q = a + (nint)b * ActBlockBytes<F>() + ActQs<F>();
            Vector256<int> s0 = Vector256.Create(Start<F>(a, nb, b)), s1 = default;
            Step<F, T>(g, q, 0, ref s0, ref s1); // written out: constant shifts and offsets (the JIT does not unroll loops)
            Step<F, T>(g, q, 1, ref s0, ref s1);
            Step<F, T>(g, q, 2, ref s0, ref s1);
            Step<F, T>(g, q, 3, ref s0, ref s1);
            Vector256<float> dx = HalfScales.Load8Scaled((ushort*)g, c);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s0 + s1), dx * (ActScale<F>(a, nb, b) * HalfScales.Unbias), acc);
            if (F.HasMin)
                accMin = Fma.MultiplyAdd(HalfScales.Load8Scaled((ushort*)(g + MinsOffset), c),
                    Vector256.Create(Q8_1.BlockSums(a, nb)[b] * HalfScales.Unbias), accMin);
        }
        (acc + accMin).Store(result);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step<F, T>(byte* g, byte* q, int j, ref Vector256<int> s0, ref Vector256<int> s1)
        where F : struct, ILegacyX8 where T : struct, IIntDot
    {
        Unpack<F>(g, j, out var lo, out var hi);
        s0 = T.DotU8S8(s0, lo, Broadcast(q + 4 * j));
        s1 = T.DotU8S8(s1, hi, Broadcast(q + 16 + 4 * j));
    }

    /// <summary>8 rows of the group · 4 activation rows → result[c * 8 + r] (four GEMVs: used only beside the tiles).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot4<F, T>(int n, byte* group, byte* a, nint aStride, float* result) where F : struct, ILegacyX8 where T : struct, IIntDot
    {
        for (int c = 0; c < 4; c++) Dot<F, T>(n, group, a + c * aStride, result + 8 * c);
    }

    /// <summary>The tile's d (and m) of rows 0..15 as floats, per block: scales[TileScaleFloats·b + r] (m at + 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    public static void TileScales<F>(int n, byte* group, nint groupStride, float* scales) where F : struct, ILegacyX8
    {
        int nb = n / 32, per = TileScaleFloats<F>();
        for (int b = 0; b < nb; b++)
            for (int g = 0; g < 2; g++)
            {
                byte* gb = group + (nint)b * GroupBlockBytes<F>() + g * groupStride;
                F16.Load8((ushort*)gb).Store(scales + per * b + 8 * g);
                if (F.HasMin)
                    F16.Load8((ushort*)(gb + MinsOffset)).Store(scales + per * b + 16 + 8 * g);
            }
    }

    /// <summary>
    /// GEMM tile: 16 rows (two consecutive groups, the second at <paramref name="group"/> + <paramref name="groupStride"/>) · 4 activation
    /// rows → y[c * <paramref name="yStride"/> + r], r = 0..15, scales from <see cref="TileScales{F}"/>; each unpacked weight vector
    /// feeds 4 tokens, each broadcast activation both groups.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    public static void Tile16x4<F, T>(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y, nint yStride)
        where F : struct, ILegacyX8 where T : struct, IIntDot
    {
        int nb = n / 32, per = TileScaleFloats<F>();
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
        byte* r0 = a, r1 = a + aStride, r2 = a + 2 * aStride, r3 = a + 3 * aStride;
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * GroupBlockBytes<F>(), g1 = g0 + groupStride;
            nint o = (nint)b * ActBlockBytes<F>() + ActQs<F>();
            Vector256<int> s00 = Vector256.Create(Start<F>(r0, nb, b)), s01 = Vector256.Create(Start<F>(r1, nb, b));
            Vector256<int> s02 = Vector256.Create(Start<F>(r2, nb, b)), s03 = Vector256.Create(Start<F>(r3, nb, b));
            Vector256<int> s10 = s00, s11 = s01, s12 = s02, s13 = s03;
            for (int j = 0; j < 4; j++)
            {
                Unpack<F>(g0, j, out var lo0, out var hi0);
                Unpack<F>(g1, j, out var lo1, out var hi1);
                nint q = o + 4 * j;
                TileStep<T>(ref s00, ref s10, lo0, hi0, lo1, hi1, r0 + q);
                TileStep<T>(ref s01, ref s11, lo0, hi0, lo1, hi1, r1 + q);
                TileStep<T>(ref s02, ref s12, lo0, hi0, lo1, hi1, r2 + q);
                TileStep<T>(ref s03, ref s13, lo0, hi0, lo1, hi1, r3 + q);
            }
            float* sc = scales + per * b;
            Vector256<float> dx0 = Vector256.Load(sc), dx1 = Vector256.Load(sc + 8);
            Q4_0x8.Scale(s00, s10, dx0, dx1, ActScale<F>(r0, nb, b), ref a00, ref a10);
            Q4_0x8.Scale(s01, s11, dx0, dx1, ActScale<F>(r1, nb, b), ref a01, ref a11);
            Q4_0x8.Scale(s02, s12, dx0, dx1, ActScale<F>(r2, nb, b), ref a02, ref a12);
            Q4_0x8.Scale(s03, s13, dx0, dx1, ActScale<F>(r3, nb, b), ref a03, ref a13);
            if (F.HasMin)
            {
                Vector256<float> m0 = Vector256.Load(sc + 16), m1 = Vector256.Load(sc + 24);
                MinStep(m0, m1, Q8_1.BlockSums(r0, nb)[b], ref a00, ref a10);
                MinStep(m0, m1, Q8_1.BlockSums(r1, nb)[b], ref a01, ref a11);
                MinStep(m0, m1, Q8_1.BlockSums(r2, nb)[b], ref a02, ref a12);
                MinStep(m0, m1, Q8_1.BlockSums(r3, nb)[b], ref a03, ref a13);
            }
        }
        a00.Store(y); a10.Store(y + 8);
        a01.Store(y + yStride); a11.Store(y + yStride + 8);
        a02.Store(y + 2 * yStride); a12.Store(y + 2 * yStride + 8);
        a03.Store(y + 3 * yStride); a13.Store(y + 3 * yStride + 8);
    }

    /// <summary>One token's 4 low and 4 high elements against both groups.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TileStep<T>(ref Vector256<int> s0, ref Vector256<int> s1, Vector256<byte> lo0, Vector256<byte> hi0,
        Vector256<byte> lo1, Vector256<byte> hi1, byte* q) where T : struct, IIntDot
    {
        Vector256<sbyte> bl = Broadcast(q), bh = Broadcast(q + 16);
        s0 = T.DotU8S8(T.DotU8S8(s0, lo0, bl), hi0, bh);
        s1 = T.DotU8S8(T.DotU8S8(s1, lo1, bl), hi1, bh);
    }

    /// <summary>acc += m · s for both groups of one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MinStep(Vector256<float> m0, Vector256<float> m1, float s, ref Vector256<float> acc0, ref Vector256<float> acc1)
    {
        var sv = Vector256.Create(s);
        acc0 = Fma.MultiplyAdd(m0, sv, acc0);
        acc1 = Fma.MultiplyAdd(m1, sv, acc1);
    }
}
