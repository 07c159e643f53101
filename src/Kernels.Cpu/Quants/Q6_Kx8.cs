using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>
/// Q6_K weights repacked at load time, 8 rows interleaved so one int32 lane holds one row (see <see cref="Q4_0x8"/>). Same bytes per
/// super-block as Q6_K. The 6-bit weights stay unsigned (q in 0..63, value = d·sc·(q − 32)); the −32 is applied once per super-block
/// through the activations' 16-element sums (Q8_K bsums), as ggml does. Group super-block (1680 bytes) for rows r = 0..7:
/// <list type="bullet">
/// <item>d[8] fp16 (16 B);</item>
/// <item>the int8 scales as pairs (128 B): byte 16p + 2r + j = sc_r[2p + j] (p = 0..7), so one sign extension gives int16 lanes
/// (sc[2p], sc[2p + 1]) per row;</item>
/// <item>for each 16-element sub-block s = 0..15 (96 B at 144 + 96s), three 32-byte vectors V_k (k = 0..2) whose byte 4r + e is
/// q_r[16s + 4k + e] in bits 0-5 and bits 2k, 2k + 1 of q_r[16s + 12 + e] in bits 6-7: columns 0-2 unpack with one AND,
/// column 3 is gathered from the three top bit pairs.</item>
/// </list>
/// </summary>
public static unsafe partial class Q6_Kx8
{
    public const int Rows = 8;
    public const int GroupBlockBytes = Rows * Q6_KFormat.TypeSize;
    private const int ScalesOffset = Rows * sizeof(ushort); // after d[8]
    private const int QuantsOffset = ScalesOffset + Rows * 16; // after the 16 int8 scales of each row
    private const int SubBlockBytes = 3 * 32;

    /// <summary>
    /// Interleaves 8 Q6_K rows (<paramref name="src"/> + r * <paramref name="srcStride"/>) of <paramref name="n"/> elements into
    /// <paramref name="dst"/> (8 × row bytes).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Repack(byte* src, nint srcStride, byte* dst, int n)
    {
        int nb = n / Q6_KFormat.BlockSize;
        byte* q = stackalloc byte[Q6_KFormat.BlockSize];
        for (int b = 0; b < nb; b++)
        {
            byte* g = dst + (nint)b * GroupBlockBytes;
            for (int r = 0; r < Rows; r++)
            {
                byte* blk = src + r * srcStride + (nint)b * Q6_KFormat.TypeSize;
                Unpack6(blk, q);
                ((ushort*)g)[r] = *(ushort*)(blk + Q6_KFormat.DOffset);
                for (int p = 0; p < 8; p++)
                    for (int j = 0; j < 2; j++)
                        g[ScalesOffset + 16 * p + 2 * r + j] = blk[Q6_KFormat.ScalesOffset + 2 * p + j];
                for (int s = 0; s < 16; s++)
                {
                    // the 4 bytes of row r in V_k as one little-endian uint: byte e = q[16s + 4k + e] | bits 2k, 2k + 1 of q[16s + 12 + e] << 6
                    uint col3 = *(uint*)(q + 16 * s + 12);
                    for (int k = 0; k < 3; k++)
                        *(uint*)(g + QuantsOffset + SubBlockBytes * s + 32 * k + 4 * r) =
                            *(uint*)(q + 16 * s + 4 * k) | (((col3 >> (2 * k)) & 0x03030303u) << 6);
                }
            }
        }
    }

    /// <summary>The 256 unsigned 6-bit values (0..63) of one Q6_K block, in element order (see <see cref="BlockQ6_K"/>); 32 at a time.</summary>
    private static void Unpack6(byte* blk, byte* q)
    {
        var m0F = Vector256.Create((byte)0x0F);
        var m30 = Vector256.Create((byte)0x30);
        for (int h = 0; h < 2; h++)
        {
            Vector256<byte> ql0 = Vector256.Load(blk + 64 * h), ql1 = Vector256.Load(blk + 64 * h + 32);
            Vector256<byte> qh = Vector256.Load(blk + Q6_KFormat.QhOffset + 32 * h);
            byte* o = q + 128 * h;
            ((ql0 & m0F) | ((qh << 4) & m30)).Store(o);
            ((ql1 & m0F) | ((qh << 2) & m30)).Store(o + 32);
            ((ql0 >> 4) | (qh & m30)).Store(o + 64);
            ((ql1 >> 4) | ((qh >> 2) & m30)).Store(o + 96);
        }
    }

