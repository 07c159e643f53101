using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>
/// Q4_K weights repacked at load time, 8 rows interleaved so one int32 lane holds one row (see <see cref="Q4_0x8"/>). Same bytes per
/// super-block as Q4_K. Group super-block (1152 bytes) for rows r = 0..7:
/// d[8] fp16 (16 B), dmin[8] fp16 (16 B), the 12 packed scale bytes of each row as three uint arrays A0[8], A1[8], A2[8] (bytes 0-3, 4-7, 8-11; 96 B),
/// then for c = 0..3 and k = 0..7 a 32-byte vector P(c,k) whose byte 4r + e is qs_r[32c + 4k + e]: low nibble = element 64c + 4k + e
/// (sub-block 2c), high nibble = element 64c + 32 + 4k + e (sub-block 2c + 1).
/// </summary>
public static unsafe class Q4_Kx8
{
    public const int Rows = 8;
    public const int GroupBlockBytes = Rows * Q4_K.TypeSize;
    private const int QuantsOffset = 16 + 16 + 96;

    public static void Repack(byte* src, nint srcStride, byte* dst, int n)
    {
        int nb = n / Q4_K.BlockSize;
        for (int b = 0; b < nb; b++)
        {
            byte* g = dst + (nint)b * GroupBlockBytes;
            for (int r = 0; r < Rows; r++)
            {
                byte* blk = src + r * srcStride + (nint)b * Q4_K.TypeSize;
                ((ushort*)g)[r] = *(ushort*)blk;
                ((ushort*)(g + 16))[r] = *(ushort*)(blk + 2);
                for (int w = 0; w < 3; w++) ((uint*)(g + 32 + 32 * w))[r] = ((uint*)(blk + 4))[w];
                byte* qs = blk + 16;
                for (int c = 0; c < 4; c++)
                    for (int k = 0; k < 8; k++)
                        for (int e = 0; e < 4; e++)
                            g[QuantsOffset + 256 * c + 32 * k + 4 * r + e] = qs[32 * c + 4 * k + e];
            }
        }
    }

