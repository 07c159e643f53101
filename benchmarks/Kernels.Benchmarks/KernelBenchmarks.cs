using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Infer.Kernels.Cpu;
using Infer.Kernels.Cpu.Ops;
using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Backend;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Benchmarks;

/// <summary>Random weights of a type and shape, quantized once into native memory, with a CPU backend to multiply them.</summary>
public abstract unsafe class MatMulBenchmarkBase : IThroughput, IDisposable
{
    protected CpuBackend Backend = null!;
    protected IWeight Weight = null!;
    protected IActivation X = null!, Y = null!;
    private byte* _data;

    public abstract GgmlType Type { get; set; }
    public abstract string Shape { get; set; }
    public abstract int Tokens { get; set; }

    [Params(0)]
    public int Threads { get; set; }

    protected (int Rows, int Cols) Dims
    {
        get
        {
            var parts = Shape.Split('x');
            return (int.Parse(parts[0]), int.Parse(parts[1]));
        }
    }

    public double BytesPerOp => (double)Dims.Rows * GgmlTypeInfo.RowBytes(Type, Dims.Cols);
    public double FlopsPerOp => 2.0 * Dims.Rows * Dims.Cols * Tokens;

    [GlobalSetup]
    public void Setup()
    {
        var (rows, cols) = Dims;
        long rowBytes = GgmlTypeInfo.RowBytes(Type, cols);
        _data = (byte*)NativeMemory.AlignedAlloc((nuint)(rowBytes * rows), 64);
        var rng = new Random(1);
        var row = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            for (int i = 0; i < cols; i++) row[i] = (float)(rng.NextDouble() * 0.04 - 0.02);
            RowCodec.Quantize(Type, row, new Span<byte>(_data + r * rowBytes, (int)rowBytes));
        }
        Backend = new CpuBackend(Threads, Math.Max(Tokens, 1));
        Weight = Backend.CreateWeight("w", Type, rows, cols, _data);
        X = Backend.Allocate(Tokens, cols);
        Y = Backend.Allocate(Tokens, rows);
        var x = Backend.View(X, Tokens);
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        int[] tokens = new int[Tokens];
        Backend.SetBatch(tokens, tokens, tokens);
    }

    [GlobalCleanup]
    public void Dispose()
    {
        Backend?.Dispose();
        if (_data != null) NativeMemory.AlignedFree(_data);
        _data = null;
        GC.SuppressFinalize(this);
    }

    /// <summary>One matmul; the input's quantization to the vec-dot type is included (it changes every token in a model).</summary>
    protected void RunMatMul()
    {
        Backend.View(X, 0); // mark the input as new so it is re-quantized, as in a forward pass
        Backend.MatMul(Weight, X, Y);
    }
}

/// <summary>Decode: one token times a weight matrix, memory-bound (GB/s of weights streamed).</summary>
[Config(typeof(ThroughputConfig))]
public class GemvBenchmarks : MatMulBenchmarkBase
{
    [Params(
        GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K)]
    public override GgmlType Type { get; set; }

    [Params("4096x4096", "14336x4096")]
    public override string Shape { get; set; } = "4096x4096";

    public override int Tokens { get; set; } = 1;

    [Benchmark]
    public void Gemv() => RunMatMul();
}

/// <summary>Prefill: 512 tokens times a weight matrix, compute-bound (GFLOP/s).</summary>
[Config(typeof(ThroughputConfig))]
public class GemmBenchmarks : MatMulBenchmarkBase
{
    [Params(GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.BF16)]
    public override GgmlType Type { get; set; }

    [Params("4096x4096")]
    public override string Shape { get; set; } = "4096x4096";

    public override int Tokens { get; set; } = 512;

    [Benchmark]
    public void Gemm512() => RunMatMul();
}

/// <summary>
/// The integer instruction sets side by side on one core, for the plain-layout dot of a type (an L2-resident 256 x 4096 matrix
/// times one activation row, so the kernel is measured, not DRAM): <c>Best</c> is AVX-VNNI <c>vpdpbusd</c> (256-bit) for
/// Q8_0/Q4_0/Q4_K and AVX-512BW <c>vpmaddubsw</c>/<c>vpmaddwd</c> (512-bit) for Q6_K; <c>Avx2</c> is the 256-bit
/// <c>vpmaddubsw</c>/<c>vpmaddwd</c> pair. (<c>infer info</c> prints which one a model's weights use.)
/// </summary>
[Config(typeof(ThroughputConfig))]
public unsafe class DotIsaBenchmarks : IThroughput, IDisposable
{
    private const int Rows = 256, Cols = 4096;
    private byte* _w, _a;
    private QuantKernel _k = null!;

