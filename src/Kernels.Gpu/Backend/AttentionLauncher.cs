using ILGPU;
using ILGPU.Runtime;
using Infer.Kernels.Gpu.Kernels;
using Infer.Runtime;
using Infer.Runtime.Backend;

namespace Infer.Kernels.Gpu.Backend;

/// <summary>
/// The KV cache ([sequence][layer][position][kvDim] for K and V, each float32, IEEE half or q8_0), the RoPE tables, and the
/// launches that store into the cache and attend over it: split over positions (flash-decoding) when a decode step has too
/// few (token, head) items to fill the device, the last split of each item merging them in the same launch.
/// </summary>
internal sealed class AttentionLauncher
{
    private readonly DeviceState d; // short: every launch goes through it
    private readonly GpuBackendOptions _options;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int, int> _rope;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, KvViews, ArrayView<int>, AttentionArgs, int, int> _storeKv,
        _storeKvBlocks;
    private readonly Action<KernelConfig, ArrayView<float>, KvViews, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>,
        AttentionArgs> _attention;
    private readonly Action<KernelConfig, ArrayView<float>, KvViews, ArrayView<float>, ArrayView<int>, AttentionArgs> _prefill;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, KvViews, ArrayView<float>, ArrayView<float>,
        ArrayView<int>, AttentionArgs, RopeStoreArgs> _ropeStoreKv;

    private KvCacheConfig? _kv;
    private MemoryBuffer1D<float, Stride1D.Dense>? _kCache, _vCache;
    private MemoryBuffer1D<ushort, Stride1D.Dense>? _kCache16, _vCache16; // f16 elements, or q8_0 scales
    private MemoryBuffer1D<sbyte, Stride1D.Dense>? _kCache8, _vCache8;    // q8_0 quants
    private KvViews _cache;
    private MemoryBuffer1D<float, Stride1D.Dense>? _partials;
    private long _partialFloats;
    private MemoryBuffer1D<int, Stride1D.Dense>? _tickets; // one per (token, head): zero between launches

    // RoPE cos/sin tables [position, dims / 2] for the last RoPE configuration seen.
    private RopeConfig? _ropeConfig;
    private int _ropeLength;
    private MemoryBuffer1D<float, Stride1D.Dense>? _ropeCos, _ropeSin;

    public AttentionLauncher(DeviceState state, GpuBackendOptions options)
    {
        d = state;
        _options = options;
        var acc = d.Acc;
        _rope = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int,
            int>(GpuKernels.Rope);
        _storeKv = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, KvViews, ArrayView<int>, AttentionArgs, int, int>(
            GpuKernels.StoreKv);
        _storeKvBlocks = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, KvViews, ArrayView<int>, AttentionArgs, int,
            int>(GpuKernels.StoreKvBlocks);
        _attention = acc.LoadStreamKernel<ArrayView<float>, KvViews, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>,
            AttentionArgs>(GpuKernels.Attention);
        _prefill = acc.LoadStreamKernel<ArrayView<float>, KvViews, ArrayView<float>, ArrayView<int>, AttentionArgs>(GpuKernels.AttentionPrefill);
        _ropeStoreKv = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, KvViews, ArrayView<float>,
            ArrayView<float>, ArrayView<int>, AttentionArgs, RopeStoreArgs>(GpuKernels.RopeStoreKv);
    }

    private KvCacheConfig Kv => _kv ?? throw new InvalidOperationException("CreateKvCache was not called");

