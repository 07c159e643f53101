using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>
/// Q5_K weights repacked at load time, 8 rows interleaved so one int32 lane holds one row (as <see cref="Q4_Kx8"/>), with the 5-bit
/// weights split 5 + 3 + 2 so the low sub-block of each pair comes out with one AND. Same bytes per super-block as Q5_K (8 × 176).
/// Group super-block (1408 bytes) for rows r = 0..7, with q(i) the 5-bit weight (0..31) of element i of row r:
/// d[8] fp16 (16 B), dmin[8] fp16 (16 B), the 12 packed scale bytes of each row as three uint arrays A0[8], A1[8], A2[8] (96 B),
/// then for c = 0..3 and k = 0..7 a 32-byte vector X(c,k) whose byte 4r + e is q(64c + 4k + e) (sub-block 2c) in bits 0-4 and
/// bits 0-2 of h = q(64c + 32 + 4k + e) (sub-block 2c + 1) in bits 5-7,
/// then for k = 0..7 a 32-byte vector Y(k) whose byte 4r + e holds bits 3-4 of that h for c = 0..3 in its bits 2c, 2c + 1.
/// The kernels take w = X &amp; 0x1F and 2h = ((X &gt;&gt; 4) &amp; 0x0E) | (Y shifted so bits 2c, 2c+1 land on 4, 5) &amp; 0x30
/// (≤ 62: unsigned, fits vpdpbusd, and vpmaddubsw pairs 2·62·128 &lt; 32767), halving the doubled sums exactly; the VNNI GEMV
/// instead dots X &amp; 0xE0 and Y &amp; (3 &lt;&lt; 2c) separately (no shifts; see <see cref="StepSplit{T}"/>).
/// </summary>
public static unsafe partial class Q5_Kx8
{
    public const int Rows = 8;
    public const int GroupBlockBytes = Rows * Q5_KFormat.TypeSize;
    private const int QuantsOffset = Q4_Kx8.QuantsOffset; // after the header Q4_Kx8 shares
    internal const int HighBitsOffset = QuantsOffset + 4 * Q4_Kx8.PairBytes; // the Y vectors

