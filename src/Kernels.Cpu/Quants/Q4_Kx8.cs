using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>
/// Q4_K weights repacked at load time, 8 rows interleaved so one int32 lane holds one row (see <see cref="Q4_0x8"/>). Same bytes per
/// super-block as Q4_K. Group super-block (1152 bytes) for rows r = 0..7:
/// d[8] fp16 (16 B), dmin[8] fp16 (16 B), the 12 packed scale bytes of each row as three uint arrays A0[8], A1[8], A2[8]
/// (bytes 0-3, 4-7, 8-11; 96 B), then for c = 0..3 and k = 0..7 a 32-byte vector P(c,k) whose byte 4r + e is qs_r[32c + 4k + e]:
/// low nibble = element 64c + 4k + e (sub-block 2c), high nibble = element 64c + 32 + 4k + e (sub-block 2c + 1).
/// </summary>
public static unsafe partial class Q4_Kx8
{
    public const int Rows = 8;
    public const int GroupBlockBytes = Rows * Q4_KFormat.TypeSize;

    // the group super-block header, shared with Q5_Kx8: d[8], dmin[8] (fp16), the scale words A0[8], A1[8], A2[8] (uint)
    internal const int DMinOffset = Rows * sizeof(ushort);
    internal const int ScaleWordsOffset = DMinOffset + Rows * sizeof(ushort);
    internal const int QuantsOffset = ScaleWordsOffset + 3 * Rows * sizeof(uint); // P(0, 0)
    internal const int PairBytes = 8 * 32; // P(c, 0..7): the vectors of sub-block pair c

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Repack(byte* src, nint srcStride, byte* dst, int n)
    {
        int nb = n / Q4_KFormat.BlockSize;
        for (int b = 0; b < nb; b++)
        {
            byte* g = dst + (nint)b * GroupBlockBytes;
            for (int r = 0; r < Rows; r++)
            {
                byte* blk = src + r * srcStride + (nint)b * Q4_KFormat.TypeSize;
                ((ushort*)g)[r] = *(ushort*)blk;
                ((ushort*)(g + DMinOffset))[r] = *(ushort*)(blk + Q4_KFormat.DMinOffset);
                for (int w = 0; w < 3; w++)
                    ((uint*)(g + ScaleWordsOffset + Rows * sizeof(uint) * w))[r] = ((uint*)(blk + Q4_KFormat.ScalesOffset))[w];
                byte* qs = blk + Q4_KFormat.QsOffset;
                for (int c = 0; c < 4; c++)
                    for (int k = 0; k < 8; k++)
                        for (int e = 0; e < 4; e++)
                            g[QuantsOffset + PairBytes * c + 32 * k + 4 * r + e] = qs[32 * c + 4 * k + e];
            }
        }
    }

