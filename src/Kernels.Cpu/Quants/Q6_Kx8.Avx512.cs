using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

public static unsafe partial class Q6_Kx8
{
    /// <summary>
    /// Bytes per super-block of the 512-bit tile's scales (<see cref="WideTileScales"/>): per sub-block the scale as an int16 pair
    /// (sc, sc) per row lane (16 × 64 B), per sub-block pair the offset scales (−32·sc_2p, −32·sc_2p+1) per row lane (8 × 64 B),
    /// then d as floats (64 B).
    /// </summary>
    private const int WideScaleBytes = 16 * 64 + 8 * 64 + 64;
    private const int WideOffsetScales = 16 * 64, WideD = WideOffsetScales + 8 * 64;

    /// <summary>Floats of tile scratch per super-block for <see cref="WideTileScales"/>.</summary>
    internal const int WideTileScaleFloats = WideScaleBytes / sizeof(float);

    /// <summary>The 512-bit tile's scales of rows 0..15 (two consecutive groups; lane r of each 16-lane vector is row r).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void WideTileScales(int n, byte* group, nint groupStride, float* scales)
    {
        int nb = n / Q6_KFormat.BlockSize;
        for (int b = 0; b < nb; b++)
        {
            byte* dst = (byte*)scales + (nint)b * WideScaleBytes;
            for (int grp = 0; grp < 2; grp++)
            {
                byte* g = group + (nint)b * GroupBlockBytes + grp * groupStride;
                for (int p = 0; p < 8; p++)
                {
                    Vector256<int> sc = ScalePair(g, p);
                    Vector256<int> even = EvenScale(sc), odd = OddScale(sc);
                    ((even & Vector256.Create(0xFFFF)) | (even << 16)).Store((int*)(dst + 64 * (2 * p) + 32 * grp));
                    ((odd & Vector256.Create(0xFFFF)) | (odd << 16)).Store((int*)(dst + 64 * (2 * p + 1) + 32 * grp));
                    (sc.AsInt16() * Vector256.Create((short)-32)).AsInt32().Store((int*)(dst + WideOffsetScales + 64 * p + 32 * grp));
                }
                F16.Load8((ushort*)g).Store((float*)(dst + WideD + 32 * grp));
            }
        }
    }