    [Params(GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K)]
    public GgmlType Type { get; set; }

    [Params(QuantKernels.IsaLevel.Best, QuantKernels.IsaLevel.Avx2)]
    public QuantKernels.IsaLevel Isa { get; set; }

    public double BytesPerOp => (double)Rows * GgmlTypeInfo.RowBytes(Type, Cols);
    public double FlopsPerOp => 2.0 * Rows * Cols;

    [GlobalSetup]
    public void Setup()
    {
        _k = QuantKernels.Get(Type, Isa);
        long rowBytes = _k.RowBytes(Cols);
        _w = (byte*)NativeMemory.AlignedAlloc((nuint)(rowBytes * Rows), 64);
        _a = (byte*)NativeMemory.AlignedAlloc((nuint)_k.ActivationRowBytes(Cols), 64);
        var rng = new Random(3);
        var row = new float[Cols];
        for (int r = 0; r < Rows; r++)
        {
            for (int i = 0; i < Cols; i++) row[i] = (float)(rng.NextDouble() * 0.04 - 0.02);
            RowCodec.Quantize(Type, row, new Span<byte>(_w + r * rowBytes, (int)rowBytes));
        }
        for (int i = 0; i < Cols; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
        fixed (float* x = row) _k.QuantizeActivations(x, _a, Cols);
    }

    [GlobalCleanup]
    public void Dispose()
    {
        if (_w != null) NativeMemory.AlignedFree(_w);
        if (_a != null) NativeMemory.AlignedFree(_a);
        _w = _a = null;
        GC.SuppressFinalize(this);
    }

    [Benchmark]
    public float Dot()
    {
        long rowBytes = _k.RowBytes(Cols);
        float sum = 0;
        for (int r = 0; r < Rows; r++) sum += _k.Dot(Cols, _w + r * rowBytes, _a);
        return sum;
    }
}

/// <summary>Decode attention of one token over a KV cache of N positions (Llama-3.1-8B heads: 32 query, 8 KV, 128 dims).</summary>
[Config(typeof(ThroughputConfig))]
public unsafe class AttentionBenchmarks : IThroughput
{
    private const int Heads = 32, KvHeads = 8, HeadDim = 128;
    private float[] _k = [], _v = [], _q = [], _scores = [], _out = [];

    [Params(512, 4096)]
    public int Positions { get; set; }

    public double BytesPerOp => 2.0 * Positions * KvHeads * HeadDim * sizeof(float);
    public double FlopsPerOp => 4.0 * Positions * Heads * HeadDim;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(2);
        float R() => (float)(rng.NextDouble() * 2 - 1);
        _k = Enumerable.Range(0, Positions * KvHeads * HeadDim).Select(_ => R()).ToArray();
        _v = Enumerable.Range(0, Positions * KvHeads * HeadDim).Select(_ => R()).ToArray();
        _q = Enumerable.Range(0, Heads * HeadDim).Select(_ => R()).ToArray();
        _scores = new float[Positions];
        _out = new float[Heads * HeadDim];
    }

    [Benchmark]
    public void AttentionDecode()
    {
        fixed (float* k = _k, v = _v)
        {
            for (int h = 0; h < Heads; h++)
            {
                int kv = h / (Heads / KvHeads);
                VectorOps.Attend(_q.AsSpan(h * HeadDim, HeadDim), k + kv * HeadDim, v + kv * HeadDim, KvHeads * HeadDim, Positions, 0.088f, _scores,
                    _out.AsSpan(h * HeadDim, HeadDim));
            }
        }
    }
}

/// <summary>
/// Prefill attention of N tokens at positions 0..N-1 over their own keys (causal; Llama-3.1-8B heads: 32 query, 8 KV, 128 dims), one
/// thread, through the tiled kernel a multi-token batch uses: (query block, KV head) items. FLOPs count the causal half of QKᵀ and PV.
/// </summary>
[Config(typeof(ThroughputConfig))]
public unsafe class AttentionPrefillBenchmarks : IThroughput, IDisposable
{
    private const int Heads = 32, KvHeads = 8, HeadDim = 128, Group = Heads / KvHeads;
    private float* _q, _k, _v, _out, _scratch;
    private int* _positions;