    /// <summary>The per-row 6-bit scales (sc) and mins (m) of 8 rows as bytes within each int32 lane (ggml's utmp trick, on 8 rows at once).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void UnpackScales(byte* g, out Vector256<uint> sc03, out Vector256<uint> sc47, out Vector256<uint> m03, out Vector256<uint> m47)
    {
        var kmask1 = Vector256.Create(0x3f3f3f3fu);
        var kmask2 = Vector256.Create(0x0f0f0f0fu);
        var kmask3 = Vector256.Create(0x03030303u);
        Vector256<uint> a0 = Vector256.Load((uint*)(g + 32)), a1 = Vector256.Load((uint*)(g + 64)), a2 = Vector256.Load((uint*)(g + 96));
        sc03 = a0 & kmask1;
        sc47 = (a2 & kmask2) | (((a0 >> 6) & kmask3) << 4);
        m03 = a1 & kmask1;
        m47 = ((a2 >> 4) & kmask2) | (((a1 >> 6) & kmask3) << 4);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Byte(Vector256<uint> v, int i) => ((v >> (8 * i)) & Vector256.Create(0xFFu)).AsInt32();

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
        int nb = n / Q4_K.BlockSize;
        Vector256<float> acc = default, accMins = default;
        for (int b = 0; b < nb; b++)
        {
            byte* g = group + (nint)b * GroupBlockBytes;
            byte* y = a + (nint)b * Q8_K.TypeSize;
            float yd = *(float*)y;
            UnpackScales(g, out var sc03, out var sc47, out var m03, out var m47);
            Vector256<int> isum = default;
            for (int c = 0; c < 4; c++)
            {
                SubBlockPair<T>(g + QuantsOffset + 256 * c, (sbyte*)(y + 4 + 64 * c), out var sLo, out var sHi);
                Vector256<uint> scv = c < 2 ? sc03 : sc47;
                isum += Avx2.MultiplyLow(sLo, Byte(scv, (2 * c) & 3)) + Avx2.MultiplyLow(sHi, Byte(scv, (2 * c + 1) & 3));
            }
            Vector256<float> d = HalfScales.Load8Scaled((ushort*)g) * HalfScales.Unbias * yd;
            Vector256<float> dmin = HalfScales.Load8Scaled((ushort*)(g + 16)) * HalfScales.Unbias * yd;
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), d, acc);
            accMins = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MinsTermMadd<T>(m03, m47, (short*)(y + 260))), dmin, accMins);
        }
        (acc - accMins).Store(result);
    }

    /// <summary>
    /// Sub-blocks 2c and 2c+1 of 8 rows against one activation row: (Σ lo·y, Σ hi·y) per lane: the high nibbles via <see cref="Q4_0x8.HighNibbles16{T}"/> (one AND with VNNI, as 16·hi),
    /// scaled back with an exact arithmetic shift; four independent accumulators per half.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlockPair<T>(byte* p, sbyte* q8, out Vector256<int> sLo, out Vector256<int> sHi) where T : struct, IIntDot
    {
        var m4 = Vector256.Create((byte)0x0F);
        Vector256<int> lo0 = default, lo1 = default, hi0 = default, hi1 = default;
        for (int k = 0; k < 8; k += 2)
        {
            Vector256<byte> v0 = Vector256.Load(p + 32 * k), v1 = Vector256.Load(p + 32 * k + 32);
            lo0 = T.DotU8S8(lo0, v0 & m4, Vector256.Create(*(int*)(q8 + 4 * k)).AsSByte());
            lo1 = T.DotU8S8(lo1, v1 & m4, Vector256.Create(*(int*)(q8 + 4 * k + 4)).AsSByte());
            hi0 = T.DotU8S8(hi0, Q4_0x8.HighNibbles16<T>(v0), Vector256.Create(*(int*)(q8 + 32 + 4 * k)).AsSByte());
            hi1 = T.DotU8S8(hi1, Q4_0x8.HighNibbles16<T>(v1), Vector256.Create(*(int*)(q8 + 36 + 4 * k)).AsSByte());
        }
        sLo = lo0 + lo1;
        Vector256<int> hi16 = Q4_0x8.HighSum16<T>(hi0 + hi1);
        sHi = Vector256.ShiftRightArithmetic(hi16, 4); // exact: a multiple of 16
    }

    /// <summary>
    /// <see cref="MinsTerm"/> with 4 int16 multiply-adds instead of 8 permutes and 8 32-bit multiplies: lanes hold the mins as int16 pairs
    /// (m0, m2), (m1, m3), (m4, m6), (m5, m7), multiplied with the matching pairs of bsums-pair sums (|Σ| ≤ 2·16·128, fits int16).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> MinsTermMadd<T>(Vector256<uint> m03, Vector256<uint> m47, short* bsums) where T : struct, IIntDot
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

    /// <summary>8 rows of the group · 4 Q8_K activation rows (<paramref name="a"/> + c * <paramref name="aStride"/>) → result[c * 8 + r].</summary>
    internal static void Dot4<T>(int n, byte* group, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        for (int col = 0; col < 4; col += 2)
            Dot2<T>(n, group, a + col * aStride, aStride, result + 8 * col);
    }

    /// <summary>Two columns at a time: the unpacked nibbles are shared, and the accumulators fit the 16 AVX2 registers.</summary>
    private static void Dot2<T>(int n, byte* group, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        int nb = n / Q4_K.BlockSize;
        Vector256<float> acc0 = default, acc1 = default;
        var m4 = Vector256.Create((byte)0x0F);
        for (int b = 0; b < nb; b++)
        {
            byte* g = group + (nint)b * GroupBlockBytes;
            byte* y0 = a + (nint)b * Q8_K.TypeSize, y1 = y0 + aStride;
            UnpackScales(g, out var sc03, out var sc47, out var m03, out var m47);
            Vector256<int> isum0 = default, isum1 = default;
            for (int c = 0; c < 4; c++)
            {
                byte* p = g + QuantsOffset + 256 * c;
                sbyte* q0 = (sbyte*)(y0 + 4 + 64 * c), q1 = (sbyte*)(y1 + 4 + 64 * c);
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
            Vector256<float> dx = F16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)g).AsUInt32());
            Vector256<float> dminx = F16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)(g + 16)).AsUInt32());
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
        return Fma.MultiplyAddNegated(Avx.ConvertToVector256Single(MinsTerm(m03, m47, (short*)(y + 260))), dminx * yd, acc);
    }
}