    /// <summary>
    /// GEMM tile with 512-bit AVX-512BW (see <see cref="Wide"/>): 16 rows (two consecutive groups) · 8 Q8_K activation rows →
    /// y[c * <paramref name="yStride"/> + r], scales from <see cref="WideTileScales"/>. Per 16-element sub-block and token, the products
    /// of two weight vectors add up in int16 (q ≤ 63, |y| ≤ 128: 4 products per lane, at most 32256) and are widened with the
    /// sub-block's scale; the −32 offset is −32·Σ_s sc_s·bsum_s, eight more <c>vpmaddwd</c> per super-block into the same sums
    /// (|·| &lt; 2^29, as in <see cref="Dot{T}"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Tile16x8Avx512(int n, byte* group, nint groupStride, float* tileScales, byte* a, nint aStride, float* y,
        nint yStride)
    {
        int nb = n / Q6_KFormat.BlockSize;
        Vector512<float> f0 = default, f1 = default, f2 = default, f3 = default, f4 = default, f5 = default, f6 = default, f7 = default;
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * GroupBlockBytes + QuantsOffset, g1 = g0 + groupStride;
            byte* sc = (byte*)tileScales + (nint)b * WideScaleBytes;
            byte* yb = a + (nint)b * Q8_KFormat.TypeSize;
            Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
            for (int s = 0; s < 16; s++)
            {
                byte* p0 = g0 + SubBlockBytes * s, p1 = g1 + SubBlockBytes * s;
                Vector512<byte> v0 = Wide.Load2(p0, p1), v1 = Wide.Load2(p0 + 32, p1 + 32), v2 = Wide.Load2(p0 + 64, p1 + 64);
                var m3F = Vector512.Create((byte)0x3F);
                var w = new WideWeights4(v0 & m3F, v1 & m3F, v2 & m3F, WideColumn3(v0, v1, v2));
                Vector512<short> scale = Vector512.Load((short*)(sc + 64 * s));
                byte* q = yb + Q8_KFormat.QsOffset + 16 * s;
                s0 = WideSubBlock(s0, w, scale, q);
                s1 = WideSubBlock(s1, w, scale, q + aStride);
                s2 = WideSubBlock(s2, w, scale, q + 2 * aStride);
                s3 = WideSubBlock(s3, w, scale, q + 3 * aStride);
                s4 = WideSubBlock(s4, w, scale, q + 4 * aStride);
                s5 = WideSubBlock(s5, w, scale, q + 5 * aStride);
                s6 = WideSubBlock(s6, w, scale, q + 6 * aStride);
                s7 = WideSubBlock(s7, w, scale, q + 7 * aStride);
            }
            for (int p = 0; p < 8; p++)
            {
                Vector512<short> off = Vector512.Load((short*)(sc + WideOffsetScales + 64 * p));
                byte* bs = yb + Q8_KFormat.BSumsOffset + 4 * p;
                s0 += Wide.Widen(off, Vector512.Create(*(int*)bs).AsInt16());
                s1 += Wide.Widen(off, Vector512.Create(*(int*)(bs + aStride)).AsInt16());
                s2 += Wide.Widen(off, Vector512.Create(*(int*)(bs + 2 * aStride)).AsInt16());
                s3 += Wide.Widen(off, Vector512.Create(*(int*)(bs + 3 * aStride)).AsInt16());
                s4 += Wide.Widen(off, Vector512.Create(*(int*)(bs + 4 * aStride)).AsInt16());
                s5 += Wide.Widen(off, Vector512.Create(*(int*)(bs + 5 * aStride)).AsInt16());
                s6 += Wide.Widen(off, Vector512.Create(*(int*)(bs + 6 * aStride)).AsInt16());
                s7 += Wide.Widen(off, Vector512.Create(*(int*)(bs + 7 * aStride)).AsInt16());
            }
            Vector512<float> d = Vector512.Load((float*)(sc + WideD));
            f0 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s0), d * Vector512.Create(*(float*)yb), f0);
            f1 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s1), d * Vector512.Create(*(float*)(yb + aStride)), f1);
            f2 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s2), d * Vector512.Create(*(float*)(yb + 2 * aStride)), f2);
            f3 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s3), d * Vector512.Create(*(float*)(yb + 3 * aStride)), f3);
            f4 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s4), d * Vector512.Create(*(float*)(yb + 4 * aStride)), f4);
            f5 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s5), d * Vector512.Create(*(float*)(yb + 5 * aStride)), f5);
            f6 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s6), d * Vector512.Create(*(float*)(yb + 6 * aStride)), f6);
            f7 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s7), d * Vector512.Create(*(float*)(yb + 7 * aStride)), f7);
        }
        f0.Store(y); f1.Store(y + yStride); f2.Store(y + 2 * yStride); f3.Store(y + 3 * yStride);
        f4.Store(y + 4 * yStride); f5.Store(y + 5 * yStride); f6.Store(y + 6 * yStride); f7.Store(y + 7 * yStride);
    }

    /// <summary>The 4 unpacked weight vectors of one 16-element sub-block of 16 rows.</summary>
    private readonly struct WideWeights4(Vector512<byte> w0, Vector512<byte> w1, Vector512<byte> w2, Vector512<byte> w3)
    {
        public readonly Vector512<byte> W0 = w0, W1 = w1, W2 = w2, W3 = w3;
    }

    /// <summary>
    /// Column 3 of a sub-block from the top bit pairs of V_0, V_1, V_2 (two bit-selects, as
    /// <see cref="Column3{T}(Vector256{byte}, Vector256{byte}, Vector256{byte})"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> WideColumn3(Vector512<byte> v0, Vector512<byte> v1, Vector512<byte> v2)
    {
        Vector512<byte> a = Vector512.ShiftRightLogical(v0.AsUInt16(), 6).AsByte();
        Vector512<byte> b = Vector512.ShiftRightLogical(v1.AsUInt16(), 4).AsByte();
        Vector512<byte> c = Vector512.ShiftRightLogical(v2.AsUInt16(), 2).AsByte();
        return Vector512.ConditionalSelect(Vector512.Create((byte)0x03), a, Vector512.ConditionalSelect(Vector512.Create((byte)0x0C), b, c))
            & Vector512.Create((byte)0x3F);
    }

    /// <summary>s + sc · Σ q·y over one 16-element sub-block of 16 rows against one token: two int16 sums of 4 products per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> WideSubBlock(Vector512<int> s, in WideWeights4 w, Vector512<short> scale, byte* q)
    {
        Vector512<short> p01 = Wide.MulAdd16(Wide.Mul16(w.W0, Wide.Broadcast4(q)), w.W1, Wide.Broadcast4(q + 4));
        Vector512<short> p23 = Wide.MulAdd16(Wide.Mul16(w.W2, Wide.Broadcast4(q + 8)), w.W3, Wide.Broadcast4(q + 12));
        return s + Wide.Widen(p01, scale) + Wide.Widen(p23, scale);
    }
}
