using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

public static unsafe partial class Q4_Kx8
{
    /// <summary>
    /// Bytes per super-block of the 512-bit tile's scales (<see cref="WideTileScales"/>): the 6-bit scales as int16 pairs per row lane
    /// (8 sub-blocks × 64 B), the mins as int16 pairs (m_2q, m_2q+1) per row lane (4 × 64 B), d and dmin as floats (2 × 64 B).
    /// </summary>
    internal const int WideScaleBytes = 8 * 64 + 4 * 64 + 2 * 64;
    private const int WideMinsOffset = 8 * 64, WideDOffset = WideMinsOffset + 4 * 64, WideDMinOffset = WideDOffset + 64;

    /// <summary>Floats of tile scratch per super-block for <see cref="WideTileScales"/>.</summary>
    internal const int WideTileScaleFloats = WideScaleBytes / sizeof(float);

    /// <summary>
    /// The 512-bit tile's scales of rows 0..15 (two consecutive groups), written once per tile (see <see cref="WideScaleBytes"/>):
    /// lane r of each 16-lane vector is row r (rows 8..15 from the second group).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void WideTileScales(int n, byte* group, nint groupStride, float* scales) =>
        WideKTileScales(n / Q4_KFormat.BlockSize, GroupBlockBytes, group, groupStride, (byte*)scales);

    /// <summary><see cref="WideTileScales"/> for any group layout with the Q4_K 128-byte header (Q4_K, Q5_K).</summary>
    internal static void WideKTileScales(int nb, int groupBlockBytes, byte* group, nint groupStride, byte* scales)
    {
        for (int b = 0; b < nb; b++)
        {
            byte* dst = scales + (nint)b * WideScaleBytes;
            for (int g = 0; g < 2; g++)
            {
                byte* gb = group + (nint)b * groupBlockBytes + g * groupStride;
                UnpackScales(gb, out var sc03, out var sc47, out var m03, out var m47);
                for (int i = 0; i < 4; i++)
                {
                    // (sc, sc) in both int16 halves of a row's lane: vpmaddwd then applies the scale to both partial sums
                    Vector256<uint> s03 = Byte(sc03, i).AsUInt32(), s47 = Byte(sc47, i).AsUInt32();
                    (s03 | (s03 << 16)).Store((uint*)(dst + 64 * i + 32 * g));
                    (s47 | (s47 << 16)).Store((uint*)(dst + 64 * (i + 4) + 32 * g));
                }
                // (m_2q, m_2q+1) per lane
                Vector256<uint> m01 = (m03 & Vector256.Create(0xFFu)) | ((m03 & Vector256.Create(0xFF00u)) << 8);
                Vector256<uint> m23 = ((m03 >> 16) & Vector256.Create(0xFFu)) | ((m03 >> 8) & Vector256.Create(0xFF0000u));
                Vector256<uint> m45 = (m47 & Vector256.Create(0xFFu)) | ((m47 & Vector256.Create(0xFF00u)) << 8);
                Vector256<uint> m67 = ((m47 >> 16) & Vector256.Create(0xFFu)) | ((m47 >> 8) & Vector256.Create(0xFF0000u));
                m01.Store((uint*)(dst + WideMinsOffset + 32 * g));
                m23.Store((uint*)(dst + WideMinsOffset + 64 + 32 * g));
                m45.Store((uint*)(dst + WideMinsOffset + 128 + 32 * g));
                m67.Store((uint*)(dst + WideMinsOffset + 192 + 32 * g));
                F16.Load8((ushort*)gb).Store((float*)(dst + WideDOffset + 32 * g));
                F16.Load8((ushort*)(gb + DMinOffset)).Store((float*)(dst + WideDMinOffset + 32 * g));
            }
        }
    }

    /// <summary>
    /// Bytes per super-block of the generated tile's scales (<see cref="JitTileScales"/>, <see cref="Jit.GeneratedTiles"/>): d times
    /// the 6-bit scale as floats per row lane (8 sub-blocks × 64 B), the mins as int16 pairs (m_j, m_j) per row lane (8 × 64 B), and
    /// dmin as floats (64 B).
    /// </summary>
    internal const int JitScaleBytes = 8 * 64 + 8 * 64 + 64;
    internal const int JitMinsOffset = 8 * 64, JitDMinOffset = 16 * 64;

    /// <summary>Floats of tile scratch per super-block for <see cref="JitTileScales"/>.</summary>
    internal const int JitTileScaleFloats = JitScaleBytes / sizeof(float);

    /// <summary>
    /// The generated Q4_K tile's scales of rows 0..15 (two consecutive groups; see <see cref="JitScaleBytes"/>): lane r of each 16-lane
    /// vector is row r (rows 8..15 from the second group).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void JitTileScales(int n, byte* group, nint groupStride, float* scales) =>
        JitKTileScales(n / Q4_KFormat.BlockSize, GroupBlockBytes, group, groupStride, (byte*)scales);