    public void CreateKvCache(KvCacheConfig config)
    {
        foreach (var type in new[] { config.KType, config.VType })
        {
            if (!Supports(type)) throw new NotSupportedException($"the GPU backend has no KV cache of type {type}");
            if (KvCacheTypes.Unsupported(type, config.HeadDim) is { } why) throw new NotSupportedException(why);
        }
        if (config.HeadDim > GpuKernels.MaxHeadDim)
            throw new UnsupportedModelException(null, $"head size {config.HeadDim} exceeds the GPU attention kernel's {GpuKernels.MaxHeadDim}");
        d.Release(_kCache);
        d.Release(_vCache);
        d.Release(_kCache16);
        d.Release(_vCache16);
        d.Release(_kCache8);
        d.Release(_vCache8);
        _kCache = _vCache = null;
        _kCache16 = _vCache16 = null;
        _kCache8 = _vCache8 = null;
        _kv = config;
        long elements = (long)config.Contexts * config.Layers * config.ContextLength * config.KvHeads * config.HeadDim;
        Allocate(config.KType, out _kCache, out _kCache16, out _kCache8);
        Allocate(config.VType, out _vCache, out _vCache16, out _vCache8);
        _cache = new KvViews
        {
            K = (_kCache ?? d.NoFloats).View, V = (_vCache ?? d.NoFloats).View,
            K16 = (_kCache16 ?? d.NoScales).View, V16 = (_vCache16 ?? d.NoScales).View,
            K8 = (_kCache8 ?? d.NoQuants).View, V8 = (_vCache8 ?? d.NoQuants).View,
            KType = Code(config.KType), VType = Code(config.VType),
        };

        void Allocate(KvCacheType type, out MemoryBuffer1D<float, Stride1D.Dense>? f32, out MemoryBuffer1D<ushort, Stride1D.Dense>? halves,
            out MemoryBuffer1D<sbyte, Stride1D.Dense>? quants)
        {
            f32 = type == KvCacheType.F32 ? Zeroed(d.Track(d.Acc.Allocate1D<float>(elements))) : null;
            halves = type switch
            {
                KvCacheType.F16 => Zeroed(d.Track(d.Acc.Allocate1D<ushort>(elements))),
                KvCacheType.Q8_0 => Zeroed(d.Track(d.Acc.Allocate1D<ushort>(elements / KvViews.Block))),
                _ => null,
            };
            quants = type == KvCacheType.Q8_0 ? Zeroed(d.Track(d.Acc.Allocate1D<sbyte>(elements))) : null;
        }

        static int Code(KvCacheType type) => type switch
        {
            KvCacheType.F16 => KvViews.F16,
            KvCacheType.Q8_0 => KvViews.Q8_0,
            _ => KvViews.F32,
        };

        static MemoryBuffer1D<T, Stride1D.Dense> Zeroed<T>(MemoryBuffer1D<T, Stride1D.Dense> b) where T : unmanaged
        {
            b.MemSetToZero();
            return b;
        }
    }

    /// <summary>The cache types the kernels store and read: float32, IEEE half (llama.cpp's default) and q8_0.</summary>
    public static bool Supports(KvCacheType type) => type is KvCacheType.F32 or KvCacheType.F16 or KvCacheType.Q8_0;

    /// <summary>Rotates each head of x (heads of <paramref name="headDim"/>) by the batch positions: one launch.</summary>
    public void Rope(GpuActivation x, int headDim, RopeConfig rope)
    {
        if (headDim < 1 || x.Cols % headDim != 0 || rope.Dims > headDim || rope.Dims % 2 != 0)
            throw new ArgumentException($"RoPE of {rope.Dims} dims does not fit heads of {headDim} in rows of {x.Cols}");
        if (d.N == 0) return;
        EnsureRopeTable(rope);
        int pairs = d.N * (x.Cols / headDim) * (rope.Dims / 2);
        _rope(pairs, x.View, _ropeCos!.View, _ropeSin!.View, d.Batch.View, d.N, x.Cols, headDim, rope.Dims, rope.NeoX ? 1 : 0);
        d.Count();
    }

    public void StoreKv(int layer, GpuActivation k, GpuActivation v)
    {
        var kv = Kv;
        int kvDim = kv.KvHeads * kv.HeadDim;
        if ((uint)layer >= (uint)kv.Layers || k.Cols < kvDim || v.Cols < kvDim)
            throw new ArgumentException($"storing rows of {k.Cols}/{v.Cols} in layer {layer} does not fit the KV cache");
        if (d.N == 0) return;
        var args = Args(layer, kv.KvHeads, 0, k.Cols, k.Cols);
        if (_cache.Blocked) _storeKvBlocks(d.N * kvDim / KvViews.Block, k.View, v.View, _cache, d.Batch.View, args, k.Cols, v.Cols);
        else _storeKv(d.N * kvDim, k.View, v.View, _cache, d.Batch.View, args, k.Cols, v.Cols);
        d.Count();
    }