    /// <summary>
    /// The per-row 6-bit scales (sc) and mins (m) of 8 rows as bytes within each int32 lane (ggml's utmp trick, on 8 rows at once).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void UnpackScales(byte* g, out Vector256<uint> sc03, out Vector256<uint> sc47, out Vector256<uint> m03, out Vector256<uint> m47)
    {
        var kmask1 = Vector256.Create(0x3f3f3f3fu);
        var kmask2 = Vector256.Create(0x0f0f0f0fu);
        var kmask3 = Vector256.Create(0x03030303u);
        Vector256<uint> a0 = Vector256.Load((uint*)(g + ScaleWordsOffset));
        Vector256<uint> a1 = Vector256.Load((uint*)(g + (ScaleWordsOffset + Rows * sizeof(uint))));
        Vector256<uint> a2 = Vector256.Load((uint*)(g + (ScaleWordsOffset + 2 * Rows * sizeof(uint))));
        sc03 = a0 & kmask1;
        sc47 = (a2 & kmask2) | (((a0 >> 6) & kmask3) << 4);
        m03 = a1 & kmask1;
        m47 = ((a2 >> 4) & kmask2) | (((a1 >> 6) & kmask3) << 4);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> Byte(Vector256<uint> v, int i) => ((v >> (8 * i)) & Vector256.Create(0xFFu)).AsInt32();

    /// <summary>Σ_j m_j · (bsums[2j] + bsums[2j+1]) per row (lane).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> MinsTerm(Vector256<uint> m03, Vector256<uint> m47, short* bsums)
    {
        Vector256<short> b = Vector256.Load(bsums);
        Vector256<int> pairs = Avx2.ConvertToVector256Int32(Ssse3.HorizontalAdd(b.GetLower(), b.GetUpper()));
        Vector256<int> s = Avx2.MultiplyLow(Byte(m03, 0), Avx2.PermuteVar8x32(pairs, Vector256.Create(0)));
        s += Avx2.MultiplyLow(Byte(m03, 1), Avx2.PermuteVar8x32(pairs, Vector256.Create(1)));
        s += Avx2.MultiplyLow(Byte(m03, 2), Avx2.PermuteVar8x32(pairs, Vector256.Create(2)));
        s += Avx2.MultiplyLow(Byte(m03, 3), Avx2.PermuteVar8x32(pairs, Vector256.Create(3)));
        s += Avx2.MultiplyLow(Byte(m47, 0), Avx2.PermuteVar8x32(pairs, Vector256.Create(4)));
        s += Avx2.MultiplyLow(Byte(m47, 1), Avx2.PermuteVar8x32(pairs, Vector256.Create(5)));
        s += Avx2.MultiplyLow(Byte(m47, 2), Avx2.PermuteVar8x32(pairs, Vector256.Create(6)));
        s += Avx2.MultiplyLow(Byte(m47, 3), Avx2.PermuteVar8x32(pairs, Vector256.Create(7)));
        return s;
    }

    /// <summary>8 rows of the group · one Q8_K activation row → result[0..7].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Dot<T>(int n, byte* group, byte* a, float* result) where T : struct, IIntDot
    {
        int nb = n / Q4_KFormat.BlockSize;
        Vector256<float> acc = default, accMins = default;
        for (int b = 0; b < nb; b++)
        {
            byte* g = group + (nint)b * GroupBlockBytes;
            Simd.Prefetch(g + Q4_0x8.PrefetchDistance, GroupBlockBytes); // the group super-block that far ahead of the stream
            byte* y = a + (nint)b * Q8_KFormat.TypeSize;
            float yd = *(float*)y;
            UnpackScales(g, out var sc03, out var sc47, out var m03, out var m47);
            // the four sub-block pairs written out, so every offset and scale shift is a constant (the JIT does not unroll loops)
            Vector256<int> isum = SubBlockPairScaled<T>(g, y, 0, sc03) + SubBlockPairScaled<T>(g, y, 1, sc03)
                + SubBlockPairScaled<T>(g, y, 2, sc47) + SubBlockPairScaled<T>(g, y, 3, sc47);
            Vector256<float> d = HalfScales.Load8Scaled((ushort*)g) * HalfScales.Unbias * yd;
            Vector256<float> dmin = HalfScales.Load8Scaled((ushort*)(g + DMinOffset)) * HalfScales.Unbias * yd;
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), d, acc);
            accMins = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MinsTermMadd<T>(m03, m47, (short*)(y + Q8_KFormat.BSumsOffset))), dmin, accMins);
        }
        (acc - accMins).Store(result);
    }

    /// <summary>
    /// Sub-blocks 2c and 2c+1 of 8 rows against one activation row: (Σ lo·y, Σ hi·y) per lane: the high nibbles via
    /// <see cref="Q4_0x8.HighNibbles16{T}(Vector256{byte})"/> (one AND with VNNI, as 16·hi), scaled back with an exact
    /// arithmetic shift; four independent accumulators per half.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlockPair<T>(byte* p, sbyte* q8, out Vector256<int> sLo, out Vector256<int> sHi) where T : struct, IIntDot
    {
        Vector256<int> lo0 = default, lo1 = default, hi0 = default, hi1 = default;
        Step<T>(p, q8, 0, ref lo0, ref lo1, ref hi0, ref hi1);
        Step<T>(p, q8, 2, ref lo0, ref lo1, ref hi0, ref hi1);
        Step<T>(p, q8, 4, ref lo0, ref lo1, ref hi0, ref hi1);
        Step<T>(p, q8, 6, ref lo0, ref lo1, ref hi0, ref hi1);
        sLo = lo0 + lo1;
        Vector256<int> hi16 = Q4_0x8.HighSum16<T>(hi0 + hi1);
        sHi = Vector256.ShiftRightArithmetic(hi16, 4); // exact: a multiple of 16
    }

    /// <summary>Columns k and k + 1 (a constant after inlining) of a sub-block pair: 4 dots on two 32-byte weight vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step<T>(byte* p, sbyte* q8, int k,
        ref Vector256<int> lo0, ref Vector256<int> lo1, ref Vector256<int> hi0, ref Vector256<int> hi1)
        where T : struct, IIntDot
    {
        var m4 = Vector256.Create((byte)0x0F);
        Vector256<byte> v0 = Vector256.Load(p + 32 * k), v1 = Vector256.Load(p + 32 * k + 32);
        lo0 = T.DotU8S8(lo0, v0 & m4, Vector256.Create(*(int*)(q8 + 4 * k)).AsSByte());
        lo1 = T.DotU8S8(lo1, v1 & m4, Vector256.Create(*(int*)(q8 + 4 * k + 4)).AsSByte());
        hi0 = T.DotU8S8(hi0, Q4_0x8.HighNibbles16<T>(v0), Vector256.Create(*(int*)(q8 + 32 + 4 * k)).AsSByte());
        hi1 = T.DotU8S8(hi1, Q4_0x8.HighNibbles16<T>(v1), Vector256.Create(*(int*)(q8 + 36 + 4 * k)).AsSByte());
    }

    /// <summary>Sub-block pair <paramref name="c"/> (a constant after inlining) times its two 6-bit scales, per row lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SubBlockPairScaled<T>(byte* g, byte* y, int c, Vector256<uint> scales) where T : struct, IIntDot
    {
        SubBlockPair<T>(g + QuantsOffset + PairBytes * c, (sbyte*)(y + Q8_KFormat.QsOffset + 64 * c), out var sLo, out var sHi);
        return Avx2.MultiplyLow(sLo, Byte(scales, (2 * c) & 3)) + Avx2.MultiplyLow(sHi, Byte(scales, (2 * c + 1) & 3));
    }

    /// <summary>
    /// <see cref="MinsTerm"/> with 4 int16 multiply-adds instead of 8 permutes and 8 32-bit multiplies: lanes hold the mins as int16 pairs
    /// (m0, m2), (m1, m3), (m4, m6), (m5, m7), multiplied with the matching pairs of bsums-pair sums (|Σ| ≤ 2·16·128, fits int16).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> MinsTermMadd<T>(Vector256<uint> m03, Vector256<uint> m47, short* bsums) where T : struct, IIntDot
    {
        Vector256<short> b = Vector256.Load(bsums);
        // pair sums p0..p7 (int16), reordered to p0 p2 p1 p3 p4 p6 p5 p7 so dword k holds the pair multiplied by madd k
        Vector128<short> pairs = Ssse3.HorizontalAdd(b.GetLower(), b.GetUpper());
        pairs = Ssse3.Shuffle(pairs.AsByte(), Vector128.Create((byte)0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15)).AsInt16();
        Vector256<int> pp = Vector256.Create(pairs, pairs).AsInt32();
        var lo16 = Vector256.Create(0x00FF00FFu);
        Vector256<int> s = T.MaddS16(Vector256<int>.Zero, (m03 & lo16).AsInt16(), Avx2.Shuffle(pp, 0x00).AsInt16());
        s = T.MaddS16(s, ((m03 >> 8) & lo16).AsInt16(), Avx2.Shuffle(pp, 0x55).AsInt16());
        s = T.MaddS16(s, (m47 & lo16).AsInt16(), Avx2.Shuffle(pp, 0xAA).AsInt16());
        return T.MaddS16(s, ((m47 >> 8) & lo16).AsInt16(), Avx2.Shuffle(pp, 0xFF).AsInt16());
    }

    /// <summary>
    /// 8 rows of the group · 4 Q8_K activation rows (<paramref name="a"/> + c * <paramref name="aStride"/>) → result[c * 8 + r].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4<T>(int n, byte* group, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        for (int col = 0; col < 4; col += 2)
            Dot2<T>(n, group, a + col * aStride, aStride, result + 8 * col);
    }

    /// <summary>Two columns at a time: the unpacked nibbles are shared, and the accumulators fit the 16 AVX2 registers.</summary>
    private static void Dot2<T>(int n, byte* group, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        int nb = n / Q4_KFormat.BlockSize;
        Vector256<float> acc0 = default, acc1 = default;
        var m4 = Vector256.Create((byte)0x0F);
        for (int b = 0; b < nb; b++)
        {
            byte* g = group + (nint)b * GroupBlockBytes;
            // a batch of exactly 4 tokens starts here with the weights in DRAM (MatMulDriver's remainder; 5-7 run single-token dots
            // first, which stream them): prefetch as the GEMV does; in cache, the prefetches are hits
            Simd.Prefetch(g + Q4_0x8.PrefetchDistance, GroupBlockBytes);
            byte* y0 = a + (nint)b * Q8_KFormat.TypeSize, y1 = y0 + aStride;
            UnpackScales(g, out var sc03, out var sc47, out var m03, out var m47);
            Vector256<int> isum0 = default, isum1 = default;
            for (int c = 0; c < 4; c++)
            {
                byte* p = g + QuantsOffset + PairBytes * c;
                sbyte* q0 = (sbyte*)(y0 + Q8_KFormat.QsOffset + 64 * c), q1 = (sbyte*)(y1 + Q8_KFormat.QsOffset + 64 * c);
                Vector256<int> lo0 = default, hi0 = default, lo1 = default, hi1 = default;
                for (int k = 0; k < 8; k++)
                {
                    Vector256<byte> v = Vector256.Load(p + 32 * k);
                    Vector256<byte> lo = v & m4, hi = Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m4;
                    lo0 = T.DotU8S8(lo0, lo, Vector256.Create(*(int*)(q0 + 4 * k)).AsSByte());
                    hi0 = T.DotU8S8(hi0, hi, Vector256.Create(*(int*)(q0 + 32 + 4 * k)).AsSByte());
                    lo1 = T.DotU8S8(lo1, lo, Vector256.Create(*(int*)(q1 + 4 * k)).AsSByte());
                    hi1 = T.DotU8S8(hi1, hi, Vector256.Create(*(int*)(q1 + 32 + 4 * k)).AsSByte());
                }
                Vector256<uint> scv = c < 2 ? sc03 : sc47;
                Vector256<int> sLoScale = Byte(scv, (2 * c) & 3), sHiScale = Byte(scv, (2 * c + 1) & 3);
                isum0 += Avx2.MultiplyLow(lo0, sLoScale) + Avx2.MultiplyLow(hi0, sHiScale);
                isum1 += Avx2.MultiplyLow(lo1, sLoScale) + Avx2.MultiplyLow(hi1, sHiScale);
            }
            Vector256<float> dx = F16.Load8((ushort*)g);
            Vector256<float> dminx = F16.Load8((ushort*)(g + DMinOffset));
            acc0 = Column(acc0, isum0, dx, dminx, m03, m47, y0);
            acc1 = Column(acc1, isum1, dx, dminx, m03, m47, y1);
        }
        acc0.Store(result);
        acc1.Store(result + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Column(Vector256<float> acc, Vector256<int> isum, Vector256<float> dx, Vector256<float> dminx,
        Vector256<uint> m03, Vector256<uint> m47, byte* y)
    {
        float yd = *(float*)y;
        acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), dx * yd, acc);
        return Fma.MultiplyAddNegated(Avx.ConvertToVector256Single(MinsTerm(m03, m47, (short*)(y + Q8_KFormat.BSumsOffset))), dminx * yd, acc);
    }

    /// <summary>
    /// GEMM tile: 16 rows (two consecutive groups, the second at <paramref name="group"/> + <paramref name="groupStride"/>) · 4 Q8_K
    /// activation rows (<paramref name="a"/> + c * <paramref name="aStride"/>) → y[c * <paramref name="yStride"/> + r], r = 0..15,
    /// with the scales from <see cref="TileScales"/>. Per sub-block: 8 integer dots per (group, token) share each unpacked weight vector
    /// and each broadcast activation; the 6-bit scale is applied in float (the integer dot of a sub-block is ≤ 32·15·127 in magnitude,
    /// exact as float), the mins term Σ m_j·Σy_j with int16 multiply-adds (m_j ≤ 63, |Σy_j| ≤ 32·127: both fit int16, the sum fits
    /// int32).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Tile16x4<T>(int n, byte* group, nint groupStride, float* tileScales, byte* a, nint aStride, float* y,
        nint yStride) where T : struct, IIntDot
    {
        // This tile runs where AVX-512 is absent, so the JIT has 16 vector registers: the 8 integer sums of a sub-block stay in
        // registers, the float sums live in memory (L1): f[2t + g] per super-block, the totals in y. Kept all in registers
        // (24 accumulators) they spilled inside the dot loop (98.7 GMAC/s on one core with AVX-VNNI; see the commit).
        int nb = n / Q4_KFormat.BlockSize;
        float* f = stackalloc float[64];
        for (int t = 0; t < 4; t++)
        {
            Vector256<float>.Zero.Store(y + t * yStride);
            Vector256<float>.Zero.Store(y + t * yStride + 8);
        }
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * GroupBlockBytes, g1 = g0 + groupStride;
            nint o = (nint)b * Q8_KFormat.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            float* scales = tileScales + (nint)b * TileScaleFloats;
            for (int i = 0; i < 8; i++) Vector256<float>.Zero.Store(f + 8 * i);
            for (int c = 0; c < 4; c++)
            {
                byte* p0 = g0 + QuantsOffset + PairBytes * c, p1 = g1 + QuantsOffset + PairBytes * c;
                int q = Q8_KFormat.QsOffset + 64 * c;
                SubBlock<T>(p0, p1, 0, y0 + q, y1 + q, y2 + q, y3 + q, scales + 16 * c, scales + 64 + 16 * c, f);
                SubBlock<T>(p0, p1, 4, y0 + q + 32, y1 + q + 32, y2 + q + 32, y3 + q + 32, scales + 16 * c + 8, scales + 64 + 16 * c + 8, f);
            }
            MinWords(g0, out var e0, out var o0, out var e4, out var o4);
            MinWords(g1, out var e1, out var o1, out var e5, out var o5);
            Vector256<float> m0 = Vector256.Load(scales + 128), m1 = Vector256.Load(scales + 136);
            byte* ys = y0;
            for (int t = 0; t < 4; t++, ys += aStride)
            {
                float* yt = y + t * yStride;
                Vector256<float> a0 = Vector256.Load(yt), a1 = Vector256.Load(yt + 8);
                Finish<T>(ys, Vector256.Load(f + 16 * t), Vector256.Load(f + 16 * t + 8), m0, m1, e0, o0, e4, o4, e1, o1, e5, o5,
                    ref a0, ref a1);
                a0.Store(yt);
                a1.Store(yt + 8);
            }
        }
    }

    /// <summary>
    /// Floats per super-block that <see cref="TileScales"/> writes: d·sc_j of both groups (2 × 8 × 8), then dmin of both (2 × 8).
    /// </summary>
    internal const int TileScaleFloats = 144;

    /// <summary>
    /// The tile's scales as floats, converted once per tile and reused by every 4-token call. Super-block b at
    /// scales + 144 b: [g][j][r] = d_r · sc_j,r (g = 0, 1; 128 floats), then dmin_r of group 0 and group 1 (16 floats).
    /// d · sc is exact in float (a half times a 6-bit integer needs ≤ 17 significant bits).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void TileScales(int n, byte* group, nint groupStride, float* scales) =>
        KTileScales(n / Q4_KFormat.BlockSize, GroupBlockBytes, group, groupStride, scales);

    /// <summary>
    /// <see cref="TileScales"/> for any group layout that starts with this 128-byte header (d, dmin, packed scales and mins):
    /// <paramref name="nb"/> super-blocks of <paramref name="groupBlockBytes"/> bytes (Q4_K here, Q5_K in <see cref="Q5_Kx8"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void KTileScales(int nb, int groupBlockBytes, byte* group, nint groupStride, float* scales)
    {
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * groupBlockBytes;
            float* dst = scales + (nint)b * TileScaleFloats;
            for (int g = 0; g < 2; g++)
            {
                byte* gb = g0 + g * groupStride;
                UnpackScales(gb, out var sc03, out var sc47, out _, out _);
                Vector256<float> d = F16.Load8((ushort*)gb);
                for (int i = 0; i < 4; i++)
                {
                    (Avx.ConvertToVector256Single(Byte(sc03, i)) * d).Store(dst + 64 * g + 8 * i);
                    (Avx.ConvertToVector256Single(Byte(sc47, i)) * d).Store(dst + 64 * g + 32 + 8 * i);
                }
                F16.Load8((ushort*)(gb + DMinOffset)).Store(dst + 128 + 8 * g);
            }
        }
    }

    /// <summary>The mins of 8 rows as int16 pairs per lane: (m0, m2), (m1, m3), (m4, m6), (m5, m7).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void MinWords(byte* g, out Vector256<short> m02, out Vector256<short> m13, out Vector256<short> m46, out Vector256<short> m57)
    {
        UnpackScales(g, out _, out _, out var m03, out var m47);
        var even = Vector256.Create(0x00FF00FFu);
        m02 = (m03 & even).AsInt16();
        m13 = ((m03 >> 8) & even).AsInt16();
        m46 = (m47 & even).AsInt16();
        m57 = ((m47 >> 8) & even).AsInt16();
    }

    /// <summary>
    /// One sub-block (low nibbles when <paramref name="shift"/> is 0, high when 4) of both groups against 4 tokens' 32 activations;
    /// f += float(dot) · scale.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlock<T>(byte* p0, byte* p1, byte shift, byte* q0, byte* q1, byte* q2, byte* q3, float* sc0, float* sc1, float* f)
        where T : struct, IIntDot
    {
        Vector256<int> s00 = default, s01 = default, s02 = default, s03 = default, s10 = default, s11 = default, s12 = default, s13 = default;
        // written out with constant offsets (the JIT does not unroll loops)
        TileStep<T>(p0, p1, shift, q0, q1, q2, q3, 0, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(p0, p1, shift, q0, q1, q2, q3, 1, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(p0, p1, shift, q0, q1, q2, q3, 2, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(p0, p1, shift, q0, q1, q2, q3, 3, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(p0, p1, shift, q0, q1, q2, q3, 4, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(p0, p1, shift, q0, q1, q2, q3, 5, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(p0, p1, shift, q0, q1, q2, q3, 6, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        TileStep<T>(p0, p1, shift, q0, q1, q2, q3, 7, ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13);
        Vector256<float> c0 = Vector256.Load(sc0), c1 = Vector256.Load(sc1);
        Scaled(f, s00, c0); Scaled(f + 8, s10, c1);
        Scaled(f + 16, s01, c0); Scaled(f + 24, s11, c1);
        Scaled(f + 32, s02, c0); Scaled(f + 40, s12, c1);
        Scaled(f + 48, s03, c0); Scaled(f + 56, s13, c1);
    }

    /// <summary>f[0..7] += float(s) · c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scaled(float* f, Vector256<int> s, Vector256<float> c) =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(s), c, Vector256.Load(f)).Store(f);

    /// <summary>Column k (a constant after inlining) of one sub-block of both groups against 4 tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TileStep<T>(byte* p0, byte* p1, byte shift, byte* q0, byte* q1, byte* q2, byte* q3, int k,
        ref Vector256<int> s00, ref Vector256<int> s01, ref Vector256<int> s02, ref Vector256<int> s03,
        ref Vector256<int> s10, ref Vector256<int> s11, ref Vector256<int> s12, ref Vector256<int> s13) where T : struct, IIntDot
    {
        var m4 = Vector256.Create((byte)0x0F);
        Vector256<byte> w0 = Vector256.ShiftRightLogical(Vector256.Load(p0 + 32 * k).AsUInt16(), shift).AsByte() & m4;
        Vector256<byte> w1 = Vector256.ShiftRightLogical(Vector256.Load(p1 + 32 * k).AsUInt16(), shift).AsByte() & m4;
        Vector256<sbyte> b0 = Vector256.Create(*(int*)(q0 + 4 * k)).AsSByte(), b1 = Vector256.Create(*(int*)(q1 + 4 * k)).AsSByte();
        s00 = T.DotU8S8(s00, w0, b0); s10 = T.DotU8S8(s10, w1, b0);
        s01 = T.DotU8S8(s01, w0, b1); s11 = T.DotU8S8(s11, w1, b1);
        Vector256<sbyte> b2 = Vector256.Create(*(int*)(q2 + 4 * k)).AsSByte(), b3 = Vector256.Create(*(int*)(q3 + 4 * k)).AsSByte();
        s02 = T.DotU8S8(s02, w0, b2); s12 = T.DotU8S8(s12, w1, b2);
        s03 = T.DotU8S8(s03, w0, b3); s13 = T.DotU8S8(s13, w1, b3);
    }

    /// <summary>acc += yd · (f − dmin · Σ_j m_j·Σy_j) for both groups of one token (f already carries d · sc_j).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Finish<T>(byte* yBlock, Vector256<float> f0, Vector256<float> f1, Vector256<float> dmin0, Vector256<float> dmin1,
        Vector256<short> e0, Vector256<short> o0, Vector256<short> e4, Vector256<short> o4,
        Vector256<short> e1, Vector256<short> o1, Vector256<short> e5, Vector256<short> o5, ref Vector256<float> acc0, ref Vector256<float> acc1)
        where T : struct, IIntDot
    {
        // sub-block sums Σy_j (j = 0..7) as int16, then the int32 pairs (S0, S2), (S1, S3), (S4, S6), (S5, S7)
        Vector256<short> bs = Vector256.Load((short*)(yBlock + Q8_KFormat.BSumsOffset));
        Vector128<int> pairs = Ssse3.Shuffle(Ssse3.HorizontalAdd(bs.GetLower(), bs.GetUpper()).AsByte(),
            Vector128.Create((byte)0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15)).AsInt32();
        Vector256<short> s02 = Vector256.Create(pairs.GetElement(0)).AsInt16(), s13 = Vector256.Create(pairs.GetElement(1)).AsInt16();
        Vector256<short> s46 = Vector256.Create(pairs.GetElement(2)).AsInt16(), s57 = Vector256.Create(pairs.GetElement(3)).AsInt16();
        Vector256<int> mins0 = T.MaddS16(T.MaddS16(T.MaddS16(T.MaddS16(Vector256<int>.Zero, e0, s02), o0, s13), e4, s46), o4, s57);
        Vector256<int> mins1 = T.MaddS16(T.MaddS16(T.MaddS16(T.MaddS16(Vector256<int>.Zero, e1, s02), o1, s13), e5, s46), o5, s57);
        var yd = Vector256.Create(*(float*)yBlock);
        acc0 = Fma.MultiplyAdd(Fma.MultiplyAddNegated(Avx.ConvertToVector256Single(mins0), dmin0, f0), yd, acc0);
        acc1 = Fma.MultiplyAdd(Fma.MultiplyAddNegated(Avx.ConvertToVector256Single(mins1), dmin1, f1), yd, acc1);
    }
}
