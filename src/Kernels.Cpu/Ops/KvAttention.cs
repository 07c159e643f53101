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
            if (simd) VectorOps.GroupScores(q, group, d, k, d, n, scale, scores + p0, count);
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
                if (simd) VectorOps.AccumulateRows(o, d, v, d, n, s);
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

    /// <summary>s[g · sStride + j] = scale · q_g · k_j for the n keys of a block (rows d apart), without Vector256.</summary>
    private static void ScoresScalar(float* q, int group, int d, float* k, int n, float scale, float* s, int sStride)
    {
        for (int g = 0; g < group; g++)
        {
            var qg = new ReadOnlySpan<float>(q + g * d, d);
            for (int j = 0; j < n; j++) s[(long)g * sStride + j] = TensorPrimitives.Dot(qg, new ReadOnlySpan<float>(k + (long)j * d, d)) * scale;
        }
    }
}