    [Params(512)]
    public int Tokens { get; set; }

    public double BytesPerOp => 0;
    public double FlopsPerOp => 4.0 * Heads * HeadDim * ((double)Tokens * (Tokens + 1) / 2);

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(4);
        float* Fill(long count)
        {
            var p = (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
            for (long i = 0; i < count; i++) p[i] = (float)(rng.NextDouble() * 2 - 1);
            return p;
        }
        _q = Fill((long)Tokens * Heads * HeadDim);
        _k = Fill((long)Tokens * KvHeads * HeadDim);
        _v = Fill((long)Tokens * KvHeads * HeadDim);
        _out = Fill((long)Tokens * Heads * HeadDim);
        _positions = (int*)NativeMemory.AlignedAlloc((nuint)(Tokens * sizeof(int)), 64);
        for (int t = 0; t < Tokens; t++) _positions[t] = t;
        long scratchFloats = FlashAttention.ScratchFloats(FlashAttention.BlockTokens(Group), Group, HeadDim);
        _scratch = (float*)NativeMemory.AlignedAlloc((nuint)(scratchFloats * sizeof(float)), 64);
    }

    [GlobalCleanup]
    public void Dispose()
    {
        foreach (var p in new[] { _q, _k, _v, _out, _scratch }) if (p != null) NativeMemory.AlignedFree(p);
        if (_positions != null) NativeMemory.AlignedFree(_positions);
        _q = _k = _v = _out = _scratch = null;
        _positions = null;
        GC.SuppressFinalize(this);
    }

    [Benchmark]
    public void AttentionPrefill()
    {
        int block = FlashAttention.BlockTokens(Group);
        int qStride = Heads * HeadDim, kvStride = KvHeads * HeadDim;
        for (int t0 = 0; t0 < Tokens; t0 += block)
        {
            int n = Math.Min(block, Tokens - t0);
            for (int kv = 0; kv < KvHeads; kv++)
            {
                long offset = (long)t0 * qStride + kv * Group * HeadDim;
                FlashAttention.Attend(_q + offset, qStride, _out + offset, qStride,
                    _positions + t0, n, Group, HeadDim, _k + kv * HeadDim, _v + kv * HeadDim, kvStride, 0.088f, _scratch);
            }
        }
    }
}

/// <summary>Row kernels at a 4096-wide hidden state (Llama-3.1-8B), 512 rows (a prefill batch).</summary>
[Config(typeof(ThroughputConfig))]
public class RowKernelBenchmarks : IThroughput
{
    private const int Dim = 4096, Rows = 512, HeadDim = 128;
    private static readonly RopeConfig Llama3Rope = new(HeadDim, 500000f, 1f, NeoX: false, null);
    private float[] _x = [], _y = [], _w = [], _cos = [], _sin = [];

    public double BytesPerOp => 2.0 * Rows * Dim * sizeof(float);
    public double FlopsPerOp => 0;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(3);
        _x = Enumerable.Range(0, Rows * Dim).Select(_ => (float)rng.NextDouble()).ToArray();
        _y = new float[Rows * Dim];
        _w = Enumerable.Range(0, Dim).Select(_ => (float)rng.NextDouble()).ToArray();
        _cos = new float[HeadDim / 2];
        _sin = new float[HeadDim / 2];
    }

    [Benchmark]
    public void RmsNorm()
    {
        for (int r = 0; r < Rows; r++) VectorOps.RmsNorm(_x.AsSpan(r * Dim, Dim), _w, 1e-5f, _y.AsSpan(r * Dim, Dim));
    }

    [Benchmark]
    public void Rope()
    {
        for (int r = 0; r < Rows; r++)
        {
            Llama3Rope.CosSin(r, _cos, _sin);
            var row = _y.AsSpan(r * Dim, Dim);
            for (int h = 0; h < Dim; h += HeadDim) VectorOps.RopeHead(row.Slice(h, HeadDim), HeadDim, neox: false, _cos, _sin);
        }
    }
}