    /// <summary>
    /// After a launch that rotated k and stored the cache element by element (<see cref="RopeStoreKv"/>, the fused epilogue):
    /// a q8_0 part is written here, block by block, from the rotated k and v (one more launch); nothing to do otherwise.
    /// </summary>
    public void StoreBlocksAfterRope(int layer, GpuActivation k, GpuActivation v)
    {
        if (!_cache.Blocked || d.N == 0) return;
        StoreKv(layer, k, v);
    }

    /// <summary>RoPE of q and k, and k and v stored in layer <paramref name="layer"/>'s cache: one launch.</summary>
    public void RopeStoreKv(int layer, GpuActivation q, GpuActivation k, GpuActivation v, AttentionShape s)
    {
        CheckShape(layer, s);
        if (q.Cols != s.QDim || k.Cols != s.KvDim || v.Cols < s.KvDim || q == k || v == q || v == k
            || s.Rope.Dims > s.HeadDim || s.Rope.Dims % 2 != 0)
            throw new ArgumentException($"q, k, v of {q.Cols}, {k.Cols}, {v.Cols} columns do not fit {s.Heads}/{s.KvHeads} heads of {s.HeadDim}");
        if (d.N == 0) return;
        EnsureRopeTable(s.Rope);
        var args = Args(layer, s.Heads, s.Scale, q.Cols, q.Cols);
        var ra = new RopeStoreArgs { Dims = s.Rope.Dims, NeoX = s.Rope.NeoX ? 1 : 0, KStride = k.Cols, VStride = v.Cols };
        int items = d.N * ((s.Heads + s.KvHeads) * (s.Rope.Dims / 2) + s.KvDim);
        _ropeStoreKv(items, q.View, k.View, v.View, _cache, _ropeCos!.View, _ropeSin!.View, d.Batch.View, args, ra);
        d.Count();
        StoreBlocksAfterRope(layer, k, v);
    }

    /// <summary>The views and sizes with which <see cref="MatMulLauncher.Norm"/> rotates q, k and stores k, v in its epilogue.</summary>
    public RopeStoreViews EpilogueViews(int layer, AttentionShape s)
    {
        var kv = Kv;
        CheckShape(layer, s);
        EnsureRopeTable(s.Rope);
        return new RopeStoreViews
        {
            Cache = _cache, Cos = _ropeCos!.View, Sin = _ropeSin!.View, Batch = d.Batch.View,
            Enabled = 1, Dims = s.Rope.Dims, NeoX = s.Rope.NeoX ? 1 : 0, HeadDim = s.HeadDim, Heads = s.Heads, KvHeads = s.KvHeads,
            Layer = layer, Layers = kv.Layers, ContextLength = kv.ContextLength, PosOffset = d.N, SeqOffset = 2 * d.N,
        };
    }

    /// <summary>Launches of <see cref="GpuKernels.AttentionPrefill"/> so far (the tests check which kernel a batch took).</summary>
    public long PrefillLaunches { get; private set; }

    /// <summary>Batches of at least this many tokens attend with <see cref="GpuKernels.AttentionPrefill"/> where it can run.</summary>
    public const int PrefillMinTokens = 16;

    /// <summary>
    /// Attention of q over the cache (the batch's k and v stored already): one launch. Prompts (at least <see cref="PrefillMinTokens"/>
    /// tokens, each tile of query rows within one sequence, a group wide enough for the head size; GpuBackendOptions.PrefillAttention
    /// 0) take the tiled <see cref="GpuKernels.AttentionPrefill"/>; the rest <see cref="GpuKernels.Attention"/>, split over positions
    /// or not.
    /// </summary>
    public void Attend(int layer, GpuActivation q, GpuActivation output, AttentionShape s)
    {
        CheckShape(layer, s);
        if (d.N == 0) return;
        var args = Args(layer, s.Heads, s.Scale, q.Cols, output.Cols);
        int chunk = GpuKernels.PrefillChunk(s.HeadDim, d.Group);
        if (_options.PrefillAttention == 0 && d.N >= PrefillMinTokens && chunk > 0)
        {
            int rows = GpuKernels.PrefillRows(s.HeadDim, d.Group), ratio = s.Heads / s.KvHeads;
            if (d.TilesShareSequences(rows, ratio))
            {
                args.Chunk = chunk;
                int tiles = (int)(((long)d.N * ratio + rows - 1) / rows);
                _prefill(new KernelConfig(new Index2D(tiles, s.KvHeads), new Index2D(d.Group, 1)), q.View, _cache, output.View, d.Batch.View, args);
                d.Count();
                PrefillLaunches++;
                return;
            }
        }
        int heads = d.N * s.Heads;
        args.Splits = ChooseSplits(heads, s.HeadDim);
        _attention(new KernelConfig(new Index2D(heads, args.Splits), new Index2D(d.Group, 1)),
            q.View, _cache, output.View, (_partials ?? d.NoFloats).View, (_tickets ?? d.Batch).View, d.Batch.View, args);
        d.Count();
    }

