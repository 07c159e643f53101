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
    /// Per-pair angles for one position: theta_i = pos * freqScale * base^(-2i/dims) / factor_i, i in [0, dims/2),
    /// in float32 as transformers computes them (inv_freq = 1 / base^(2i/dims); freqs = pos * inv_freq), then cos/sin.
    /// </summary>
    public static void RopeCosSin(int position, int dims, float freqBase, float freqScale, ReadOnlySpan<float> freqFactors, Span<float> cos, Span<float> sin)
    {
        for (int i = 0; i < dims / 2; i++)
        {
            // transformers: inv_freq = 1 / base^(2i/dims) in float32, freqs = pos * inv_freq in float32.
            float invFreq = 1f / MathF.Pow(freqBase, 2f * i / dims);
            if (!freqFactors.IsEmpty) invFreq /= freqFactors[i];
            float theta = position * freqScale * invFreq;
            cos[i] = MathF.Cos(theta);
            sin[i] = MathF.Sin(theta);
        }
    }

    /// <summary>Rotates one head in place. NeoX pairs (i, i + dims/2); normal pairs (2i, 2i+1). Dimensions past dims are untouched.</summary>
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
    public static void AttendRef(ReadOnlySpan<float> q, float* keys, float* values, int stride, int count, float scale, Span<float> scores, Span<float> output)
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

    public static void Attend(ReadOnlySpan<float> q, float* keys, float* values, int stride, int count, float scale, Span<float> scores, Span<float> output)
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