    /// <summary><see cref="JitTileScales"/> for any group layout with the Q4_K 128-byte header (Q4_K, Q5_K).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the first prompt's tiles run while the callers are still at tier 0
    internal static void JitKTileScales(int nb, int groupBlockBytes, byte* group, nint groupStride, byte* scales)
    {
        for (int b = 0; b < nb; b++)
        {
            byte* dst = scales + (nint)b * JitScaleBytes;
            for (int g = 0; g < 2; g++)
            {
                byte* gb = group + (nint)b * groupBlockBytes + g * groupStride;
                UnpackScales(gb, out var sc03, out var sc47, out var m03, out var m47);
                Vector256<float> d = F16.Load8((ushort*)gb);
                for (int i = 0; i < 4; i++)
                {
                    (Avx.ConvertToVector256Single(Byte(sc03, i)) * d).Store((float*)(dst + 64 * i + 32 * g));
                    (Avx.ConvertToVector256Single(Byte(sc47, i)) * d).Store((float*)(dst + 64 * (i + 4) + 32 * g));
                    // (m, m) in both int16 halves: vpdpwssd against (bsums[2j], bsums[2j+1]) gives m_j · Σy of sub-block j
                    Vector256<uint> lo = Byte(m03, i).AsUInt32(), hi = Byte(m47, i).AsUInt32();
                    (lo | (lo << 16)).Store((uint*)(dst + JitMinsOffset + 64 * i + 32 * g));
                    (hi | (hi << 16)).Store((uint*)(dst + JitMinsOffset + 64 * (i + 4) + 32 * g));
                }
                F16.Load8((ushort*)(gb + DMinOffset)).Store((float*)(dst + JitDMinOffset + 32 * g));
            }
        }
    }

