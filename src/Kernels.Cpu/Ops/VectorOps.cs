using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Infer.Kernels.Cpu.Ops;

/// <summary>
/// Element-wise and row kernels of the forward pass (RMSNorm, softmax, SwiGLU, RoPE). Each fast kernel has a plain
/// scalar reference beside it (<c>...Ref</c>); tests compare the two over every length 0..256 and large odd ones.
/// </summary>
public static unsafe class VectorOps
{
    // ---- RMSNorm: y = x / sqrt(mean(x²) + eps) * w ----

    public static void RmsNormRef(ReadOnlySpan<float> x, ReadOnlySpan<float> w, float eps, Span<float> y)
    {
        float ss = 0;
        for (int i = 0; i < x.Length; i++) ss += x[i] * x[i];
        float scale = 1f / MathF.Sqrt(ss / x.Length + eps);
        for (int i = 0; i < x.Length; i++) y[i] = x[i] * scale * w[i];
    }

    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> w, float eps, Span<float> y)
    {
        if (x.Length == 0) return;
        float ss = TensorPrimitives.SumOfSquares(x);
        float scale = 1f / MathF.Sqrt(ss / x.Length + eps);
        // y = (x * scale) * w, fused in one pass
        int i = 0;
        if (Vector256.IsHardwareAccelerated && x.Length >= Vector256<float>.Count)
        {
            var vs = Vector256.Create(scale);
            ref float xr = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
            ref float wr = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(w);
            ref float yr = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(y);
            for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var v = Vector256.LoadUnsafe(ref xr, (nuint)i) * vs * Vector256.LoadUnsafe(ref wr, (nuint)i);
                v.StoreUnsafe(ref yr, (nuint)i);
            }
        }
        for (; i < x.Length; i++) y[i] = x[i] * scale * w[i];
    }

    // ---- softmax in place: x = exp(x - max) / sum ----

    public static void SoftmaxRef(Span<float> x)
    {
        if (x.Length == 0) return;
        float max = float.NegativeInfinity;
        for (int i = 0; i < x.Length; i++) max = MathF.Max(max, x[i]);
        float sum = 0;
        for (int i = 0; i < x.Length; i++) { x[i] = MathF.Exp(x[i] - max); sum += x[i]; }
        for (int i = 0; i < x.Length; i++) x[i] /= sum;
    }

    public static void Softmax(Span<float> x)
    {
        if (x.Length == 0) return;
        float max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, x);
        TensorPrimitives.Exp(x, x);
        float sum = TensorPrimitives.Sum(x);
        TensorPrimitives.Multiply(x, 1f / sum, x);
    }

    // ---- SwiGLU in place: gate = silu(gate) * up ----

    public static void SwiGluRef(Span<float> gate, ReadOnlySpan<float> up)
    {
        for (int i = 0; i < gate.Length; i++)
        {
            float g = gate[i];
            gate[i] = g / (1f + MathF.Exp(-g)) * up[i];
        }
    }

    public static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            ref float g = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(gate);
            ref float u = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(up);
            for (; i <= gate.Length - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var v = Vector512.LoadUnsafe(ref g, (nuint)i);
                var r = v / (Vector512<float>.One + Vector512.Exp(-v)) * Vector512.LoadUnsafe(ref u, (nuint)i);
                r.StoreUnsafe(ref g, (nuint)i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            ref float g = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(gate);
            ref float u = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(up);
            for (; i <= gate.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var v = Vector256.LoadUnsafe(ref g, (nuint)i);
                var r = v / (Vector256<float>.One + Vector256.Exp(-v)) * Vector256.LoadUnsafe(ref u, (nuint)i);
                r.StoreUnsafe(ref g, (nuint)i);
            }
        }
        for (; i < gate.Length; i++)
        {
            float gi = gate[i];
            gate[i] = gi / (1f + MathF.Exp(-gi)) * up[i];
        }
    }

    // ---- RoPE ----

    /// <summary>
    /// Rotates one head in place by the angles of <c>RopeConfig.CosSin</c>. NeoX pairs (i, i + dims/2); normal pairs (2i, 2i+1).
    /// Dimensions past dims are untouched.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void RopeHead(Span<float> head, int dims, bool neox, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = dims / 2;
        if (neox)
        {
            for (int i = 0; i < half; i++)
            {
                float a = head[i], b = head[i + half];
                head[i] = a * cos[i] - b * sin[i];
                head[i + half] = a * sin[i] + b * cos[i];
            }
        }
        else
        {
            for (int i = 0; i < half; i++)
            {
                float a = head[2 * i], b = head[2 * i + 1];
                head[2 * i] = a * cos[i] - b * sin[i];
                head[2 * i + 1] = a * sin[i] + b * cos[i];
            }
        }
    }

    // ---- attention for one query head over a run of cached positions ----

    /// <summary>
    /// Scalar reference: out = Σ_p softmax_p(scale · q·k_p) v_p over positions 0..count-1, where k_p = keys + p*stride.
    /// </summary>
    public static void AttendRef(ReadOnlySpan<float> q, float* keys, float* values, int stride, int count, float scale, Span<float> scores,
        Span<float> output)
    {
        int d = q.Length;
        for (int p = 0; p < count; p++)
        {
            float s = 0;
            for (int i = 0; i < d; i++) s += q[i] * keys[(long)p * stride + i];
            scores[p] = s * scale;
        }
        SoftmaxRef(scores[..count]);
        output[..d].Clear();
        for (int p = 0; p < count; p++)
            for (int i = 0; i < d; i++) output[i] += scores[p] * values[(long)p * stride + i];
    }

    public static void Attend(ReadOnlySpan<float> q, float* keys, float* values, int stride, int count, float scale, Span<float> scores,
        Span<float> output)
    {
        int d = q.Length;
        if (!Vector256.IsHardwareAccelerated || d % 16 != 0 || d > 256)
        {
            AttendTensorPrimitives(q, keys, values, stride, count, scale, scores, output);
            return;
        }
        fixed (float* qp = q, sp = scores, op = output)
        {
            // scores[p] = scale · q·k_p, four keys at a time so one horizontal reduction serves four dots.
            int p = 0;
            for (; p + 4 <= count; p += 4)
            {
                float* k0 = keys + (long)p * stride;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int i = 0; i < d; i += 8)
                {
                    var qv = Vector256.Load(qp + i);
                    a0 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k0 + i), a0);
                    a1 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k0 + stride + i), a1);
                    a2 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k0 + 2 * stride + i), a2);
                    a3 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k0 + 3 * stride + i), a3);
                }
                var sums = HorizontalSum4(a0, a1, a2, a3) * scale;
                sums.Store(sp + p);
            }
            for (; p < count; p++)
            {
                float* k = keys + (long)p * stride;
                Vector256<float> a = default;
                for (int i = 0; i < d; i += 8) a = Vector256.FusedMultiplyAdd(Vector256.Load(qp + i), Vector256.Load(k + i), a);
                sp[p] = Vector256.Sum(a) * scale;
            }

            Softmax(scores[..count]);

            // output = Σ_p scores[p] · v_p, the head's accumulators held in registers when it fits (d ≤ 128).
            if (d <= 128)
            {
                Span<Vector256<float>> acc = stackalloc Vector256<float>[16];
                acc.Clear();
                int nv = d / 8;
                for (p = 0; p < count; p++)
                {
                    float* v = values + (long)p * stride;
                    var s = Vector256.Create(sp[p]);
                    for (int j = 0; j < nv; j++) acc[j] = Vector256.FusedMultiplyAdd(s, Vector256.Load(v + j * 8), acc[j]);
                }
                for (int j = 0; j < nv; j++) acc[j].Store(op + j * 8);
            }
            else
            {
                output[..d].Clear();
                for (p = 0; p < count; p++)
                {
                    float* v = values + (long)p * stride;
                    var s = Vector256.Create(sp[p]);
                    for (int i = 0; i < d; i += 8) Vector256.FusedMultiplyAdd(s, Vector256.Load(v + i), Vector256.Load(op + i)).Store(op + i);
                }
            }
        }
    }

    /// <summary>
    /// Positions per pass of <see cref="AttendGroup"/>'s weighted sum: their value rows (≤ 32 KiB at 128 dims) stay in L1 for the group.
    /// </summary>
    private const int GroupValueBlock = 64;

    /// <summary>
    /// One token's <paramref name="group"/> query heads that share a KV head (GQA), over cache positions 0..count-1: the same result
    /// per head as <see cref="Attend"/>, but each key and value row is read from memory once for the whole group (per block of
    /// 4 keys / <see cref="GroupValueBlock"/> values, then reused from L1 by every head), which is what bounds decode at long contexts.
    /// Head g's query is q + g·<paramref name="headDim"/>, its output output + g·headDim; <paramref name="scores"/> holds group·count floats.
    /// Needs Vector256 and headDim a multiple of 8.
    /// </summary>
    public static void AttendGroup(float* q, int group, int headDim, float* keys, float* values, int stride, int count, float scale,
        float* scores, float* output)
    {
        int d = headDim;
        GroupScores(q, group, d, keys, stride, count, scale, scores, count);

        for (int g = 0; g < group; g++) Softmax(new Span<float>(scores + (long)g * count, count));

        new Span<float>(output, group * d).Clear();
        for (int p0 = 0; p0 < count; p0 += GroupValueBlock)
        {
            int p1 = Math.Min(count, p0 + GroupValueBlock);
            for (int g = 0; g < group; g++)
                AccumulateRows(output + g * d, d, values + (long)p0 * stride, stride, p1 - p0, scores + (long)g * count + p0);
        }
    }

    /// <summary>
    /// s[g·sStride + j] = scale · q_g · k_j for the <paramref name="group"/> query heads (q_g = q + g·d) and n key rows
    /// <paramref name="stride"/> floats apart (d a multiple of 8): 8 keys per pass, 8 independent FMA chains per head, each
    /// 8-key block reused from L1 by every head.
    /// </summary>
    internal static void GroupScores(float* q, int group, int d, float* keys, long stride, int n, float scale, float* s, long sStride)
    {
        int j = 0;
        for (; j + 8 <= n; j += 8)
        {
            float* k0 = keys + j * stride, k4 = k0 + 4 * stride;
            for (int g = 0; g < group; g++)
            {
                float* qp = q + g * d;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
                for (int i = 0; i < d; i += 8)
                {
                    var qv = Vector256.Load(qp + i);
                    a0 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k0 + i), a0);
                    a1 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k0 + stride + i), a1);
                    a2 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k0 + 2 * stride + i), a2);
                    a3 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k0 + 3 * stride + i), a3);
                    a4 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k4 + i), a4);
                    a5 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k4 + stride + i), a5);
                    a6 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k4 + 2 * stride + i), a6);
                    a7 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k4 + 3 * stride + i), a7);
                }
                float* sp = s + g * sStride + j;
                (HorizontalSum4(a0, a1, a2, a3) * scale).Store(sp);
                (HorizontalSum4(a4, a5, a6, a7) * scale).Store(sp + 4);
            }
        }
        for (; j < n; j++)
        {
            float* k = keys + j * stride;
            for (int g = 0; g < group; g++)
            {
                Vector256<float> a = default;
                for (int i = 0; i < d; i += 8) a = Vector256.FusedMultiplyAdd(Vector256.Load(q + g * d + i), Vector256.Load(k + i), a);
                s[g * sStride + j] = Vector256.Sum(a) * scale;
            }
        }
    }

    /// <summary>
    /// o[0..d) += Σ_j w[j] · rows[j] over n rows <paramref name="stride"/> floats apart (d a multiple of 8): 32 output floats in 4
    /// registers, two rows per step in separate accumulators (8 independent FMA chains).
    /// </summary>
    internal static void AccumulateRows(float* o, int d, float* rows, long stride, int n, float* w)
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
                float* v = rows + j * stride + i, u = v + stride;
                var x0 = Vector256.Create(w[j]);
                var x1 = Vector256.Create(w[j + 1]);
                a0 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(v), a0);
                a1 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(v + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(v + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(v + 24), a3);
                b0 = Vector256.FusedMultiplyAdd(x1, Vector256.Load(u), b0);
                b1 = Vector256.FusedMultiplyAdd(x1, Vector256.Load(u + 8), b1);
                b2 = Vector256.FusedMultiplyAdd(x1, Vector256.Load(u + 16), b2);
                b3 = Vector256.FusedMultiplyAdd(x1, Vector256.Load(u + 24), b3);
            }
            if (j < n)
            {
                float* v = rows + j * stride + i;
                var x0 = Vector256.Create(w[j]);
                a0 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(v), a0);
                a1 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(v + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(v + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(v + 24), a3);
            }
            (a0 + b0).Store(o + i);
            (a1 + b1).Store(o + i + 8);
            (a2 + b2).Store(o + i + 16);
            (a3 + b3).Store(o + i + 24);
        }
        for (; i < d; i += 8)
        {
            Vector256<float> a = Vector256.Load(o + i);
            for (int j = 0; j < n; j++) a = Vector256.FusedMultiplyAdd(Vector256.Create(w[j]), Vector256.Load(rows + j * stride + i), a);
            a.Store(o + i);
        }
    }

    /// <summary>The four horizontal sums of a0..a3 as lanes 0..3 of a 128-bit vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> HorizontalSum4(Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3)
    {
        var s0 = a0.GetLower() + a0.GetUpper();
        var s1 = a1.GetLower() + a1.GetUpper();
        var s2 = a2.GetLower() + a2.GetUpper();
        var s3 = a3.GetLower() + a3.GetUpper();
        if (System.Runtime.Intrinsics.X86.Sse3.IsSupported)
        {
            var h01 = System.Runtime.Intrinsics.X86.Sse3.HorizontalAdd(s0, s1); // s0.01 s0.23 s1.01 s1.23
            var h23 = System.Runtime.Intrinsics.X86.Sse3.HorizontalAdd(s2, s3);
            return System.Runtime.Intrinsics.X86.Sse3.HorizontalAdd(h01, h23);
        }
        return Vector128.Create(Vector128.Sum(s0), Vector128.Sum(s1), Vector128.Sum(s2), Vector128.Sum(s3));
    }

    private static void AttendTensorPrimitives(ReadOnlySpan<float> q, float* keys, float* values, int stride, int count, float scale,
        Span<float> scores, Span<float> output)
    {
        int d = q.Length;
        for (int p = 0; p < count; p++)
            scores[p] = TensorPrimitives.Dot(q, new ReadOnlySpan<float>(keys + (long)p * stride, d)) * scale;
        Softmax(scores[..count]);
        var o = output[..d];
        o.Clear();
        for (int p = 0; p < count; p++)
            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(values + (long)p * stride, d), scores[p], o, o);
    }
}
