using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Infer.Runtime.Backend;

namespace Infer.Kernels.Cpu.Ops;

/// <summary>
/// Decode attention over a KV cache stored in a narrower type (F16, Q8_0): one token's query heads that share a KV head, over
/// cache positions 0..count-1. The cache is read once: blocks of <see cref="BlockRows"/> rows are converted into a float32
/// scratch that stays in L1 and serves every head of the group (the float32 cache goes through <see cref="VectorOps"/> in place).
/// Rows of one KV head are consecutive: row p of K at keys + p · RowBytes(K type, headDim).
/// </summary>
public static unsafe class KvAttention
{
    /// <summary>Cache rows converted per block: 32 × 128 floats (16 KiB) at the usual head sizes, well inside L1.</summary>
    public const int BlockRows = 32;

    /// <summary>Floats of per-worker scratch the converted rows need (one block of K or V at a time).</summary>
    public static long ScratchFloats(int headDim) => (long)BlockRows * headDim;

    /// <summary>
    /// Scalar reference: the cache rows converted by the scalar reference (<see cref="KvRows.LoadRef"/>), then the naive
    /// softmax attention of each head. Allocates (a test reference, not for the forward pass).
    /// </summary>
    public static void AttendRef(KvCacheType kType, KvCacheType vType, float* q, int group, int headDim, byte* keys, byte* values,
        int count, float scale, float* output)
    {
        var k = new float[(long)count * headDim];
        var v = new float[(long)count * headDim];
        fixed (float* kp = k, vp = v)
        {
            KvRows.LoadRef(kType, keys, count, headDim, kp, headDim);
            KvRows.LoadRef(vType, values, count, headDim, vp, headDim);
            int position = count - 1;
            FlashAttention.AttendRef(q, headDim, output, headDim, &position, 1, group, headDim, kp, vp, headDim, scale);
        }
    }

    /// <summary>
    /// The <paramref name="group"/> heads of one token: head g's query at q + g·headDim, its output at output + g·headDim.
    /// <paramref name="scores"/> holds group · count floats, <paramref name="rows"/> <see cref="ScratchFloats"/> floats.
    /// </summary>
    public static void Attend(KvCacheType kType, KvCacheType vType, float* q, int group, int headDim, byte* keys, byte* values,
        int count, float scale, float* scores, float* output, float* rows)
    {
        switch (kType)
        {
            case KvCacheType.F32: Attend<KvF32>(vType, q, group, headDim, keys, values, count, scale, scores, output, rows); break;
            case KvCacheType.F16: Attend<KvF16>(vType, q, group, headDim, keys, values, count, scale, scores, output, rows); break;
            case KvCacheType.Q8_0: Attend<KvQ8_0>(vType, q, group, headDim, keys, values, count, scale, scores, output, rows); break;
            default: throw new ArgumentOutOfRangeException(nameof(kType));
        }
    }

    private static void Attend<TK>(KvCacheType vType, float* q, int group, int headDim, byte* keys, byte* values,
        int count, float scale, float* scores, float* output, float* rows) where TK : struct, IKvRows
    {
        switch (vType)
        {
            case KvCacheType.F32: Attend<TK, KvF32>(q, group, headDim, keys, values, count, scale, scores, output, rows); break;
            case KvCacheType.F16: Attend<TK, KvF16>(q, group, headDim, keys, values, count, scale, scores, output, rows); break;
            case KvCacheType.Q8_0: Attend<TK, KvQ8_0>(q, group, headDim, keys, values, count, scale, scores, output, rows); break;
            default: throw new ArgumentOutOfRangeException(nameof(vType));
        }
    }

