using Infer.Kernels.Cpu.Ops;
using Infer.Kernels.Cpu.Threading;
using Infer.Runtime.Backend;

namespace Infer.Kernels.Cpu.Backend;

/// <summary>
/// The KV cache and the attention over it. The cache is [sequence][layer][kvHead][position] rows of headDim elements for K and V,
/// each in its <see cref="KvCacheType"/> (float32, F16, or Q8_0 blocks along the head), so a head's keys (or values) over all
/// positions are one contiguous run that attention streams through (position-major rows of all heads would put a head's rows
/// 2+ KiB apart, a new page every few positions). The store converts on write; the kernels read the narrower types directly,
/// a block of rows at a time (<see cref="KvAttention"/>, <see cref="FlashAttention"/>).
/// </summary>
internal sealed unsafe partial class AttentionDriver
{
    private readonly NativeBuffers _buffers;
    private readonly WorkerPool _pool;
    private readonly BatchState _batch;
    private AttentionWork? _attention; // specialized for the cache's (K type, V type) when it is created

    private KvCacheConfig? _kv;
    private byte* _kCache, _vCache;
    private long _kRowBytes, _vRowBytes;

    // Per-thread scratch for the attention scores of one head (ContextLength floats, whole cache lines per thread).
    private float* _scratch;
    private int _scratchPerThread;

    // Per-thread scratch for cache rows converted to float32 in decode (KvAttention.ScratchFloats), narrower caches only.
    private float* _rowScratch;
    private long _rowScratchPerThread;

    // Query blocks of the current batch for tiled attention: runs of consecutive batch tokens of one sequence, at most
    // FlashAttention.BlockTokens(group) long. (maxBatch) each.
    private readonly int* _blockStart, _blockTokens;
    private readonly long* _blockOrder; // (maxBatch) sort keys: most expensive block first, block index in the low 32 bits

    // Per-thread scratch of the tiled kernel and of grouped decode, grown on demand.
    private float* _tileScratch;
    private long _tileScratchPerThread;

    /// <summary>
    /// Context length from which a decode token's GQA group is attended together (<see cref="VectorOps.AttendGroup"/>): each cache row
    /// is then read once per group instead of once per query head, and at long contexts decode attention is bound by those reads.
    /// A narrower cache is always attended a group at a time (<see cref="KvAttention"/>): its conversion is then shared too.
    /// </summary>
    internal const int GroupDecodePositions = 1024;

    public AttentionDriver(NativeBuffers buffers, WorkerPool pool, BatchState batch)
    {
        _buffers = buffers;
        _pool = pool;
        _batch = batch;
        _blockStart = (int*)buffers.Alloc(sizeof(int) * (long)batch.MaxBatch);
        _blockTokens = (int*)buffers.Alloc(sizeof(int) * (long)batch.MaxBatch);
        _blockOrder = (long*)buffers.Alloc(sizeof(long) * (long)batch.MaxBatch);
    }

    /// <summary>Every <see cref="KvCacheType"/> has kernels here.</summary>
    public static bool Supports(KvCacheType type) => type is KvCacheType.F32 or KvCacheType.F16 or KvCacheType.Q8_0;

    public void CreateKvCache(KvCacheConfig config)
    {
        foreach (var type in new[] { config.KType, config.VType })
        {
            if (!Supports(type)) throw new NotSupportedException($"the CPU backend has no KV cache of type {type}");
            if (KvCacheTypes.Unsupported(type, config.HeadDim) is { } why) throw new NotSupportedException(why);
        }
        _buffers.Free(_kCache);
        _buffers.Free(_vCache);
        _buffers.Free(_scratch);
        _buffers.Free(_rowScratch);
        _kv = config;
        _kRowBytes = KvCacheTypes.RowBytes(config.KType, config.HeadDim);
        _vRowBytes = KvCacheTypes.RowBytes(config.VType, config.HeadDim);
        long rows = (long)config.Contexts * config.Layers * config.ContextLength * config.KvHeads;
        _kCache = (byte*)_buffers.Alloc(rows * _kRowBytes);
        _vCache = (byte*)_buffers.Alloc(rows * _vRowBytes);
        _scratchPerThread = (config.ContextLength + 15) / 16 * 16;
        _scratch = (float*)_buffers.Alloc((long)_scratchPerThread * _pool.ThreadCount * sizeof(float));
        _attention = AttentionWork.Create(this, config.KType, config.VType);
        _rowScratchPerThread = _attention.Converts ? (KvAttention.ScratchFloats(config.HeadDim) + 15) / 16 * 16 : 0;
        _rowScratch = _attention.Converts ? (float*)_buffers.Alloc(_rowScratchPerThread * _pool.ThreadCount * sizeof(float)) : null;
        TouchFirstPositions();
    }

    /// <summary>
    /// Faults in now, during the load, the cache pages that the first token writes: each KV head's rows start a region of their
    /// own (up to a 2 MiB huge page each), so a first token touches a page per head and layer, all of a small model's cache. Writing
    /// them cost 0.37 s of the first token on a virtual machine (1B, 4096 positions: 128 MB); during the load it runs beside the
    /// tokenizer's build. Positions beyond those pages stay untouched until used.
    /// </summary>
    private void TouchFirstPositions()
    {
        var c = Config;
        for (int layer = 0; layer < c.Layers; layer++)
            for (int h = 0; h < c.KvHeads; h++)
            {
                *KvHead(_kCache, _kRowBytes, 0, layer, h) = 0;
                *KvHead(_vCache, _vRowBytes, 0, layer, h) = 0;
            }
    }

