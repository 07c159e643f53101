using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Infer.Kernels.Cpu.Ops;
using Infer.Runtime.Backend;

namespace Infer.Benchmarks;

/// <summary>
/// Attention over a head-major KV cache of each <see cref="KvCacheType"/> (Llama-3.1-8B heads: 32 query, 8 KV, 128 dims), one thread,
/// as the CPU backend runs it: decode a GQA group at a time (float32 through VectorOps.AttendGroup, F16 and Q8_0 through
/// KvAttention, converting each block of rows once for the group), and a 8-token query block at the end of the context through
/// the tiled kernel. GB/s counts the cache bytes read, so the narrower types show what their halved (quartered) reads buy.
/// </summary>
[Config(typeof(ThroughputConfig))]
public unsafe class KvCacheBenchmarks : IThroughput, IDisposable
{
    private const int Heads = 32, KvHeads = 8, HeadDim = 128, Group = Heads / KvHeads, BlockTokens = 8;
    private byte* _k, _v;
    private float* _q, _out, _scores, _rows, _tile;
    private int* _positions;
    private long _rowBytes;

    [Params(KvCacheType.F32, KvCacheType.F16, KvCacheType.Q8_0)]
    public KvCacheType Type { get; set; }

    [Params(4096)]
    public int Positions { get; set; }

    public double BytesPerOp => 2.0 * Positions * KvHeads * KvRows.RowBytes(Type, HeadDim);
    public double FlopsPerOp => 0;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(5);
        _rowBytes = KvRows.RowBytes(Type, HeadDim);
        long rows = (long)KvHeads * Positions;
        _k = (byte*)NativeMemory.AlignedAlloc((nuint)(rows * _rowBytes), 64);
        _v = (byte*)NativeMemory.AlignedAlloc((nuint)(rows * _rowBytes), 64);
        float* x = stackalloc float[HeadDim];
        for (long r = 0; r < rows; r++)
        {
            for (int i = 0; i < HeadDim; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
            KvRows.Store(Type, x, _k + r * _rowBytes, HeadDim);
            for (int i = 0; i < HeadDim; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
            KvRows.Store(Type, x, _v + r * _rowBytes, HeadDim);
        }
        _q = Alloc(BlockTokens * Heads * HeadDim);
        for (int i = 0; i < BlockTokens * Heads * HeadDim; i++) _q[i] = (float)(rng.NextDouble() * 2 - 1);
        _out = Alloc(BlockTokens * Heads * HeadDim);
        _scores = Alloc((long)Group * Positions);
        _rows = Alloc(KvAttention.ScratchFloats(HeadDim));
        _tile = Alloc(FlashAttention.ScratchFloats(BlockTokens, Group, HeadDim));
        _positions = (int*)NativeMemory.AlignedAlloc(BlockTokens * sizeof(int), 64);
        for (int t = 0; t < BlockTokens; t++) _positions[t] = Positions - BlockTokens + t;
    }

    private static float* Alloc(long floats) => (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);

    [GlobalCleanup]
    public void Dispose()
    {
        foreach (var p in new[] { (void*)_k, _v, _q, _out, _scores, _rows, _tile, _positions }) if (p != null) NativeMemory.AlignedFree(p);
        _k = _v = null;
        _q = _out = _scores = _rows = _tile = null;
        _positions = null;
        GC.SuppressFinalize(this);
    }

    [Benchmark]
    public void Decode()
    {
        for (int kv = 0; kv < KvHeads; kv++)
        {
            byte* k = _k + (long)kv * Positions * _rowBytes, v = _v + (long)kv * Positions * _rowBytes;
            float* q = _q + kv * Group * HeadDim, o = _out + kv * Group * HeadDim;
            if (Type == KvCacheType.F32)
                VectorOps.AttendGroup(q, Group, HeadDim, (float*)k, (float*)v, HeadDim, Positions, 0.088f, _scores, o);
            else
                KvAttention.Attend(Type, Type, q, Group, HeadDim, k, v, Positions, 0.088f, _scores, o, _rows);
        }
    }

    [Benchmark]
    public void PrefillBlockAtDepth()
    {
        int qStride = Heads * HeadDim;
        for (int kv = 0; kv < KvHeads; kv++)
            FlashAttention.Attend(Type, Type, _q + kv * Group * HeadDim, qStride, _out + kv * Group * HeadDim, qStride, _positions, BlockTokens,
                Group, HeadDim, _k + (long)kv * Positions * _rowBytes, _v + (long)kv * Positions * _rowBytes, 0.088f, _tile);
    }
}