    /// <summary>The entry above, specialized per (K type, V type).</summary>
    internal static void Attend<TK, TV>(float* q, int group, int headDim, byte* keys, byte* values, int count, float scale,
        float* scores, float* output, float* rows) where TK : struct, IKvRows where TV : struct, IKvRows
    {
        int d = headDim;
        long kRow = KvCacheTypes.RowBytes(TK.Type, d), vRow = KvCacheTypes.RowBytes(TV.Type, d);
        bool simd = Vector256.IsHardwareAccelerated && d % 8 == 0;
        // scores[g, p] = scale · q_g · k_p, a block of keys converted once for the whole group
        for (int p0 = 0; p0 < count; p0 += BlockRows)
        {
            int n = Math.Min(BlockRows, count - p0);
            float* k = Block<TK>(keys + p0 * kRow, n, d, rows);
            if (simd) ScoresSimd(q, group, d, k, n, scale, scores + p0, count);
            else ScoresScalar(q, group, d, k, n, scale, scores + p0, count);
        }
        for (int g = 0; g < group; g++) VectorOps.Softmax(new Span<float>(scores + (long)g * count, count));

        // output[g] = Σ_p scores[g, p] · v_p, a block of values converted once for the whole group
        new Span<float>(output, group * d).Clear();
        for (int p0 = 0; p0 < count; p0 += BlockRows)
        {
            int n = Math.Min(BlockRows, count - p0);
            float* v = Block<TV>(values + p0 * vRow, n, d, rows);
            for (int g = 0; g < group; g++)
            {
                float* o = output + g * d, s = scores + (long)g * count + p0;
                if (simd) AccumulateSimd(o, d, v, n, s);
                else
                    for (int j = 0; j < n; j++)
                        TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(v + (long)j * d, d), s[j], new Span<float>(o, d), new Span<float>(o, d));
            }
        }
    }

    /// <summary>n rows of the cache as floats (headDim apart): converted into <paramref name="rows"/>, or in place for float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float* Block<T>(byte* src, int n, int d, float* rows) where T : struct, IKvRows
    {
        if (!T.Converts) return (float*)src;
        T.Load(src, n, d, rows, d);
        return rows;
    }

    /// <summary>s[g · sStride + j] = scale · q_g · k_j for the n keys of a block (rows d apart), 8 keys per pass.</summary>
    private static void ScoresSimd(float* q, int group, int d, float* k, int n, float scale, float* s, int sStride)
    {
        int j = 0;
        for (; j + 8 <= n; j += 8)
        {
            float* k0 = k + (long)j * d, k4 = k0 + 4 * d;
            for (int g = 0; g < group; g++)
            {
                float* qp = q + g * d;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
                for (int i = 0; i < d; i += 8)
                {
                    var qv = Vector256.Load(qp + i);
                    a0 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k0 + i), a0);
                    a1 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k0 + d + i), a1);
                    a2 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k0 + 2 * d + i), a2);
                    a3 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k0 + 3 * d + i), a3);
                    a4 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k4 + i), a4);
                    a5 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k4 + d + i), a5);
                    a6 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k4 + 2 * d + i), a6);
                    a7 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k4 + 3 * d + i), a7);
                }
                float* sp = s + (long)g * sStride + j;
                (VectorOps.HorizontalSum4(a0, a1, a2, a3) * scale).Store(sp);
                (VectorOps.HorizontalSum4(a4, a5, a6, a7) * scale).Store(sp + 4);
            }
        }
        for (; j < n; j++)
        {
            float* kj = k + (long)j * d;
            for (int g = 0; g < group; g++)
            {
                Vector256<float> a = default;
                for (int i = 0; i < d; i += 8) a = Vector256.FusedMultiplyAdd(Vector256.Load(q + g * d + i), Vector256.Load(kj + i), a);
                s[(long)g * sStride + j] = Vector256.Sum(a) * scale;
            }
        }
    }

    private static void ScoresScalar(float* q, int group, int d, float* k, int n, float scale, float* s, int sStride)
    {
        for (int g = 0; g < group; g++)
        {
            var qg = new ReadOnlySpan<float>(q + g * d, d);
            for (int j = 0; j < n; j++) s[(long)g * sStride + j] = TensorPrimitives.Dot(qg, new ReadOnlySpan<float>(k + (long)j * d, d)) * scale;
        }
    }

    /// <summary>o[0..d) += Σ_j s[j] · v_j over the n rows of a block (rows d apart): 32 columns in 4 registers, two rows per step.</summary>
    private static void AccumulateSimd(float* o, int d, float* v, int n, float* s)
    {
        int i = 0;
        for (; i + 32 <= d; i += 32)
        {
            Vector256<float> a0 = Vector256.Load(o + i), a1 = Vector256.Load(o + i + 8);
            Vector256<float> a2 = Vector256.Load(o + i + 16), a3 = Vector256.Load(o + i + 24);
            Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
            int j = 0;
            for (; j + 2 <= n; j += 2)
            {
                float* vj = v + (long)j * d + i, uj = vj + d;
                var w = Vector256.Create(s[j]);
                var x = Vector256.Create(s[j + 1]);
                a0 = Vector256.FusedMultiplyAdd(w, Vector256.Load(vj), a0);
                a1 = Vector256.FusedMultiplyAdd(w, Vector256.Load(vj + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(w, Vector256.Load(vj + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(w, Vector256.Load(vj + 24), a3);
                b0 = Vector256.FusedMultiplyAdd(x, Vector256.Load(uj), b0);
                b1 = Vector256.FusedMultiplyAdd(x, Vector256.Load(uj + 8), b1);
                b2 = Vector256.FusedMultiplyAdd(x, Vector256.Load(uj + 16), b2);
                b3 = Vector256.FusedMultiplyAdd(x, Vector256.Load(uj + 24), b3);
            }
            if (j < n)
            {
                float* vj = v + (long)j * d + i;
                var w = Vector256.Create(s[j]);
                a0 = Vector256.FusedMultiplyAdd(w, Vector256.Load(vj), a0);
                a1 = Vector256.FusedMultiplyAdd(w, Vector256.Load(vj + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(w, Vector256.Load(vj + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(w, Vector256.Load(vj + 24), a3);
            }
            (a0 + b0).Store(o + i);
            (a1 + b1).Store(o + i + 8);
            (a2 + b2).Store(o + i + 16);
            (a3 + b3).Store(o + i + 24);
        }
        for (; i < d; i += 8)
        {
            Vector256<float> a = Vector256.Load(o + i);
            for (int j = 0; j < n; j++) a = Vector256.FusedMultiplyAdd(Vector256.Create(s[j]), Vector256.Load(v + (long)j * d + i), a);
            a.Store(o + i);
        }
    }
}