    /// <summary>Column k = 0..2 of a sub-block: the 6-bit values are bits 0-5 of V_k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Column(byte* sub, int k) => Vector256.Load(sub + 32 * k) & Vector256.Create((byte)0x3F);

    /// <summary>
    /// Column 3 of a sub-block: bits 0-1, 2-3, 4-5 from the top bit pairs of V_0, V_1, V_2: two bit-selects (vpternlog) in the VNNI
    /// flavour where AVX-512VL is present, else masks, so the AVX2 flavour (and its tests) uses no AVX-512 instruction.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Column3<T>(byte* sub) where T : struct, IIntDot =>
        Column3<T>(Vector256.Load(sub), Vector256.Load(sub + 32), Vector256.Load(sub + 64));

    /// <summary>Column 3 from the sub-block's three vectors already loaded.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Column3<T>(Vector256<byte> v0, Vector256<byte> v1, Vector256<byte> v2) where T : struct, IIntDot
    {
        // 16-bit shifts: the wanted bit pair of each byte lands in place; the bits shifted in from the neighbour byte are masked off
        Vector256<byte> a = Vector256.ShiftRightLogical(v0.AsUInt16(), 6).AsByte();
        Vector256<byte> b = Vector256.ShiftRightLogical(v1.AsUInt16(), 4).AsByte();
        Vector256<byte> c = Vector256.ShiftRightLogical(v2.AsUInt16(), 2).AsByte();
        if (typeof(T) == typeof(VnniDot) && Avx512F.VL.IsSupported)
            return Vector256.ConditionalSelect(Vector256.Create((byte)0x03), a, Vector256.ConditionalSelect(Vector256.Create((byte)0x0C), b, c))
                & Vector256.Create((byte)0x3F);
        return (a & Vector256.Create((byte)0x03)) | (b & Vector256.Create((byte)0x0C)) | (c & Vector256.Create((byte)0x30));
    }

