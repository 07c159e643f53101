using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>A 16-bit float format's conversion to float32, 16 at a time and one at a time (BF16, F16).</summary>
internal unsafe interface IHalfToFloat
{
    static abstract Vector512<float> Load16(ushort* p);
    static abstract float ToFloat(ushort h);
}

internal unsafe struct BF16ToFloat : IHalfToFloat
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(ushort* p) => BF16.Load16(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(ushort h) => BFloat16Bits.ToFloat(h);
}

internal unsafe struct F16ToFloat : IHalfToFloat
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(ushort* p) => F16.Load16(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(ushort h) => HalfBits.ToFloat(h);
}

/// <summary>
/// One 16-bit float weight row · 4 float32 activation rows (the prefill GEMM of BF16 and F16 weights): each 16 weights are converted
/// once and feed 4 tokens, with two accumulators per token (8 independent FMA chains).
/// </summary>
internal static unsafe class HalfDot4
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    public static void Avx512<T>(int n, byte* w, byte* a, nint aStride, float* result) where T : struct, IHalfToFloat
    {
        var h = (ushort*)w;
        float* y0 = (float*)a, y1 = (float*)(a + aStride), y2 = (float*)(a + 2 * aStride), y3 = (float*)(a + 3 * aStride);
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, c0 = default, c1 = default, c2 = default, c3 = default;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            Vector512<float> w0 = T.Load16(h + i), w1 = T.Load16(h + i + 16);
            a0 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(y0 + i), a0);
            a1 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(y1 + i), a1);
            a2 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(y2 + i), a2);
            a3 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(y3 + i), a3);
            c0 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(y0 + i + 16), c0);
            c1 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(y1 + i + 16), c1);
            c2 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(y2 + i + 16), c2);
            c3 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(y3 + i + 16), c3);
        }
        for (; i + 16 <= n; i += 16)
        {
            Vector512<float> w0 = T.Load16(h + i);
            a0 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(y0 + i), a0);
            a1 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(y1 + i), a1);
            a2 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(y2 + i), a2);
            a3 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(y3 + i), a3);
        }
        float s0 = Vector512.Sum(a0 + c0), s1 = Vector512.Sum(a1 + c1), s2 = Vector512.Sum(a2 + c2), s3 = Vector512.Sum(a3 + c3);
        for (; i < n; i++)
        {
            float x = T.ToFloat(h[i]);
            s0 = MathF.FusedMultiplyAdd(x, y0[i], s0);
            s1 = MathF.FusedMultiplyAdd(x, y1[i], s1);
            s2 = MathF.FusedMultiplyAdd(x, y2[i], s2);
            s3 = MathF.FusedMultiplyAdd(x, y3[i], s3);
        }
        result[0] = s0; result[1] = s1; result[2] = s2; result[3] = s3;
    }

    /// <summary>
    /// 4 weight rows (<paramref name="w"/> + r · <paramref name="wStride"/>) · 4 activation rows → result[c * 4 + r]: a 4 × 4 register
    /// tile, so each converted weight vector feeds 4 tokens and each activation vector 4 rows (the 1-row kernel re-reads every token's
    /// activations from L2 per weight row).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    public static void Tile4x4Avx512<T>(int n, byte* w, nint wStride, byte* a, nint aStride, float* result) where T : struct, IHalfToFloat
    {
        ushort* h0 = (ushort*)w, h1 = (ushort*)(w + wStride), h2 = (ushort*)(w + 2 * wStride), h3 = (ushort*)(w + 3 * wStride);
        float* y0 = (float*)a, y1 = (float*)(a + aStride), y2 = (float*)(a + 2 * aStride), y3 = (float*)(a + 3 * aStride);
        Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default, s10 = default, s11 = default, s12 = default, s13 = default;
        Vector512<float> s20 = default, s21 = default, s22 = default, s23 = default, s30 = default, s31 = default, s32 = default, s33 = default;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            Vector512<float> w0 = T.Load16(h0 + i), w1 = T.Load16(h1 + i), w2 = T.Load16(h2 + i), w3 = T.Load16(h3 + i);
            Vector512<float> x = Vector512.Load(y0 + i);
            s00 = Avx512F.FusedMultiplyAdd(w0, x, s00); s01 = Avx512F.FusedMultiplyAdd(w1, x, s01);
            s02 = Avx512F.FusedMultiplyAdd(w2, x, s02); s03 = Avx512F.FusedMultiplyAdd(w3, x, s03);
            x = Vector512.Load(y1 + i);
            s10 = Avx512F.FusedMultiplyAdd(w0, x, s10); s11 = Avx512F.FusedMultiplyAdd(w1, x, s11);
            s12 = Avx512F.FusedMultiplyAdd(w2, x, s12); s13 = Avx512F.FusedMultiplyAdd(w3, x, s13);
            x = Vector512.Load(y2 + i);
            s20 = Avx512F.FusedMultiplyAdd(w0, x, s20); s21 = Avx512F.FusedMultiplyAdd(w1, x, s21);
            s22 = Avx512F.FusedMultiplyAdd(w2, x, s22); s23 = Avx512F.FusedMultiplyAdd(w3, x, s23);
            x = Vector512.Load(y3 + i);
            s30 = Avx512F.FusedMultiplyAdd(w0, x, s30); s31 = Avx512F.FusedMultiplyAdd(w1, x, s31);
            s32 = Avx512F.FusedMultiplyAdd(w2, x, s32); s33 = Avx512F.FusedMultiplyAdd(w3, x, s33);
        }
        result[0] = Vector512.Sum(s00); result[1] = Vector512.Sum(s01); result[2] = Vector512.Sum(s02); result[3] = Vector512.Sum(s03);
        result[4] = Vector512.Sum(s10); result[5] = Vector512.Sum(s11); result[6] = Vector512.Sum(s12); result[7] = Vector512.Sum(s13);
        result[8] = Vector512.Sum(s20); result[9] = Vector512.Sum(s21); result[10] = Vector512.Sum(s22); result[11] = Vector512.Sum(s23);
        result[12] = Vector512.Sum(s30); result[13] = Vector512.Sum(s31); result[14] = Vector512.Sum(s32); result[15] = Vector512.Sum(s33);
        for (; i < n; i++)
        {
            float x0 = y0[i], x1 = y1[i], x2 = y2[i], x3 = y3[i];
            float v0 = T.ToFloat(h0[i]), v1 = T.ToFloat(h1[i]), v2 = T.ToFloat(h2[i]), v3 = T.ToFloat(h3[i]);
            result[0] = MathF.FusedMultiplyAdd(v0, x0, result[0]); result[1] = MathF.FusedMultiplyAdd(v1, x0, result[1]);
            result[2] = MathF.FusedMultiplyAdd(v2, x0, result[2]); result[3] = MathF.FusedMultiplyAdd(v3, x0, result[3]);
            result[4] = MathF.FusedMultiplyAdd(v0, x1, result[4]); result[5] = MathF.FusedMultiplyAdd(v1, x1, result[5]);
            result[6] = MathF.FusedMultiplyAdd(v2, x1, result[6]); result[7] = MathF.FusedMultiplyAdd(v3, x1, result[7]);
            result[8] = MathF.FusedMultiplyAdd(v0, x2, result[8]); result[9] = MathF.FusedMultiplyAdd(v1, x2, result[9]);
            result[10] = MathF.FusedMultiplyAdd(v2, x2, result[10]); result[11] = MathF.FusedMultiplyAdd(v3, x2, result[11]);
            result[12] = MathF.FusedMultiplyAdd(v0, x3, result[12]); result[13] = MathF.FusedMultiplyAdd(v1, x3, result[13]);
            result[14] = MathF.FusedMultiplyAdd(v2, x3, result[14]); result[15] = MathF.FusedMultiplyAdd(v3, x3, result[15]);
        }
    }
}