    /// <summary>The cache rows of one KV head: row p of the head is at the result + p · rowBytes.</summary>
    private byte* KvHead(byte* cache, long rowBytes, int sequence, int layer, int kvHead)
    {
        var c = _kv!;
        return cache + ((((long)sequence * c.Layers + layer) * c.KvHeads + kvHead) * c.ContextLength) * rowBytes;
    }

    private KvCacheConfig Config => _kv ?? throw new InvalidOperationException("CreateKvCache was not called");

    /// <summary>Writes k and v of every batch token into the token's sequence and position, head by head, in the cache's types.</summary>
    public void Store(int layer, CpuActivation k, CpuActivation v)
    {
        var kv = Config;
        int headDim = kv.HeadDim, kvDim = kv.KvHeads * headDim;
        if ((uint)layer >= (uint)kv.Layers || k.Cols < kvDim || v.Cols < kvDim)
            throw new ArgumentException($"storing rows of {k.Cols}/{v.Cols} in layer {layer} does not fit the KV cache "
                + $"({kv.Layers} layers, {kv.KvHeads} KV heads of {headDim})");
        for (int t = 0; t < _batch.N; t++)
        {
            int position = _batch.Positions[t], sequence = _batch.Sequences[t];
            for (int h = 0; h < kv.KvHeads; h++)
            {
                _attention!.StoreRow(k.Data + (long)t * k.Cols + h * headDim, KvHead(_kCache, _kRowBytes, sequence, layer, h) + position * _kRowBytes,
                    v.Data + (long)t * v.Cols + h * headDim, KvHead(_vCache, _vRowBytes, sequence, layer, h) + position * _vRowBytes, headDim);
            }
        }
    }

    public void Attend(int layer, CpuActivation q, CpuActivation output, AttentionShape shape)
    {
        var kv = Config;
        var work = _attention!;
        int nHeads = shape.Heads, nKvHeads = shape.KvHeads, headDim = shape.HeadDim;
        if (nKvHeads != kv.KvHeads || headDim != kv.HeadDim || nHeads % nKvHeads != 0 || (uint)layer >= (uint)kv.Layers)
            throw new ArgumentException($"attention with {nHeads} heads over {nKvHeads} KV heads of {headDim} does not fit the KV cache "
                + $"({kv.KvHeads} KV heads of {kv.HeadDim})");
        int group = nHeads / nKvHeads;
        int blockTokens = FlashAttention.BlockTokens(group);
        int blocks = PlanQueryBlocks(blockTokens, group, out bool anyTile, out int maxPosition);
        work.Tiled = anyTile;
        if (work.Tiled) EnsureTileScratch(FlashAttention.ScratchFloats(blockTokens, group, headDim));
        // grouped decode keeps a group's scores (group × context floats) in the same scratch: past GroupDecodePositions for a
        // float32 cache, always for a narrower one
        if (group > 1 && (work.Converts || maxPosition + 1 >= GroupDecodePositions)) EnsureTileScratch((long)group * kv.ContextLength);
        work.Blocks = blocks;
        work.Layer = layer;
        work.NHeads = nHeads;
        work.NKvHeads = nKvHeads;
        work.HeadDim = headDim;
        work.Scale = shape.Scale;
        work.Q = q;
        work.Output = output;
        work.NextItem = 0;
        _pool.Run(work);
        output.Version++;
    }

    /// <summary>
    /// Splits the batch into query blocks (runs of consecutive tokens of one sequence, at most <paramref name="blockTokens"/>)
    /// and orders them by cost (tokens × positions attended), largest first. Returns the block count; <paramref name="anyTile"/>
    /// tells whether some block is worth the tiled kernel, <paramref name="maxPosition"/> is the batch's largest position.
    /// </summary>
    private int PlanQueryBlocks(int blockTokens, int group, out bool anyTile, out int maxPosition)
    {
        int blocks = 0;
        anyTile = false;
        maxPosition = 0;
        for (int t = 0; t < _batch.N;)
        {
            int start = t, maxPos = _batch.Positions[t];
            for (t++; t < _batch.N && t - start < blockTokens && _batch.Sequences[t] == _batch.Sequences[start]; t++)
                maxPos = Math.Max(maxPos, _batch.Positions[t]);
            long cost = Math.Min((long)(t - start) * (maxPos + 1), int.MaxValue);
            _blockStart[blocks] = start;
            _blockTokens[blocks] = t - start;
            _blockOrder[blocks] = ((int.MaxValue - cost) << 32) | (uint)blocks;
            anyTile |= FlashAttention.Worthwhile(t - start, group);
            maxPosition = Math.Max(maxPosition, maxPos);
            blocks++;
        }
        if (anyTile) new Span<long>(_blockOrder, blocks).Sort();
        return blocks;
    }

    private void EnsureTileScratch(long floatsPerThread)
    {
        floatsPerThread = (floatsPerThread + 15) / 16 * 16; // whole cache lines per thread
        if (floatsPerThread <= _tileScratchPerThread) return;
        _buffers.Free(_tileScratch);
        _tileScratch = (float*)_buffers.Alloc(floatsPerThread * _pool.ThreadCount * sizeof(float));
        _tileScratchPerThread = floatsPerThread;
    }
}