    /// <summary>The scales of sub-blocks 2p and 2p + 1 as int16 pairs per row lane: lane r = sc_r[2p] | sc_r[2p + 1] &lt;&lt; 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ScalePair(byte* g, int p) =>
        Avx2.ConvertToVector256Int16((sbyte*)(g + ScalesOffset + 16 * p)).AsInt32();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> EvenScale(Vector256<int> pair) => Vector256.ShiftRightArithmetic(pair << 16, 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> OddScale(Vector256<int> pair) => Vector256.ShiftRightArithmetic(pair, 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Broadcast4(byte* q8) => Vector256.Create(*(int*)q8).AsSByte();

    /// <summary>
    /// Σ q·y over sub-block <paramref name="s"/> (16 elements) of 8 rows against one Q8_K block; q unsigned, |Σ| ≤ 16·63·127.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SubBlock<T>(byte* g, byte* y, int s) where T : struct, IIntDot
    {
        byte* sub = g + QuantsOffset + SubBlockBytes * s;
        byte* q8 = y + Q8_KFormat.QsOffset + 16 * s;
        // each of the three vectors loaded once: columns 0-2 are their low 6 bits, column 3 their top bit pairs
        Vector256<byte> v0 = Vector256.Load(sub), v1 = Vector256.Load(sub + 32), v2 = Vector256.Load(sub + 64);
        var m3F = Vector256.Create((byte)0x3F);
        Vector256<int> s01 = T.DotU8S8(T.DotU8S8(Vector256<int>.Zero, v0 & m3F, Broadcast4(q8)), v1 & m3F, Broadcast4(q8 + 4));
        Vector256<int> s23 = T.DotU8S8(T.DotU8S8(Vector256<int>.Zero, v2 & m3F, Broadcast4(q8 + 8)), Column3<T>(v0, v1, v2),
            Broadcast4(q8 + 12));
        return s01 + s23;
    }

    /// <summary>
    /// Sub-blocks 2p and 2p + 1 (<paramref name="p"/> a constant after inlining): isum += sc·Σq·y for both, and
    /// offset += sc[2p]·bsum[2p] + sc[2p + 1]·bsum[2p + 1] (int16 multiply-add: |sc| ≤ 128, |bsum| ≤ 16·127).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Pair<T>(byte* g, byte* y, int p, ref Vector256<int> isum, ref Vector256<int> offset) where T : struct, IIntDot
    {
        Vector256<int> sc = ScalePair(g, p);
        offset = T.MaddS16(offset, sc.AsInt16(), Vector256.Create(*(int*)(y + Q8_KFormat.BSumsOffset + 4 * p)).AsInt16());
        isum += Avx2.MultiplyLow(SubBlock<T>(g, y, 2 * p), EvenScale(sc))
            + Avx2.MultiplyLow(SubBlock<T>(g, y, 2 * p + 1), OddScale(sc));
    }

    /// <summary>
    /// 8 rows of the group · one Q8_K activation row → result[0..7]. Per super-block and row the integer sum
    /// Σ_s sc_s·Σq·y − 32·Σ_s sc_s·bsum_s equals the reference's Σ_s sc_s·Σ(q − 32)·y exactly (|·| &lt; 2^29).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Dot<T>(int n, byte* group, byte* a, float* result) where T : struct, IIntDot
    {
        int nb = n / Q6_KFormat.BlockSize;
        Vector256<float> acc = default;
        for (int b = 0; b < nb; b++)
        {
            byte* g = group + (nint)b * GroupBlockBytes;
            Simd.Prefetch(g + Q4_0x8.PrefetchDistance, GroupBlockBytes); // the group super-block that far ahead of the stream
            byte* y = a + (nint)b * Q8_KFormat.TypeSize;
            Vector256<int> isum = default, offset = default;
            // the eight sub-block pairs written out, so every offset is a constant (the JIT does not unroll loops)
            Pair<T>(g, y, 0, ref isum, ref offset);
            Pair<T>(g, y, 1, ref isum, ref offset);
            Pair<T>(g, y, 2, ref isum, ref offset);
            Pair<T>(g, y, 3, ref isum, ref offset);
            Pair<T>(g, y, 4, ref isum, ref offset);
            Pair<T>(g, y, 5, ref isum, ref offset);
            Pair<T>(g, y, 6, ref isum, ref offset);
            Pair<T>(g, y, 7, ref isum, ref offset);
            Vector256<float> d = HalfScales.Load8Scaled((ushort*)g) * (HalfScales.Unbias * *(float*)y);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum - (offset << 5)), d, acc);
        }
        acc.Store(result);
    }