    private void CheckShape(int layer, AttentionShape s)
    {
        var kv = Kv;
        if (s.KvHeads != kv.KvHeads || s.HeadDim != kv.HeadDim || s.Heads % s.KvHeads != 0 || (uint)layer >= (uint)kv.Layers)
            throw new ArgumentException(
                $"attention shape (layer {layer}, {s.Heads} heads, {s.KvHeads} KV heads, head size {s.HeadDim}) does not match the KV cache");
    }

    private AttentionArgs Args(int layer, int heads, float scale, int qStride, int oStride)
    {
        var kv = Kv;
        return new AttentionArgs
        {
            Layer = layer, Layers = kv.Layers, ContextLength = kv.ContextLength,
            Heads = heads, KvHeads = kv.KvHeads, HeadDim = kv.HeadDim,
            QStride = qStride, OStride = oStride, Scale = scale,
            PosOffset = d.N, SeqOffset = 2 * d.N, Tokens = d.N,
        };
    }

    /// <summary>
    /// Decode has few (token, head) items: split each one's positions so the device has about four groups per
    /// multiprocessor, each range at least one chunk of group-size positions. Prefill gets one split.
    /// </summary>
    private int ChooseSplits(int items, int headDim)
    {
        int chunks = Math.Max(1, (d.MaxLength + d.Group - 1) / d.Group);
        int splits = _options.AttentionSplits > 0
            ? _options.AttentionSplits
            : Math.Clamp(4 * d.Acc.NumMultiprocessors / items, 1, Math.Min(32, chunks));
        if (splits == 1) return 1;
        long floats = (long)items * splits * (headDim + 2);
        if (floats > _partialFloats)
        {
            d.Release(_partials);
            _partials = d.Track(d.Acc.Allocate1D<float>(floats));
            _partialFloats = floats;
        }
        if (_tickets is null || _tickets.Length < items)
        {
            d.Release(_tickets);
            _tickets = d.Track(d.Acc.Allocate1D<int>(items));
            _tickets.MemSetToZero();
        }
        return splits;
    }

    /// <summary>Builds cos/sin for every position of the context once per RoPE configuration, as the CPU computes them.</summary>
    private void EnsureRopeTable(RopeConfig rope)
    {
        int contextLength = Kv.ContextLength;
        if (_ropeLength == contextLength && (ReferenceEquals(rope, _ropeConfig) || (_ropeConfig is not null && SameRope(rope, _ropeConfig)))) return;
        int half = rope.Dims / 2;
        var cos = new float[(long)contextLength * half];
        var sin = new float[cos.Length];
        for (int p = 0; p < contextLength; p++)
            rope.CosSin(p, cos.AsSpan(p * half, half), sin.AsSpan(p * half, half));
        d.Release(_ropeCos);
        d.Release(_ropeSin);
        _ropeCos = d.Track(d.Acc.Allocate1D(cos));
        _ropeSin = d.Track(d.Acc.Allocate1D(sin));
        _ropeConfig = rope;
        _ropeLength = contextLength;
    }

    private static bool SameRope(RopeConfig a, RopeConfig b) =>
        a.Dims == b.Dims && a.FreqBase == b.FreqBase && a.FreqScale == b.FreqScale && a.NeoX == b.NeoX
        && (a.FreqFactors ?? []).AsSpan().SequenceEqual(b.FreqFactors ?? []);
}