    /// <summary>
    /// GEMM tile with 512-bit AVX-512BW (see <see cref="Wide"/>): 16 rows (two consecutive groups) · 8 Q8_K activation rows →
    /// y[c * <paramref name="yStride"/> + r], scales from <see cref="WideTileScales"/>. Per sub-block and token, the 8 weight vectors'
    /// products (q ≤ 15, |y| ≤ 128: each int16 lane sums 16 products, at most 30720) add up in int16 and are widened once with the
    /// sub-block's scale (<c>vpmaddwd</c>); the mins term Σ m_j·Σy_j is four <c>vpmaddwd</c> per super-block.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Tile16x8Avx512(int n, byte* group, nint groupStride, float* tileScales, byte* a, nint aStride, float* y,
        nint yStride)
    {
        int nb = n / Q4_KFormat.BlockSize;
        Vector512<float> f0 = default, f1 = default, f2 = default, f3 = default, f4 = default, f5 = default, f6 = default, f7 = default;
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * GroupBlockBytes + QuantsOffset, g1 = g0 + groupStride;
            byte* sc = (byte*)tileScales + (nint)b * WideScaleBytes;
            nint o = (nint)b * Q8_KFormat.TypeSize;
            Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
            // sub-block j: the low nibbles of pair j/2 for even j, the high for odd j (a loop, not written out: eight inlined copies
            // of the pass would exhaust the JIT's inline budget)
            for (int j = 0; j < 8; j++)
            {
                var w = WideUnpack(g0 + PairBytes * (j >> 1), g1 + PairBytes * (j >> 1), (byte)(4 * (j & 1)));
                Vector512<short> scale = Vector512.Load((short*)(sc + 64 * j));
                byte* q = a + o + Q8_KFormat.QsOffset + 32 * j;
                s0 = Wide.SubBlock32(s0, w, scale, q);
                s1 = Wide.SubBlock32(s1, w, scale, q + aStride);
                s2 = Wide.SubBlock32(s2, w, scale, q + 2 * aStride);
                s3 = Wide.SubBlock32(s3, w, scale, q + 3 * aStride);
                s4 = Wide.SubBlock32(s4, w, scale, q + 4 * aStride);
                s5 = Wide.SubBlock32(s5, w, scale, q + 5 * aStride);
                s6 = Wide.SubBlock32(s6, w, scale, q + 6 * aStride);
                s7 = Wide.SubBlock32(s7, w, scale, q + 7 * aStride);
            }
            WideFinish8(a, aStride, o, sc, s0, s1, s2, s3, s4, s5, s6, s7, ref f0, ref f1, ref f2, ref f3, ref f4, ref f5, ref f6, ref f7);
        }
        f0.Store(y); f1.Store(y + yStride); f2.Store(y + 2 * yStride); f3.Store(y + 3 * yStride);
        f4.Store(y + 4 * yStride); f5.Store(y + 5 * yStride); f6.Store(y + 6 * yStride); f7.Store(y + 7 * yStride);
    }

    /// <summary>One sub-block of 16 rows: the nibbles at <paramref name="shift"/> (0: low, 4: high) of a pair's 8 vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static WideWeights WideUnpack(byte* p0, byte* p1, byte shift)
    {
        var m4 = Vector512.Create((byte)0x0F);
        return new WideWeights(
            Vector512.ShiftRightLogical(Wide.Load2(p0, p1).AsUInt16(), shift).AsByte() & m4,
            Vector512.ShiftRightLogical(Wide.Load2(p0 + 32, p1 + 32).AsUInt16(), shift).AsByte() & m4,
            Vector512.ShiftRightLogical(Wide.Load2(p0 + 64, p1 + 64).AsUInt16(), shift).AsByte() & m4,
            Vector512.ShiftRightLogical(Wide.Load2(p0 + 96, p1 + 96).AsUInt16(), shift).AsByte() & m4,
            Vector512.ShiftRightLogical(Wide.Load2(p0 + 128, p1 + 128).AsUInt16(), shift).AsByte() & m4,
            Vector512.ShiftRightLogical(Wide.Load2(p0 + 160, p1 + 160).AsUInt16(), shift).AsByte() & m4,
            Vector512.ShiftRightLogical(Wide.Load2(p0 + 192, p1 + 192).AsUInt16(), shift).AsByte() & m4,
            Vector512.ShiftRightLogical(Wide.Load2(p0 + 224, p1 + 224).AsUInt16(), shift).AsByte() & m4);
    }

    /// <summary>The end of a super-block for the 8 tokens of a tile: f_c += dy_c · (d · isum_c − dmin · mins_c).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void WideFinish8(byte* a, nint aStride, nint o, byte* sc, Vector512<int> s0, Vector512<int> s1, Vector512<int> s2,
        Vector512<int> s3, Vector512<int> s4, Vector512<int> s5, Vector512<int> s6, Vector512<int> s7,
        ref Vector512<float> f0, ref Vector512<float> f1, ref Vector512<float> f2, ref Vector512<float> f3,
        ref Vector512<float> f4, ref Vector512<float> f5, ref Vector512<float> f6, ref Vector512<float> f7)
    {
        var mins = new WideMins(sc + WideMinsOffset);
        Vector512<float> d = Vector512.Load((float*)(sc + WideDOffset)), dmin = Vector512.Load((float*)(sc + WideDMinOffset));
        f0 = WideFinish(a + o, s0, mins, d, dmin, f0);
        f1 = WideFinish(a + aStride + o, s1, mins, d, dmin, f1);
        f2 = WideFinish(a + 2 * aStride + o, s2, mins, d, dmin, f2);
        f3 = WideFinish(a + 3 * aStride + o, s3, mins, d, dmin, f3);
        f4 = WideFinish(a + 4 * aStride + o, s4, mins, d, dmin, f4);
        f5 = WideFinish(a + 5 * aStride + o, s5, mins, d, dmin, f5);
        f6 = WideFinish(a + 6 * aStride + o, s6, mins, d, dmin, f6);
        f7 = WideFinish(a + 7 * aStride + o, s7, mins, d, dmin, f7);
    }

    /// <summary>The tile's mins as int16 pairs (m_2q, m_2q+1) per row lane, q = 0..3.</summary>
    private readonly struct WideMins(byte* p)
    {
        public readonly Vector512<short> M01 = Vector512.Load((short*)p), M23 = Vector512.Load((short*)(p + 64));
        public readonly Vector512<short> M45 = Vector512.Load((short*)(p + 128)), M67 = Vector512.Load((short*)(p + 192));
    }

    /// <summary>f + dy · (d · isum − dmin · Σ_j m_j·Σy_j) for one token's super-block (Σy_j of sub-block j from the block sums).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> WideFinish(byte* yBlock, Vector512<int> isum, in WideMins m, Vector512<float> d, Vector512<float> dmin,
        Vector512<float> f)
    {
        Vector256<short> bs = Vector256.Load((short*)(yBlock + Q8_KFormat.BSumsOffset));
        Vector128<int> pairs = Ssse3.HorizontalAdd(bs.GetLower(), bs.GetUpper()).AsInt32(); // (Σy_2q, Σy_2q+1) in dword q
        Vector512<int> mins = Wide.Widen(m.M01, Vector512.Create(pairs.ToScalar()).AsInt16());
        mins += Wide.Widen(m.M23, Vector512.Create(pairs.GetElement(1)).AsInt16());
        mins += Wide.Widen(m.M45, Vector512.Create(pairs.GetElement(2)).AsInt16());
        mins += Wide.Widen(m.M67, Vector512.Create(pairs.GetElement(3)).AsInt16());
        Vector512<float> t = Avx512F.FusedMultiplyAddNegated(Wide.ToFloat(mins), dmin, Wide.ToFloat(isum) * d);
        return Avx512F.FusedMultiplyAdd(t, Vector512.Create(*(float*)yBlock), f);
    }
}
