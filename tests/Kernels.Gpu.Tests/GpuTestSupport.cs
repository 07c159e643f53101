using ILGPU.Runtime.CPU;
using Infer.Runtime.Backend;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;
using Infer.Runtime.Inference;

namespace Infer.Kernels.Gpu.Tests;

/// <summary>
/// Backends on ILGPU's CPU accelerator shared by the kernel tests (kernels compile once per backend):
/// <see cref="RowPerThread"/> takes the accelerator's default paths (one thread per matmul row, attention splits
/// chosen automatically); <see cref="Reducing"/> forces the GPU paths (four threads per row reduced through shared
/// memory, three attention splits merged by the last one to finish; its decode dots stay float32, and
/// <see cref="ReducingInt8"/> is the same with int8 decode a word per step).
/// </summary>
public sealed class GpuBackends : IDisposable
{
    public const int MaxBatch = 16;

    public GpuBackend RowPerThread { get; } = new(GpuContextFactory.OpenIlgpuCpu(), new GpuBackendOptions(MaxBatch));
    public GpuBackend Reducing { get; } =
        new(GpuContextFactory.OpenIlgpuCpu(), new GpuBackendOptions(MaxBatch, AttentionSplits: 3, MatMulSliceThreads: 4, Int8Decode: false));

    /// <summary>
    /// The GPU paths with int8 decode, every format a word per step (the block formats too: <c>INFER_GPU_BLOCKDOT=0</c>; Int8DecodeTests).
    /// </summary>
    public GpuBackend ReducingInt8 { get; } =
        new(GpuContextFactory.OpenIlgpuCpu(), new GpuBackendOptions(MaxBatch, AttentionSplits: 3, MatMulSliceThreads: 4, BlockDecode: false));

    /// <summary>
    /// The int8 decode path at a GPU's shape: groups of four 32-thread warps, a warp per row, eight threads quantizing each block of x,
    /// and one group per multiprocessor (two), so every launch loops over its row blocks; Q8_0, Q4_0 and Q4-Q6_K a block per step.
    /// </summary>
    public GpuBackend WarpInt8 { get; } =
        new(GpuContextFactory.OpenIlgpuCpu(new CPUDevice(numThreadsPerWarp: 32, numWarpsPerMultiprocessor: 4, numMultiprocessors: 2)),
            new GpuBackendOptions(MaxBatch, AttentionSplits: 3, MatMulSliceThreads: 32, MatMulGroupsPerSM: 1));

    public GpuBackend Get(bool reducing) => reducing ? Reducing : RowPerThread;

    public void Dispose()
    {
        RowPerThread.Dispose();
        Reducing.Dispose();
        ReducingInt8.Dispose();
        WarpInt8.Dispose();
    }
}

internal static class Check
{
    /// <summary>ggml test-backend-ops' bound on normalized mean squared error for float32 operations.</summary>
    public const double MaxNmse = 1e-7;

    /// <summary>NMSE = Σ(a - b)² / Σ b², in double.</summary>
    /// <param name="actual">the backend's values.</param>
    /// <param name="expected">the reference.</param>
    /// <param name="floor">
    /// optional, one per value: each reference value counts in the denominator as at least this (a dot's terms' typical sum), so a
    /// single output whose terms cancel is not judged by its rounding relative to a near-zero result (backend-ops does the same).
    /// </param>
    public static double Nmse(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, ReadOnlySpan<float> floor = default)
    {
        Assert.Equal(expected.Length, actual.Length);
        double num = 0, den = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double d = (double)actual[i] - expected[i];
            num += d * d;
            double e = floor.IsEmpty ? expected[i] : Math.Max(Math.Abs(expected[i]), floor[i]);
            den += e * e;
        }
        return den == 0 ? num : num / den;
    }

    public static void Close(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, string what)
    {
        for (int i = 0; i < actual.Length; i++)
            Assert.False(float.IsNaN(actual[i]), $"{what}: NaN at {i}");
        double nmse = Nmse(actual, expected);
        Assert.True(nmse <= MaxNmse, $"{what}: NMSE {nmse:E3} > {MaxNmse:E0}");
    }

    public static float[] Random(Random rng, int n, float scale = 1f)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return a;
    }

    /// <summary>A random weight quantized by ggml's reference quantizer: its GGUF bytes and their dequantized values.</summary>
    public static (byte[] Bytes, float[] Dequantized) RandomWeight(Random rng, GgmlType type, int rows, int cols)
    {
        var w = Random(rng, rows * cols);
        var bytes = new byte[GgmlTypeInfo.RowBytes(type, cols) * rows];
        RowCodec.Quantize(type, w, bytes);
        var deq = new float[rows * cols];
        RowCodec.Dequantize(type, bytes, deq);
        return (bytes, deq);
    }

    /// <summary>
    /// Activations as the GPU's int8 paths see them, on the host: ggml's q8_0 rule per 32 (d = max|x| / 127, q = round(x / d)
    /// half away from zero, d as float32), returned dequantized (q · d, exactly).
    /// </summary>
    public static double[] Int8Activations(float[] x)
    {
        var v = new double[x.Length];
        for (int o = 0; o < x.Length; o += 32)
        {
            float amax = 0;
            for (int k = 0; k < 32; k++) amax = Math.Max(amax, Math.Abs(x[o + k]));
            float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
            for (int k = 0; k < 32; k++) v[o + k] = (double)d * (int)MathF.Round(x[o + k] * id, MidpointRounding.AwayFromZero);
        }
        return v;
    }

    /// <summary>Reads the first <paramref name="rows"/> rows of an activation back to the host.</summary>
    public static float[] Read(GpuBackend b, IActivation x, int rows)
    {
        var r = new float[rows * x.Cols];
        for (int i = 0; i < rows; i++) b.ReadRow(x, i, r.AsSpan(i * x.Cols, x.Cols));
        return r;
    }

    public static void SetTokens(GpuBackend b, int n)
    {
        var ids = new int[n];
        var pos = new int[n];
        for (int i = 0; i < n; i++) { ids[i] = i; pos[i] = i; }
        b.SetBatch(ids, pos, new int[n]);
    }
}

/// <summary>Whole-model checks' helpers: the greedy continuation of a session and logit distances.</summary>
internal static class Logits
{
    /// <summary>The next <paramref name="count"/> greedy tokens, each appended to the session but the last.</summary>
    public static List<int> Greedy(Session session, int count)
    {
        var greedy = new List<int>();
        for (int i = 0; i < count; i++)
        {
            int next = ArgMax(session.Logits);
            greedy.Add(next);
            if (i + 1 < count) session.Append(next);
        }
        return greedy;
    }

    /// <summary>max |a - b| over two logit rows of one length, none of a NaN.</summary>
    public static float MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(b.Length, a.Length);
        float max = 0;
        for (int i = 0; i < a.Length; i++)
        {
            Assert.False(float.IsNaN(a[i]), $"NaN at {i}");
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        }
        return max;
    }

    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