    /// <summary>The generated tile's scales (<see cref="Q4_Kx8.JitTileScales"/>'s layout: the header is Q4_K's).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void JitTileScales(int n, byte* group, nint groupStride, float* scales) =>
        Q4_Kx8.JitKTileScales(n / Q5_KFormat.BlockSize, GroupBlockBytes, group, groupStride, (byte*)scales);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Repack(byte* src, nint srcStride, byte* dst, int n)
    {
        int nb = n / Q5_KFormat.BlockSize;
        for (int b = 0; b < nb; b++)
        {
            byte* g = dst + (nint)b * GroupBlockBytes;
            for (int r = 0; r < Rows; r++)
            {
                byte* blk = src + r * srcStride + (nint)b * Q5_KFormat.TypeSize;
                ((ushort*)g)[r] = *(ushort*)blk;
                ((ushort*)(g + Q4_Kx8.DMinOffset))[r] = *(ushort*)(blk + Q5_KFormat.DMinOffset);
                for (int w = 0; w < 3; w++)
                    ((uint*)(g + Q4_Kx8.ScaleWordsOffset + Rows * sizeof(uint) * w))[r] = ((uint*)(blk + Q5_KFormat.ScalesOffset))[w];
                byte* qh = blk + Q5_KFormat.QhOffset;
                byte* qs = blk + Q5_KFormat.QsOffset;
                for (int k = 0; k < 8; k++)
                    for (int e = 0; e < 4; e++)
                    {
                        int l = 4 * k + e, y = 0;
                        for (int c = 0; c < 4; c++)
                        {
                            int lo = (qs[32 * c + l] & 0xF) | (((qh[l] >> (2 * c)) & 1) << 4);      // element 64c + l
                            int hi = (qs[32 * c + l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);   // element 64c + 32 + l
                            g[QuantsOffset + Q4_Kx8.PairBytes * c + 32 * k + 4 * r + e] = (byte)(lo | (hi << 5));
                            y |= (hi >> 3) << (2 * c);
                        }
                        g[HighBitsOffset + 32 * k + 4 * r + e] = (byte)y;
                    }
            }
        }
    }

    /// <summary>The low sub-block's 5-bit weights of an X vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Low5(Vector256<byte> x) => x & Vector256.Create((byte)0x1F);

    /// <summary>
    /// 2 × the high sub-block's 5-bit weights of an X vector (c, a constant after inlining, picks bits 2c, 2c + 1 of <paramref name="y"/>):
    /// bits 0-2 of h from X bits 5-7 (16-bit shift by 4 stays within each byte for bits 1-3), bits 3-4 from Y moved to bits 4-5.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> DoubledHigh5(Vector256<byte> x, Vector256<byte> y, int c)
    {
        Vector256<ushort> top = c < 2 ? Vector256.ShiftLeft(y.AsUInt16(), 4 - 2 * c)
            : c == 3 ? Vector256.ShiftRightLogical(y.AsUInt16(), 2) : y.AsUInt16();
        return (Vector256.ShiftRightLogical(x.AsUInt16(), 4).AsByte() & Vector256.Create((byte)0x0E)) | (top.AsByte() & Vector256.Create((byte)0x30));
    }

    /// <summary>8 rows of the group · one Q8_K activation row → result[0..7].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Dot<T>(int n, byte* group, byte* a, float* result) where T : struct, IIntDot
    {
        int nb = n / Q5_KFormat.BlockSize;
        Vector256<float> acc = default, accMins = default;
        for (int b = 0; b < nb; b++)
        {
            byte* g = group + (nint)b * GroupBlockBytes;
            Simd.Prefetch(g + Q4_0x8.PrefetchDistance, GroupBlockBytes); // the group super-block that far ahead of the stream
            byte* y = a + (nint)b * Q8_KFormat.TypeSize;
            float yd = *(float*)y;
            Q4_Kx8.UnpackScales(g, out var sc03, out var sc47, out var m03, out var m47);
            // the four sub-block pairs written out, so every offset, bit and scale shift is a constant (the JIT does not unroll loops)
            Vector256<int> isum = SubBlockPairScaled<T>(g, y, 0, sc03) + SubBlockPairScaled<T>(g, y, 1, sc03)
                + SubBlockPairScaled<T>(g, y, 2, sc47) + SubBlockPairScaled<T>(g, y, 3, sc47);
            Vector256<float> d = HalfScales.Load8Scaled((ushort*)g) * HalfScales.Unbias * yd;
            Vector256<float> dmin = HalfScales.Load8Scaled((ushort*)(g + Q4_Kx8.DMinOffset)) * HalfScales.Unbias * yd;
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), d, acc);
            Vector256<int> mins = Q4_Kx8.MinsTermMadd<T>(m03, m47, (short*)(y + Q8_KFormat.BSumsOffset));
            accMins = Fma.MultiplyAdd(Avx.ConvertToVector256Single(mins), dmin, accMins);
        }
        (acc - accMins).Store(result);
    }

    /// <summary>
    /// Sub-block pair <paramref name="c"/> (a constant after inlining) of 8 rows against one activation row, times its two 6-bit scales,
    /// per row lane (|Σ w·y| ≤ 32·31·128 per sub-block, its partial sums ≤ 32·224·128, × 63: all fit int32 with room for all 8).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SubBlockPairScaled<T>(byte* g, byte* y, int c, Vector256<uint> scales) where T : struct, IIntDot
    {
        byte* p = g + QuantsOffset + Q4_Kx8.PairBytes * c, h = g + HighBitsOffset;
        sbyte* q8 = (sbyte*)(y + Q8_KFormat.QsOffset + 64 * c);
        Vector256<int> lo0 = default, lo1 = default, hi0 = default, hi1 = default, top0 = default, top1 = default;
        Vector256<int> sHi;
        if (typeof(T) == typeof(VnniDot))
        {
            StepSplit<T>(p, h, q8, c, 0, ref lo0, ref lo1, ref hi0, ref hi1, ref top0, ref top1);
            StepSplit<T>(p, h, q8, c, 2, ref lo0, ref lo1, ref hi0, ref hi1, ref top0, ref top1);
            StepSplit<T>(p, h, q8, c, 4, ref lo0, ref lo1, ref hi0, ref hi1, ref top0, ref top1);
            StepSplit<T>(p, h, q8, c, 6, ref lo0, ref lo1, ref hi0, ref hi1, ref top0, ref top1);
            // Σ h·y = Σ 32(h & 7)·y / 32 + 8 · Σ 4^c (h >> 3)·y / 4^c, both divisions exact
            Vector256<int> top = top0 + top1;
            sHi = Vector256.ShiftRightArithmetic(hi0 + hi1, 5) + (c < 2 ? top << (3 - 2 * c) : Vector256.ShiftRightArithmetic(top, 2 * c - 3));
        }
        else
        {
            Step<T>(p, h, q8, c, 0, ref lo0, ref lo1, ref hi0, ref hi1);
            Step<T>(p, h, q8, c, 2, ref lo0, ref lo1, ref hi0, ref hi1);
            Step<T>(p, h, q8, c, 4, ref lo0, ref lo1, ref hi0, ref hi1);
            Step<T>(p, h, q8, c, 6, ref lo0, ref lo1, ref hi0, ref hi1);
            sHi = Vector256.ShiftRightArithmetic(hi0 + hi1, 1); // exact: the doubled weights give an even sum
        }
        return Avx2.MultiplyLow(lo0 + lo1, Q4_Kx8.Byte(scales, (2 * c) & 3)) + Avx2.MultiplyLow(sHi, Q4_Kx8.Byte(scales, (2 * c + 1) & 3));
    }

    /// <summary>Columns k and k + 1 (constants after inlining) of sub-block pair c: 4 dots on two X vectors (the high weights doubled).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step<T>(byte* p, byte* h, sbyte* q8, int c, int k,
        ref Vector256<int> lo0, ref Vector256<int> lo1, ref Vector256<int> hi0, ref Vector256<int> hi1)
        where T : struct, IIntDot
    {
        Vector256<byte> x0 = Vector256.Load(p + 32 * k), x1 = Vector256.Load(p + 32 * k + 32);
        lo0 = T.DotU8S8(lo0, Low5(x0), Vector256.Create(*(int*)(q8 + 4 * k)).AsSByte());
        lo1 = T.DotU8S8(lo1, Low5(x1), Vector256.Create(*(int*)(q8 + 4 * k + 4)).AsSByte());
        hi0 = T.DotU8S8(hi0, DoubledHigh5(x0, Vector256.Load(h + 32 * k), c), Vector256.Create(*(int*)(q8 + 32 + 4 * k)).AsSByte());
        hi1 = T.DotU8S8(hi1, DoubledHigh5(x1, Vector256.Load(h + 32 * k + 32), c), Vector256.Create(*(int*)(q8 + 36 + 4 * k)).AsSByte());
    }

    /// <summary>
    /// <see cref="Step{T}"/> for VNNI (unsigned operand up to 255): the high weights as two dots without shifts,
    /// X &amp; 0xE0 = 32·(h &amp; 7) and Y &amp; (3 &lt;&lt; 2c) = 4^c·(h &gt;&gt; 3), each one AND.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StepSplit<T>(byte* p, byte* h, sbyte* q8, int c, int k, ref Vector256<int> lo0, ref Vector256<int> lo1,
        ref Vector256<int> hi0, ref Vector256<int> hi1, ref Vector256<int> top0, ref Vector256<int> top1) where T : struct, IIntDot
    {
        Vector256<byte> x0 = Vector256.Load(p + 32 * k), x1 = Vector256.Load(p + 32 * k + 32);
        var topMask = Vector256.Create((byte)(3 << (2 * c)));
        lo0 = T.DotU8S8(lo0, Low5(x0), Vector256.Create(*(int*)(q8 + 4 * k)).AsSByte());
        lo1 = T.DotU8S8(lo1, Low5(x1), Vector256.Create(*(int*)(q8 + 4 * k + 4)).AsSByte());
        Vector256<sbyte> b0 = Vector256.Create(*(int*)(q8 + 32 + 4 * k)).AsSByte(), b1 = Vector256.Create(*(int*)(q8 + 36 + 4 * k)).AsSByte();
        hi0 = T.DotU8S8(hi0, x0 & Vector256.Create((byte)0xE0), b0);
        hi1 = T.DotU8S8(hi1, x1 & Vector256.Create((byte)0xE0), b1);
        top0 = T.DotU8S8(top0, Vector256.Load(h + 32 * k) & topMask, b0);
        top1 = T.DotU8S8(top1, Vector256.Load(h + 32 * k + 32) & topMask, b1);
    }

    /// <summary>
    /// 8 rows of the group · 4 Q8_K activation rows (<paramref name="a"/> + c * <paramref name="aStride"/>) → result[c * 8 + r]:
    /// four <see cref="Dot{T}"/> calls (the backend uses it only for a lone group of 8 rows beside the 16-row tiles, or rows too wide
    /// for the tile-scale scratch, over 58k columns; the group is cache-resident for the later columns).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4<T>(int n, byte* group, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        for (int col = 0; col < 4; col++) Dot<T>(n, group, a + col * aStride, result + 8 * col);
    }

    /// <summary>
    /// GEMM tile: 16 rows (two consecutive groups, the second at <paramref name="group"/> + <paramref name="groupStride"/>) · 4 Q8_K
    /// activation rows (<paramref name="a"/> + c * <paramref name="aStride"/>) → y[c * <paramref name="yStride"/> + r], r = 0..15,
    /// with the scales from <see cref="TileScales"/>. Per sub-block: 8 integer dots per (group, token) share each unpacked 5-bit weight vector
    /// and each broadcast activation; the 6-bit scale is applied in float (the integer dot of a sub-block is ≤ 32·31·127 in magnitude,
    /// exact as float), the mins term Σ m_j·Σy_j with int16 multiply-adds (m_j ≤ 63, |Σy_j| ≤ 32·127: both fit int16, the sum fits int32).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Tile16x4<T>(int n, byte* group, nint groupStride, float* tileScales, byte* a, nint aStride, float* y,
        nint yStride) where T : struct, IIntDot
    {
        int nb = n / Q5_KFormat.BlockSize;
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * GroupBlockBytes, g1 = g0 + groupStride;
            nint o = (nint)b * Q8_KFormat.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            float* scales = tileScales + (nint)b * TileScaleFloats;
            Vector256<float> f00 = default, f01 = default, f02 = default, f03 = default, f10 = default, f11 = default, f12 = default, f13 = default;
            // one call per sub-block pair, each compiled with its fifth-bit shifts as constants (inlined all four exceed the JIT's inline budget)
            TilePair<T, Pair0>(g0, g1, y0, y1, y2, y3, scales, ref f00, ref f01, ref f02, ref f03, ref f10, ref f11, ref f12, ref f13);
            TilePair<T, Pair1>(g0, g1, y0, y1, y2, y3, scales, ref f00, ref f01, ref f02, ref f03, ref f10, ref f11, ref f12, ref f13);
            TilePair<T, Pair2>(g0, g1, y0, y1, y2, y3, scales, ref f00, ref f01, ref f02, ref f03, ref f10, ref f11, ref f12, ref f13);
            TilePair<T, Pair3>(g0, g1, y0, y1, y2, y3, scales, ref f00, ref f01, ref f02, ref f03, ref f10, ref f11, ref f12, ref f13);
            Q4_Kx8.MinWords(g0, out var e0, out var o0, out var e4, out var o4);
            Q4_Kx8.MinWords(g1, out var e1, out var o1, out var e5, out var o5);
            Vector256<float> m0 = Vector256.Load(scales + 128), m1 = Vector256.Load(scales + 136);
            Q4_Kx8.Finish<T>(y0, f00, f10, m0, m1, e0, o0, e4, o4, e1, o1, e5, o5, ref a00, ref a10);
            Q4_Kx8.Finish<T>(y1, f01, f11, m0, m1, e0, o0, e4, o4, e1, o1, e5, o5, ref a01, ref a11);
            Q4_Kx8.Finish<T>(y2, f02, f12, m0, m1, e0, o0, e4, o4, e1, o1, e5, o5, ref a02, ref a12);
            Q4_Kx8.Finish<T>(y3, f03, f13, m0, m1, e0, o0, e4, o4, e1, o1, e5, o5, ref a03, ref a13);
        }
        a00.Store(y); a10.Store(y + 8);
        a01.Store(y + yStride); a11.Store(y + yStride + 8);
        a02.Store(y + 2 * yStride); a12.Store(y + 2 * yStride + 8);
        a03.Store(y + 3 * yStride); a13.Store(y + 3 * yStride + 8);
    }

    /// <summary>A sub-block pair index as a type, so a generic method compiled for it sees a constant.</summary>
    private interface IPair { static abstract int C { get; } }
    private struct Pair0 : IPair { public static int C => 0; }
    private struct Pair1 : IPair { public static int C => 1; }
    private struct Pair2 : IPair { public static int C => 2; }
    private struct Pair3 : IPair { public static int C => 3; }

    /// <summary>Sub-blocks 2c and 2c + 1 (c = <typeparamref name="TC"/>.C, a constant) of both groups against 4 tokens.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilePair<T, TC>(byte* g0, byte* g1, byte* y0, byte* y1, byte* y2, byte* y3, float* scales,
        ref Vector256<float> f00, ref Vector256<float> f01, ref Vector256<float> f02, ref Vector256<float> f03,
        ref Vector256<float> f10, ref Vector256<float> f11, ref Vector256<float> f12, ref Vector256<float> f13)
        where T : struct, IIntDot where TC : struct, IPair
    {
        int c = TC.C;
        byte* p0 = g0 + QuantsOffset + Q4_Kx8.PairBytes * c, p1 = g1 + QuantsOffset + Q4_Kx8.PairBytes * c;
        byte* h0 = g0 + HighBitsOffset, h1 = g1 + HighBitsOffset;
        int q = Q8_KFormat.QsOffset + 64 * c;
        SubBlock<T>(p0, p1, h0, h1, false, c, y0 + q, y1 + q, y2 + q, y3 + q, scales + 16 * c, scales + 64 + 16 * c,
            ref f00, ref f01, ref f02, ref f03, ref f10, ref f11, ref f12, ref f13);
        SubBlock<T>(p0, p1, h0, h1, true, c, y0 + q + 32, y1 + q + 32, y2 + q + 32, y3 + q + 32,
            scales + 16 * c + 8, scales + 64 + 16 * c + 8,
            ref f00, ref f01, ref f02, ref f03, ref f10, ref f11, ref f12, ref f13);
    }

    /// <summary>
    /// Floats per super-block that <see cref="TileScales"/> writes: d·sc_j of both groups (2 × 8 × 8), then dmin of both (2 × 8).
    /// </summary>
    internal const int TileScaleFloats = Q4_Kx8.TileScaleFloats;

    /// <summary>
    /// The tile's scales as floats, converted once per tile and reused by every 4-token call. Super-block b at
    /// scales + 144 b: [g][j][r] = d_r · sc_j,r (g = 0, 1; 128 floats), then dmin_r of group 0 and group 1 (16 floats).
    /// d · sc is exact in float (a half times a 6-bit integer needs ≤ 17 significant bits).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void TileScales(int n, byte* group, nint groupStride, float* scales) =>
        Q4_Kx8.KTileScales(n / Q5_KFormat.BlockSize, GroupBlockBytes, group, groupStride, scales);

    /// <summary>
    /// One sub-block (2c when <paramref name="high"/> is false, else 2c + 1; both constants after inlining) of both groups against
    /// 4 tokens' 32 activations; f += float(dot) · scale.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlock<T>(byte* p0, byte* p1, byte* h0, byte* h1, bool high, int c,
        byte* q0, byte* q1, byte* q2, byte* q3, float* sc0, float* sc1,
        ref Vector256<float> f00, ref Vector256<float> f01, ref Vector256<float> f02, ref Vector256<float> f03,
        ref Vector256<float> f10, ref Vector256<float> f11, ref Vector256<float> f12, ref Vector256<float> f13) where T : struct, IIntDot
    {
        Vector256<int> s00 = default, s01 = default, s02 = default, s03 = default, s10 = default, s11 = default, s12 = default, s13 = default;
        // written out with constant offsets (the JIT does not unroll loops)
        TileStep<T>(p0, p1, h0, h1, high, c, q0, q1, q2, q3, 0, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(p0, p1, h0, h1, high, c, q0, q1, q2, q3, 1, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(p0, p1, h0, h1, high, c, q0, q1, q2, q3, 2, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(p0, p1, h0, h1, high, c, q0, q1, q2, q3, 3, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(p0, p1, h0, h1, high, c, q0, q1, q2, q3, 4, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(p0, p1, h0, h1, high, c, q0, q1, q2, q3, 5, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(p0, p1, h0, h1, high, c, q0, q1, q2, q3, 6, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(p0, p1, h0, h1, high, c, q0, q1, q2, q3, 7, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        if (high) // the doubled weights give even sums: halve them exactly
        {
            s00 = Vector256.ShiftRightArithmetic(s00, 1); s01 = Vector256.ShiftRightArithmetic(s01, 1);
            s02 = Vector256.ShiftRightArithmetic(s02, 1); s03 = Vector256.ShiftRightArithmetic(s03, 1);
            s10 = Vector256.ShiftRightArithmetic(s10, 1); s11 = Vector256.ShiftRightArithmetic(s11, 1);
            s12 = Vector256.ShiftRightArithmetic(s12, 1); s13 = Vector256.ShiftRightArithmetic(s13, 1);
        }
        Vector256<float> c0 = Vector256.Load(sc0), c1 = Vector256.Load(sc1);
        f00 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s00), c0, f00); f10 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s10), c1, f10);
        f01 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s01), c0, f01); f11 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s11), c1, f11);
        f02 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s02), c0, f02); f12 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s12), c1, f12);
        f03 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s03), c0, f03); f13 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s13), c1, f13);
    }

    /// <summary>Column k (a constant after inlining) of one sub-block of both groups against 4 tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TileStep<T>(byte* p0, byte* p1, byte* h0, byte* h1, bool high, int c, byte* q0, byte* q1, byte* q2, byte* q3, int k,
        ref Vector256<int> s00, ref Vector256<int> s01, ref Vector256<int> s02, ref Vector256<int> s03,
        ref Vector256<int> s10, ref Vector256<int> s11, ref Vector256<int> s12, ref Vector256<int> s13) where T : struct, IIntDot
    {
        Vector256<byte> x0 = Vector256.Load(p0 + 32 * k), x1 = Vector256.Load(p1 + 32 * k);
        Vector256<byte> w0 = high ? DoubledHigh5(x0, Vector256.Load(h0 + 32 * k), c) : Low5(x0);
        Vector256<byte> w1 = high ? DoubledHigh5(x1, Vector256.Load(h1 + 32 * k), c) : Low5(x1);
        Vector256<sbyte> b0 = Vector256.Create(*(int*)(q0 + 4 * k)).AsSByte(), b1 = Vector256.Create(*(int*)(q1 + 4 * k)).AsSByte();
        s00 = T.DotU8S8(s00, w0, b0); s10 = T.DotU8S8(s10, w1, b0);
        s01 = T.DotU8S8(s01, w0, b1); s11 = T.DotU8S8(s11, w1, b1);
        Vector256<sbyte> b2 = Vector256.Create(*(int*)(q2 + 4 * k)).AsSByte(), b3 = Vector256.Create(*(int*)(q3 + 4 * k)).AsSByte();
        s02 = T.DotU8S8(s02, w0, b2); s12 = T.DotU8S8(s12, w1, b2);
        s03 = T.DotU8S8(s03, w0, b3); s13 = T.DotU8S8(s13, w1, b3);
    }

}
