using Infer.Kernels.Cpu.Ops;
using Infer.Kernels.Cpu.Threading;
using Infer.Runtime.Backend;

namespace Infer.Kernels.Cpu.Backend;

/// <summary>
/// The KV cache and the attention over it. The cache is float32, [sequence][layer][kvHead][position][headDim] for K and V,
/// so a head's keys (or values) over all positions are one contiguous run that attention streams through (position-major rows
/// of all heads would put a head's rows 2+ KiB apart, a new page every few positions).
/// </summary>
internal sealed unsafe class AttentionDriver
{
    private readonly NativeBuffers _buffers;
    private readonly WorkerPool _pool;
    private readonly BatchState _batch;
    private readonly AttentionWork _attention;

    private KvCacheConfig? _kv;
    private float* _kCache, _vCache;

    // Per-thread scratch for the attention scores of one head (ContextLength floats, whole cache lines per thread).
    private float* _scratch;
    private int _scratchPerThread;

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
        _attention = new AttentionWork(this);
    }

    public void CreateKvCache(KvCacheConfig config)
    {
        _kv = config;
        long elements = (long)config.Contexts * config.Layers * config.ContextLength * config.KvHeads * config.HeadDim;
        _kCache = (float*)_buffers.Alloc(elements * sizeof(float));
        _vCache = (float*)_buffers.Alloc(elements * sizeof(float));
        _scratchPerThread = (config.ContextLength + 15) / 16 * 16;
        _scratch = (float*)_buffers.Alloc((long)_scratchPerThread * _pool.ThreadCount * sizeof(float));
    }

    /// <summary>The cache rows of one KV head: row p of the head is at the result + p · headDim.</summary>
    private float* KvHead(float* cache, int sequence, int layer, int kvHead)
    {
        var c = _kv!;
        return cache + ((((long)sequence * c.Layers + layer) * c.KvHeads + kvHead) * c.ContextLength) * c.HeadDim;
    }

    private KvCacheConfig Config => _kv ?? throw new InvalidOperationException("CreateKvCache was not called");

    /// <summary>Copies k and v of every batch token into the token's sequence and position, head by head.</summary>
    public void Store(int layer, CpuActivation k, CpuActivation v)
    {
        var kv = Config;
        int headDim = kv.HeadDim, kvDim = kv.KvHeads * headDim;
        if ((uint)layer >= (uint)kv.Layers || k.Cols < kvDim || v.Cols < kvDim)
            throw new ArgumentException($"storing rows of {k.Cols}/{v.Cols} in layer {layer} does not fit the KV cache ({kv.Layers} layers, {kv.KvHeads} KV heads of {headDim})");
        for (int t = 0; t < _batch.N; t++)
        {
            long row = (long)_batch.Positions[t] * headDim;
            for (int h = 0; h < kv.KvHeads; h++)
            {
                k.Row(t).Slice(h * headDim, headDim).CopyTo(new Span<float>(KvHead(_kCache, _batch.Sequences[t], layer, h) + row, headDim));
                v.Row(t).Slice(h * headDim, headDim).CopyTo(new Span<float>(KvHead(_vCache, _batch.Sequences[t], layer, h) + row, headDim));
            }
        }
    }

    public void Attend(int layer, CpuActivation q, CpuActivation output, AttentionShape shape)
    {
        var kv = Config;
        int nHeads = shape.Heads, nKvHeads = shape.KvHeads, headDim = shape.HeadDim;
        if (nKvHeads != kv.KvHeads || headDim != kv.HeadDim || nHeads % nKvHeads != 0 || (uint)layer >= (uint)kv.Layers)
            throw new ArgumentException($"attention with {nHeads} heads over {nKvHeads} KV heads of {headDim} does not fit the KV cache ({kv.KvHeads} KV heads of {kv.HeadDim})");
        int group = nHeads / nKvHeads;
        int blockTokens = FlashAttention.BlockTokens(group);
        int blocks = PlanQueryBlocks(blockTokens, group, out bool anyTile, out int maxPosition);
        _attention.Tiled = anyTile;
        if (_attention.Tiled) EnsureTileScratch(FlashAttention.ScratchFloats(blockTokens, group, headDim));
        // grouped decode past GroupDecodePositions keeps a group's scores (group × context floats) in the same scratch
        if (group > 1 && maxPosition + 1 >= GroupDecodePositions) EnsureTileScratch((long)group * kv.ContextLength);
        _attention.Blocks = blocks;
        _attention.Layer = layer;
        _attention.NHeads = nHeads;
        _attention.NKvHeads = nKvHeads;
        _attention.HeadDim = headDim;
        _attention.Scale = shape.Scale;
        _attention.Q = q;
        _attention.Output = output;
        _attention.NextItem = 0;
        _pool.Run(_attention);
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
            for (t++; t < _batch.N && t - start < blockTokens && _batch.Sequences[t] == _batch.Sequences[start]; t++) maxPos = Math.Max(maxPos, _batch.Positions[t]);
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

    /// <summary>
    /// Attention work. When no query block is worth a tile (decode, or one token per sequence, with a small GQA group), items
    /// are (token, head) pairs through <see cref="VectorOps.Attend"/>. Otherwise items are (query block, KV head) through
    /// <see cref="FlashAttention.Attend"/>, so every K/V row serves all the block's tokens and the group's heads (blocks too
    /// small for a tile go head by head inside their item); items are handed out from a shared counter, most expensive block
    /// first, so the threads finish together.
    /// </summary>
    private sealed class AttentionWork(AttentionDriver b) : IParallelWork
    {
        public int Layer, NHeads, NKvHeads, HeadDim;
        public float Scale;
        public CpuActivation Q = null!, Output = null!;
        public bool Tiled;
        public int Blocks;
        public int NextItem;

        public void Execute(int thread, int threadCount)
        {
            if (Tiled) ExecuteTiled(thread);
            else ExecutePerHead(thread, threadCount);
        }

        /// <summary>
        /// (token, head) work, handed out a whole GQA group at a time when there are enough groups to keep every thread busy: one
        /// thread then reads a KV head's cache rows and its other query heads find them in its L2 (long contexts).
        /// </summary>
        private void ExecutePerHead(int thread, int threadCount)
        {
            int group = NHeads / NKvHeads;
            int perItem = b._batch.N * NKvHeads >= 2 * threadCount ? group : 1;
            int items = b._batch.N * NHeads / perItem;
            var scores = Scores(thread);
            while (true)
            {
                int item = Interlocked.Increment(ref NextItem) - 1;
                if (item >= items) break;
                int first = item * perItem;
                int t = first / NHeads, h = first % NHeads;
                if (perItem == group) AttendGroup(t, h / group, thread);
                else AttendHead(t, h, scores);
            }
        }

        /// <summary>
        /// Token t's query heads of one KV head: past <see cref="GroupDecodePositions"/> through <see cref="VectorOps.AttendGroup"/>
        /// (the cache rows read once for the group, scores in the worker's tile scratch), else head by head.
        /// </summary>
        private void AttendGroup(int t, int kvHead, int thread)
        {
            int group = NHeads / NKvHeads, pos = b._batch.Positions[t];
            if (group == 1 || pos + 1 < GroupDecodePositions || HeadDim % 8 != 0 || !System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated)
            {
                var scores = Scores(thread);
                for (int g = 0; g < group; g++) AttendHead(t, kvHead * group + g, scores);
                return;
            }
            int seq = b._batch.Sequences[t];
            int headOffset = kvHead * group * HeadDim;
            VectorOps.AttendGroup(Q.Data + (long)t * Q.Cols + headOffset, group, HeadDim,
                b.KvHead(b._kCache, seq, Layer, kvHead), b.KvHead(b._vCache, seq, Layer, kvHead), HeadDim,
                pos + 1, Scale, b._tileScratch + thread * b._tileScratchPerThread, Output.Data + (long)t * Output.Cols + headOffset);
        }

        private void ExecuteTiled(int thread)
        {
            int items = Blocks * NKvHeads;
            int group = NHeads / NKvHeads;
            int kvDim = NKvHeads * HeadDim;
            float* scratch = b._tileScratch + thread * b._tileScratchPerThread;
            while (true)
            {
                int item = Interlocked.Increment(ref NextItem) - 1;
                if (item >= items) break;
                int block = (int)(b._blockOrder[item / NKvHeads] & 0xFFFFFFFF), kvHead = item % NKvHeads;
                int t0 = b._blockStart[block], tokens = b._blockTokens[block];
                if (!FlashAttention.Worthwhile(tokens, group))
                {
                    for (int t = t0; t < t0 + tokens; t++) AttendGroup(t, kvHead, thread);
                    continue;
                }
                int seq = b._batch.Sequences[t0];
                int headOffset = kvHead * group * HeadDim;
                FlashAttention.Attend(
                    Q.Data + (long)t0 * Q.Cols + headOffset, Q.Cols, Output.Data + (long)t0 * Output.Cols + headOffset, Output.Cols,
                    b._batch.Positions + t0, tokens, group, HeadDim,
                    b.KvHead(b._kCache, seq, Layer, kvHead), b.KvHead(b._vCache, seq, Layer, kvHead), HeadDim,
                    Scale, scratch);
            }
        }

        private Span<float> Scores(int thread) => new(b._scratch + (long)thread * b._scratchPerThread, b._kv!.ContextLength);

        /// <summary>Head h of token t over its sequence's cache positions 0..pos.</summary>
        private void AttendHead(int t, int h, Span<float> scores)
        {
            int kvHead = h / (NHeads / NKvHeads);
            int seq = b._batch.Sequences[t], pos = b._batch.Positions[t];
            float* keys = b.KvHead(b._kCache, seq, Layer, kvHead);
            float* values = b.KvHead(b._vCache, seq, Layer, kvHead);
            VectorOps.Attend(Q.Row(t).Slice(h * HeadDim, HeadDim), keys, values, HeadDim, pos + 1, Scale, scores, Output.Row(t).Slice(h * HeadDim, HeadDim));
        }
    }
}