    /// <summary>
    /// 8 rows of the group · 4 Q8_K activation rows (<paramref name="a"/> + c * <paramref name="aStride"/>) → result[c * 8 + r];
    /// each sub-block is unpacked once for the 4 rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4<T>(int n, byte* group, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        int nb = n / Q6_KFormat.BlockSize;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int b = 0; b < nb; b++)
        {
            byte* g = group + (nint)b * GroupBlockBytes;
            // a batch of exactly 4 tokens starts here with the weights in DRAM (MatMulDriver's remainder): stream them as the GEMV does
            Simd.Prefetch(g + Q4_0x8.PrefetchDistance, GroupBlockBytes);
            nint o = (nint)b * Q8_KFormat.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default, o0 = default, o1 = default, o2 = default, o3 = default;
            for (int p = 0; p < 8; p++)
            {
                Vector256<int> sc = ScalePair(g, p);
                o0 = T.MaddS16(o0, sc.AsInt16(), Vector256.Create(*(int*)(y0 + Q8_KFormat.BSumsOffset + 4 * p)).AsInt16());
                o1 = T.MaddS16(o1, sc.AsInt16(), Vector256.Create(*(int*)(y1 + Q8_KFormat.BSumsOffset + 4 * p)).AsInt16());
                o2 = T.MaddS16(o2, sc.AsInt16(), Vector256.Create(*(int*)(y2 + Q8_KFormat.BSumsOffset + 4 * p)).AsInt16());
                o3 = T.MaddS16(o3, sc.AsInt16(), Vector256.Create(*(int*)(y3 + Q8_KFormat.BSumsOffset + 4 * p)).AsInt16());
                SubBlock4<T>(g, 2 * p, EvenScale(sc), y0, y1, y2, y3, ref i0, ref i1, ref i2, ref i3);
                SubBlock4<T>(g, 2 * p + 1, OddScale(sc), y0, y1, y2, y3, ref i0, ref i1, ref i2, ref i3);
            }
            Vector256<float> d = HalfScales.Load8Scaled((ushort*)g) * HalfScales.Unbias;
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0 - (o0 << 5)), d * *(float*)y0, acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1 - (o1 << 5)), d * *(float*)y1, acc1);
            acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2 - (o2 << 5)), d * *(float*)y2, acc2);
            acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3 - (o3 << 5)), d * *(float*)y3, acc3);
        }
        acc0.Store(result); acc1.Store(result + 8); acc2.Store(result + 16); acc3.Store(result + 24);
    }

    /// <summary>Sub-block <paramref name="s"/> of one group against 4 activation rows: i_c += sc·Σq·y_c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlock4<T>(byte* g, int s, Vector256<int> sc, byte* y0, byte* y1, byte* y2, byte* y3,
        ref Vector256<int> i0, ref Vector256<int> i1, ref Vector256<int> i2, ref Vector256<int> i3) where T : struct, IIntDot
    {
        byte* sub = g + QuantsOffset + SubBlockBytes * s;
        int q = Q8_KFormat.QsOffset + 16 * s;
        Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
        Step4<T>(Column(sub, 0), q, y0, y1, y2, y3, ref s0, ref s1, ref s2, ref s3);
        Step4<T>(Column(sub, 1), q + 4, y0, y1, y2, y3, ref s0, ref s1, ref s2, ref s3);
        Step4<T>(Column(sub, 2), q + 8, y0, y1, y2, y3, ref s0, ref s1, ref s2, ref s3);
        Step4<T>(Column3<T>(sub), q + 12, y0, y1, y2, y3, ref s0, ref s1, ref s2, ref s3);
        i0 += Avx2.MultiplyLow(s0, sc); i1 += Avx2.MultiplyLow(s1, sc);
        i2 += Avx2.MultiplyLow(s2, sc); i3 += Avx2.MultiplyLow(s3, sc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step4<T>(Vector256<byte> w, int q, byte* y0, byte* y1, byte* y2, byte* y3,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3) where T : struct, IIntDot
    {
        s0 = T.DotU8S8(s0, w, Broadcast4(y0 + q)); s1 = T.DotU8S8(s1, w, Broadcast4(y1 + q));
        s2 = T.DotU8S8(s2, w, Broadcast4(y2 + q)); s3 = T.DotU8S8(s3, w, Broadcast4(y3 + q));
    }

    /// <summary>
    /// Floats per super-block that <see cref="TileScales"/> writes: d·sc_s of both groups (2 × 16 × 8), then −32·d of both (2 × 8).
    /// </summary>
    internal const int TileScaleFloats = 272;

    /// <summary>
    /// The tile's scales as floats, converted once per tile and reused by every 4-token call. Super-block b at scales + 272 b:
    /// [g][s][r] = d_r · sc_s,r (g = 0, 1; 256 floats), then −32·d_r of group 0 and group 1 (16 floats).
    /// d · sc is exact in float (a half times an 8-bit integer needs ≤ 19 significant bits), and so is −32·d.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void TileScales(int n, byte* group, nint groupStride, float* scales)
    {
        int nb = n / Q6_KFormat.BlockSize;
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * GroupBlockBytes;
            float* dst = scales + (nint)b * TileScaleFloats;
            for (int grp = 0; grp < 2; grp++)
            {
                byte* g = g0 + grp * groupStride;
                Vector256<float> d = F16.Load8((ushort*)g);
                for (int p = 0; p < 8; p++)
                {
                    Vector256<int> sc = ScalePair(g, p);
                    (Avx.ConvertToVector256Single(EvenScale(sc)) * d).Store(dst + 128 * grp + 16 * p);
                    (Avx.ConvertToVector256Single(OddScale(sc)) * d).Store(dst + 128 * grp + 16 * p + 8);
                }
                (d * -32f).Store(dst + 256 + 8 * grp);
            }
        }
    }

    /// <summary>
    /// GEMM tile: 16 rows (two consecutive groups, the second at <paramref name="group"/> + <paramref name="groupStride"/>) · 4 Q8_K
    /// activation rows (<paramref name="a"/> + c * <paramref name="aStride"/>) → y[c * <paramref name="yStride"/> + r], r = 0..15,
    /// with the scales from <see cref="TileScales"/>. Per sub-block: 8 integer dots per column share each unpacked weight vector and
    /// each broadcast activation; the scale d·sc is applied in float (|Σq·y| ≤ 16·63·127, exact as float); the −32 offset
    /// Σ_s sc_s·bsum_s with int16 multiply-adds once per super-block (|·| ≤ 16·128·2032 &lt; 2^24, exact as float).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Tile16x4<T>(int n, byte* group, nint groupStride, float* tileScales, byte* a, nint aStride, float* y,
        nint yStride) where T : struct, IIntDot
    {
        int nb = n / Q6_KFormat.BlockSize;
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * GroupBlockBytes, g1 = g0 + groupStride;
            nint o = (nint)b * Q8_KFormat.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            float* scales = tileScales + (nint)b * TileScaleFloats;
            Vector256<float> f00 = default, f01 = default, f02 = default, f03 = default, f10 = default, f11 = default, f12 = default, f13 = default;
            for (int s = 0; s < 16; s++)
                TileSubBlock<T>(g0 + QuantsOffset + SubBlockBytes * s, g1 + QuantsOffset + SubBlockBytes * s,
                    Q8_KFormat.QsOffset + 16 * s, y0, y1, y2, y3,
                    scales + 8 * s, scales + 128 + 8 * s, ref f00, ref f01, ref f02, ref f03, ref f10, ref f11, ref f12, ref f13);
            Vector256<int> o00 = default, o01 = default, o02 = default, o03 = default, o10 = default, o11 = default, o12 = default, o13 = default;
            for (int p = 0; p < 8; p++)
            {
                Vector256<short> sc0 = ScalePair(g0, p).AsInt16(), sc1 = ScalePair(g1, p).AsInt16();
                int bo = Q8_KFormat.BSumsOffset + 4 * p;
                OffsetStep<T>(sc0, sc1, y0 + bo, ref o00, ref o10);
                OffsetStep<T>(sc0, sc1, y1 + bo, ref o01, ref o11);
                OffsetStep<T>(sc0, sc1, y2 + bo, ref o02, ref o12);
                OffsetStep<T>(sc0, sc1, y3 + bo, ref o03, ref o13);
            }
            Vector256<float> m0 = Vector256.Load(scales + 256), m1 = Vector256.Load(scales + 264);
            Finish(y0, f00, f10, o00, o10, m0, m1, ref a00, ref a10);
            Finish(y1, f01, f11, o01, o11, m0, m1, ref a01, ref a11);
            Finish(y2, f02, f12, o02, o12, m0, m1, ref a02, ref a12);
            Finish(y3, f03, f13, o03, o13, m0, m1, ref a03, ref a13);
        }
        a00.Store(y); a10.Store(y + 8);
        a01.Store(y + yStride); a11.Store(y + yStride + 8);
        a02.Store(y + 2 * yStride); a12.Store(y + 2 * yStride + 8);
        a03.Store(y + 3 * yStride); a13.Store(y + 3 * yStride + 8);
    }

    /// <summary>
    /// One sub-block of both groups (<paramref name="p0"/>, <paramref name="p1"/>) against 4 tokens' 16 activations (at offset
    /// <paramref name="q"/>); f += float(Σq·y) · d·sc.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TileSubBlock<T>(byte* p0, byte* p1, int q, byte* y0, byte* y1, byte* y2, byte* y3, float* sc0, float* sc1,
        ref Vector256<float> f00, ref Vector256<float> f01, ref Vector256<float> f02, ref Vector256<float> f03,
        ref Vector256<float> f10, ref Vector256<float> f11, ref Vector256<float> f12, ref Vector256<float> f13) where T : struct, IIntDot
    {
        Vector256<int> s00 = default, s01 = default, s02 = default, s03 = default, s10 = default, s11 = default, s12 = default, s13 = default;
        TileStep<T>(Column(p0, 0), Column(p1, 0), q, y0, y1, y2, y3, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(Column(p0, 1), Column(p1, 1), q + 4, y0, y1, y2, y3, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(Column(p0, 2), Column(p1, 2), q + 8, y0, y1, y2, y3, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(Column3<T>(p0), Column3<T>(p1), q + 12, y0, y1, y2, y3, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        Vector256<float> c0 = Vector256.Load(sc0), c1 = Vector256.Load(sc1);
        f00 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s00), c0, f00); f10 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s10), c1, f10);
        f01 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s01), c0, f01); f11 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s11), c1, f11);
        f02 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s02), c0, f02); f12 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s12), c1, f12);
        f03 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s03), c0, f03); f13 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s13), c1, f13);
    }

    /// <summary>One column (4 elements) of both groups' unpacked weights against the 4 tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TileStep<T>(Vector256<byte> w0, Vector256<byte> w1, int q, byte* y0, byte* y1, byte* y2, byte* y3,
        ref Vector256<int> s00, ref Vector256<int> s01, ref Vector256<int> s02, ref Vector256<int> s03,
        ref Vector256<int> s10, ref Vector256<int> s11, ref Vector256<int> s12, ref Vector256<int> s13) where T : struct, IIntDot
    {
        Vector256<sbyte> b0 = Broadcast4(y0 + q), b1 = Broadcast4(y1 + q);
        s00 = T.DotU8S8(s00, w0, b0); s10 = T.DotU8S8(s10, w1, b0);
        s01 = T.DotU8S8(s01, w0, b1); s11 = T.DotU8S8(s11, w1, b1);
        Vector256<sbyte> b2 = Broadcast4(y2 + q), b3 = Broadcast4(y3 + q);
        s02 = T.DotU8S8(s02, w0, b2); s12 = T.DotU8S8(s12, w1, b2);
        s03 = T.DotU8S8(s03, w0, b3); s13 = T.DotU8S8(s13, w1, b3);
    }

    /// <summary>The scale pair p of both groups times one token's bsum pair p (int32 at <paramref name="bsumPair"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OffsetStep<T>(Vector256<short> sc0, Vector256<short> sc1, byte* bsumPair, ref Vector256<int> o0, ref Vector256<int> o1)
        where T : struct, IIntDot
    {
        Vector256<short> bb = Vector256.Create(*(int*)bsumPair).AsInt16();
        o0 = T.MaddS16(o0, sc0, bb);
        o1 = T.MaddS16(o1, sc1, bb);
    }

    /// <summary>acc += yd · (f − 32·d · Σ_s sc_s·bsum_s) for both groups of one token (f already carries d·sc_s; m = −32·d).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish(byte* yBlock, Vector256<float> f0, Vector256<float> f1, Vector256<int> o0, Vector256<int> o1,
        Vector256<float> m0, Vector256<float> m1, ref Vector256<float> acc0, ref Vector256<float> acc1)
    {
        var yd = Vector256.Create(*(float*)yBlock);
        acc0 = Fma.MultiplyAdd(Fma.MultiplyAdd(Avx.ConvertToVector256Single(o0), m0, f0), yd, acc0);
        acc1 = Fma.MultiplyAdd(Fma.MultiplyAdd(Avx.ConvertToVector256Single(o1), m1, f1), yd, acc1);
    }
}
