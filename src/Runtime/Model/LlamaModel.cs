using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Model;

/// <summary>Options that size the runtime state of a loaded model.</summary>
/// <param name="ContextLength">KV cache positions per sequence; 0 means the model's trained context (capped at 4096).</param>
/// <param name="BatchSize">Most tokens evaluated by one forward call; longer inputs are split.</param>
/// <param name="Sequences">Independent sequences (KV cache contexts).</param>
/// <param name="CacheTypeK">How the KV cache stores keys: exact float32 unless asked otherwise (the engine and the CLI ask for
/// null, llama.cpp's default). Null: <see cref="KvCacheTypes.Default"/> (f16) on a backend that stores it, float32 on one that
/// does not (<see cref="LayerRange.KType"/> tells which). An explicit type a backend cannot store is a <see cref="NotSupportedException"/>.</param>
/// <param name="CacheTypeV">How the KV cache stores values (as <paramref name="CacheTypeK"/>).</param>
public sealed record ModelOptions(int ContextLength = 0, int BatchSize = 512, int Sequences = 1,
    KvCacheType? CacheTypeK = KvCacheType.F32, KvCacheType? CacheTypeV = KvCacheType.F32);

/// <summary>Consecutive layers [First, First + Count), the backend that runs them and how its KV cache stores K and V.</summary>
public sealed record LayerRange(IBackend Backend, int First, int Count,
    KvCacheType KType = KvCacheType.F32, KvCacheType VType = KvCacheType.F32);

/// <summary>
/// A Llama-family transformer (llama, mistral, qwen2, qwen3) over an <see cref="IBackend"/>. The forward pass is written
/// once here; the backend supplies the kernels and owns every buffer. The layers may be split between two backends
/// (<see cref="LoadSplit"/>: the first layers on a GPU, the rest on the CPU): each keeps its own activations, its layers'
/// weights and a KV cache for its layers only, and the hidden state crosses between them through host memory.
/// </summary>
public sealed class LlamaModel : IDisposable
{
    private sealed class Layer
    {
        public required int CacheLayer;             // index of this layer in its backend's KV cache
        public required QkvWeights Attn;            // attn_norm (dim); Wq (qDim, dim), Wk, Wv (kvDim, dim); qwen2 biases; qwen3 q/k norms (headDim)
        public required IWeight Wo;                 // (dim, qDim)
        public required GateUpWeights Ffn;          // ffn_norm (dim); gate, up (ff, dim)
        public required IWeight WDown;              // (dim, ff)
    }

    /// <summary>Activations of one backend, a row per token of the batch.</summary>
    private sealed class Activations
    {
        public required IActivation X;        // (batch, dim) residual stream
        public required IActivation Xb;       // (batch, dim) normed input of a sub-block
        public required IActivation Xb2;      // (batch, dim) output of a sub-block
        public required IActivation Q;        // (batch, qDim)
        public required IActivation K;        // (batch, kvDim)
        public required IActivation V;        // (batch, kvDim)
        public required IActivation Att;      // (batch, qDim) attention output
        public required IActivation Hb;       // (batch, ff) gate, then silu(gate) * up
        public required IActivation Hb2;      // (batch, ff) up
        public IActivation? XLast;            // (batch, dim) rows that need logits: output backend only
        public IActivation? Logits;           // (batch, vocab): output backend only
    }

    /// <summary>A backend, the layers it runs and its buffers.</summary>
    private sealed class Stage
    {
        public required IBackend Backend;
        public required Layer[] Layers;
        public required Activations A;
    }

    private readonly Stage[] _stages;     // in layer order; the first embeds, the last computes the logits
    private readonly IBackend[] _owned;   // disposed with the model
    private readonly IWeight _tokenEmbd;  // (vocab, dim) on the first stage's backend
    private readonly IWeight _outputNorm; // (dim) on the last stage's backend
    private readonly IWeight _output;     // (vocab, dim) on the last stage's backend; token_embd when tied
    private readonly float[] _hidden;     // (batch, dim) host copy of x between stages; empty with one stage
    private readonly AttentionShape _shape;

    public ModelConfig Config { get; }

    /// <summary>The backend of the first layer (and the token embedding).</summary>
    public IBackend Backend => _stages[0].Backend;

    /// <summary>Which backend runs which layers, in layer order; the last one also runs the output norm and matrix.</summary>
    public IReadOnlyList<LayerRange> Placement { get; }

    public int ContextLength { get; }
    public int BatchSize { get; }
    public int Sequences { get; }
    public int VocabSize => Config.VocabSize;

    private LlamaModel(GgufFile file, ModelConfig config, IBackend[] owned, LayerRange[] placement, ModelOptions options, IProgress<double>? progress)
    {
        Config = config;
        _owned = owned;
        Placement = placement;
        ContextLength = options.ContextLength > 0 ? options.ContextLength : Math.Min(config.ContextLength, 4096);
        BatchSize = Math.Clamp(options.BatchSize, 1, 8192);
        Sequences = Math.Max(1, options.Sequences);
        int dim = config.EmbeddingLength, ff = config.FeedForwardLength, q = config.QDim, kv = config.KvDim, hd = config.HeadDim;
        _shape = new AttentionShape(config.HeadCount, config.HeadCountKv, hd, config.Rope, config.RmsEps);

        for (int s = 0; s < placement.Length; s++)
            placement[s] = placement[s] with
            {
                KType = CacheType(options.CacheTypeK, placement[s].Backend, hd, "K"),
                VType = CacheType(options.CacheTypeV, placement[s].Backend, hd, "V"),
            };
        // Progress counts bytes, not layers: the output matrix alone can outweigh several layers.
        var loaded = progress is null ? null : new LoadProgress(progress, LoadBytes(file, config, placement.Length > 1));
        // the table doubles as the output matrix only when tied and on the last stage's backend too; otherwise it is only looked up
        bool embdIsOutput = config.TiedOutput && ReferenceEquals(placement[0].Backend, placement[^1].Backend);
        _tokenEmbd = new WeightBinder(file, placement[0].Backend, loaded)
            .Matrix("token_embd.weight", config.VocabSize, dim, lookupOnly: !embdIsOutput);
        _stages = new Stage[placement.Length];
        for (int s = 0; s < placement.Length; s++)
        {
            var (backend, first, count, kType, vType) = placement[s];
            var w = new WeightBinder(file, backend, loaded);
            var layers = new Layer[count];
            for (int j = 0; j < count; j++)
            {
                int i = first + j;
                string p = $"blk.{i}.";
                layers[j] = new Layer
                {
                    CacheLayer = j,
                    Attn = new QkvWeights(
                        Norm: w.Vector(p + "attn_norm.weight", dim),
                        Wq: w.Matrix(p + "attn_q.weight", q, dim),
                        Wk: w.Matrix(p + "attn_k.weight", kv, dim),
                        Wv: w.Matrix(p + "attn_v.weight", kv, dim),
                        Bq: config.QkvBias ? w.Vector(p + "attn_q.bias", q) : null,
                        Bk: config.QkvBias ? w.Vector(p + "attn_k.bias", kv) : null,
                        Bv: config.QkvBias ? w.Vector(p + "attn_v.bias", kv) : null,
                        QNorm: config.QkNorm ? w.Vector(p + "attn_q_norm.weight", hd) : null,
                        KNorm: config.QkNorm ? w.Vector(p + "attn_k_norm.weight", hd) : null),
                    Wo = w.Matrix(p + "attn_output.weight", dim, q),
                    Ffn = new GateUpWeights(
                        Norm: w.Vector(p + "ffn_norm.weight", dim),
                        Gate: w.Matrix(p + "ffn_gate.weight", ff, dim),
                        Up: w.Matrix(p + "ffn_up.weight", ff, dim)),
                    WDown = w.Matrix(p + "ffn_down.weight", dim, ff),
                };
            }
            _stages[s] = new Stage { Backend = backend, Layers = layers, A = AllocateActivations(backend, output: s == placement.Length - 1) };
            backend.CreateKvCache(new KvCacheConfig(count, Sequences, ContextLength, config.HeadCountKv, hd, kType, vType));
        }

        var last = placement[^1].Backend;
        var o = new WeightBinder(file, last, loaded);
        _outputNorm = o.Vector("output_norm.weight", dim);
        _output = !config.TiedOutput ? o.Matrix("output.weight", config.VocabSize, dim)
            : ReferenceEquals(last, placement[0].Backend) ? _tokenEmbd
            : o.Matrix("token_embd.weight", config.VocabSize, dim);
        _hidden = placement.Length > 1 ? new float[(long)BatchSize * dim] : [];
        progress?.Report(1.0);
    }

    /// <summary>The requested cache type, or the default where the backend stores it (float32 where it does not).</summary>
    private static KvCacheType CacheType(KvCacheType? requested, IBackend backend, int headDim, string what)
    {
        if (requested is { } type)
        {
            if (!backend.SupportsKvCacheType(type))
                throw new NotSupportedException($"the {backend.Name} backend cannot keep the {what} cache in {KvCacheTypes.Name(type)}");
            return type;
        }
        return backend.SupportsKvCacheType(KvCacheTypes.Default) && KvCacheTypes.Unsupported(KvCacheTypes.Default, headDim) is null
            ? KvCacheTypes.Default : KvCacheType.F32;
    }

    private Activations AllocateActivations(IBackend b, bool output)
    {
        var c = Config;
        int n = BatchSize;
        var hb = b.Allocate(n, c.FeedForwardLength);
        var hb2 = b.Allocate(n, c.FeedForwardLength);
        // the attention half of a layer is done with q, att and xb2 before the FFN half writes hb and hb2, and the FFN half is
        // done with them before the next layer's attention: q and xb2 may share hb2's memory, att hb's (ForwardLayer's order:
        // attention reads q and writes att, Wo reads att and writes xb2; gate/up write hb and hb2, Wdown reads hb and writes xb2)
        bool share = c.FeedForwardLength >= Math.Max(c.QDim, c.EmbeddingLength);
        IActivation Over(IActivation parent, int cols) => share ? b.AllocateShared(parent, n, cols) : b.Allocate(n, cols);
        return new Activations
        {
            X = b.Allocate(n, c.EmbeddingLength),
            Xb = b.Allocate(n, c.EmbeddingLength),
            Xb2 = Over(hb2, c.EmbeddingLength),
            Q = Over(hb2, c.QDim),
            K = b.Allocate(n, c.KvDim),
            V = b.Allocate(n, c.KvDim),
            Att = Over(hb, c.QDim),
            Hb = hb,
            Hb2 = hb2,
            XLast = output ? b.Allocate(n, c.EmbeddingLength) : null,
            Logits = output ? b.Allocate(n, c.VocabSize) : null,
        };
    }

    /// <summary>
    /// Reads the configuration from <paramref name="file"/>, validates every tensor's type and shape and hands the weights to the backend.
    /// </summary>
    public static LlamaModel Load(GgufFile file, IBackend backend, ModelOptions? options = null, IProgress<double>? progress = null)
    {
        var config = ModelConfig.FromGguf(file);
        return new(file, config, [backend], [new LayerRange(backend, 0, config.BlockCount)], options ?? new ModelOptions(), progress);
    }

    /// <summary>
    /// Loads the model split between two backends, as llama.cpp's <c>--n-gpu-layers</c>: layers [0, <paramref name="firstLayers"/>)
    /// and the token embedding run on <paramref name="first"/> (a GPU), the remaining layers, the output norm and the
    /// output matrix on <paramref name="rest"/> (the CPU). <paramref name="firstLayers"/> = 0 runs everything on
    /// <paramref name="rest"/>; at least the layer count runs everything on <paramref name="first"/>. The model owns
    /// both backends, used or not, and disposes them.
    /// </summary>
    public static LlamaModel LoadSplit(GgufFile file, IBackend first, int firstLayers, IBackend rest, ModelOptions? options = null,
        IProgress<double>? progress = null)
    {
        if (firstLayers < 0)
            throw new ArgumentOutOfRangeException(nameof(firstLayers), $"the number of offloaded layers must not be negative, got {firstLayers}");
        if (ReferenceEquals(first, rest)) throw new ArgumentException("the two parts of a split model need two different backends", nameof(rest));
        var config = ModelConfig.FromGguf(file);
        int n = Math.Min(firstLayers, config.BlockCount);
        LayerRange[] placement = n == 0 ? [new LayerRange(rest, 0, config.BlockCount)]
            : n == config.BlockCount ? [new LayerRange(first, 0, n)]
            : [new LayerRange(first, 0, n), new LayerRange(rest, n, config.BlockCount - n)];
        return new(file, config, [first, rest], placement, options ?? new ModelOptions(), progress);
    }

    /// <summary>"layers 0-1 on A; layers 2-31 and the output on B", with each backend's description.</summary>
    public string DescribePlacement()
    {
        if (Placement.Count == 1) return $"all {Config.BlockCount} layers on {Placement[0].Backend.Name} ({Placement[0].Backend.Description})";
        return string.Join("; ", Placement.Select((r, i) =>
            $"{(r.Count == 1 ? $"layer {r.First}" : $"layers {r.First}-{r.First + r.Count - 1}")}"
            + $"{(i == Placement.Count - 1 ? " and the output" : "")} on {r.Backend.Name} ({r.Backend.Description})"));
    }

    /// <summary>Bytes of the KV caches of every backend (K and V, every layer, sequence and position), as allocated.</summary>
    public long KvCacheBytes => Placement.Sum(r => new KvCacheConfig(r.Count, Sequences, ContextLength, Config.HeadCountKv, Config.HeadDim,
        r.KType, r.VType).Bytes);

    /// <summary>"KV cache f16" (K and V alike), "KV cache q8_0 K, f16 V", or per backend when they differ ("gpu f32, cpu f16").</summary>
    public string DescribeKvCache()
    {
        static string Types(LayerRange r) => r.KType == r.VType ? KvCacheTypes.Name(r.KType)
            : $"{KvCacheTypes.Name(r.KType)} K, {KvCacheTypes.Name(r.VType)} V";
        var distinct = Placement.Select(Types).Distinct().ToList();
        return distinct.Count == 1 ? $"KV cache {distinct[0]}"
            : "KV cache " + string.Join(", ", Placement.Select(r => $"{r.Backend.Name} {Types(r)}"));
    }

    /// <summary>
    /// Evaluates one batch (at most <see cref="BatchSize"/> tokens): token ids with their positions and sequences. Writes the
    /// logits of the batch rows listed in <paramref name="logitRows"/> to <paramref name="logits"/> (logitRows.Length x vocab).
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> sequences, ReadOnlySpan<int> logitRows,
        Span<float> logits)
    {
        var c = Config;
        ValidateBatch(tokens, positions, sequences, logitRows, logits);
        foreach (var s in _stages) s.Backend.SetBatch(tokens, positions, sequences);

        _stages[0].Backend.Embed(_tokenEmbd, _stages[0].A.X);         // x = token_embd[tokens]
        for (int s = 0; s < _stages.Length; s++)
        {
            var stage = _stages[s];
            if (s > 0) HandOver(_stages[s - 1], stage, tokens.Length);
            foreach (var layer in stage.Layers) ForwardLayer(stage.Backend, stage.A, layer);
        }

        // logits = output · norm(x) of only the rows that need logits (the output matrix is the largest of all)
        var b = _stages[^1].Backend;
        var a = _stages[^1].A;
        b.NormMatMulRows(a.X, logitRows, _outputNorm, c.RmsEps, _output, a.XLast!, a.Logits!);
        for (int i = 0; i < logitRows.Length; i++)
            b.ReadRow(a.Logits!, i, logits.Slice(i * c.VocabSize, c.VocabSize));
    }

    /// <summary>One transformer block on backend <paramref name="b"/>: x += attention(norm(x)); x += ffn(norm(x)).</summary>
    private void ForwardLayer(IBackend b, Activations a, Layer L)
    {
        // q, k, v = rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x) (+ biases, per-head q/k norms); k, v → cache
        b.NormQkvRope(L.CacheLayer, a.X, L.Attn, _shape, a.Xb, a.Q, a.K, a.V);
        // x += Wo · softmax(q·kᵀ / sqrt(headDim)) · v, causal over each token's sequence
        b.Attention(L.CacheLayer, a.Q, a.Att, _shape);
        b.MatMulAdd(L.Wo, a.Att, a.Xb2, a.X);
        // x += w2(silu(w1(norm(x))) * w3(norm(x)))
        b.NormGateUp(a.X, L.Ffn, Config.RmsEps, a.Xb, a.Hb, a.Hb2);
        b.MatMulAdd(L.WDown, a.Hb, a.Xb2, a.X);
    }

    /// <summary>The residual stream of every batch row moves from one backend to the next through host memory: (n, dim).</summary>
    private void HandOver(Stage from, Stage to, int n)
    {
        var rows = _hidden.AsSpan(0, n * Config.EmbeddingLength);
        from.Backend.ReadRows(from.A.X, n, rows);
        to.Backend.WriteRows(to.A.X, rows);
    }

    private void ValidateBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> sequences, ReadOnlySpan<int> logitRows,
        Span<float> logits)
    {
        int n = tokens.Length;
        if (n == 0 || n > BatchSize)
            throw new ArgumentException($"a batch holds 1 to {BatchSize} tokens, got {n}");
        if (positions.Length != n || sequences.Length != n)
            throw new ArgumentException("tokens, positions and sequences must have the same length");
        if (logits.Length < logitRows.Length * Config.VocabSize)
            throw new ArgumentException("logits buffer too small");
        for (int i = 0; i < n; i++)
        {
            if ((uint)tokens[i] >= (uint)Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {tokens[i]} is outside the vocabulary (0..{Config.VocabSize - 1})");
            if ((uint)positions[i] >= (uint)ContextLength)
                throw new ContextFullException(ContextLength);
            if ((uint)sequences[i] >= (uint)Sequences)
                throw new ArgumentOutOfRangeException(nameof(sequences), $"sequence {sequences[i]} does not exist (0..{Sequences - 1})");
        }
        foreach (int r in logitRows)
            if ((uint)r >= (uint)n) throw new ArgumentOutOfRangeException(nameof(logitRows), $"logit row {r} is not in the batch");
    }

    public void Dispose()
    {
        foreach (var b in _owned) b.Dispose();
    }

    /// <summary>Looks tensors up by name, checks their shapes against the config and loads them on the backend.</summary>
    /// <summary>
    /// Bytes of the tensors a load hands to backends: every tensor of the file but rope_freqs (read into the config), and the
    /// token embedding twice when it doubles as the output matrix on another backend.
    /// </summary>
    private static long LoadBytes(GgufFile file, ModelConfig config, bool split)
    {
        long total = file.Tensors.Where(t => t.Name != "rope_freqs.weight").Sum(t => t.ByteSize);
        if (config.TiedOutput && split) total += file.GetTensor("token_embd.weight").ByteSize;
        return Math.Max(total, 1);
    }

    /// <summary>Reports the fraction of <see cref="LoadBytes"/> handed to backends so far, after each tensor.</summary>
    private sealed class LoadProgress(IProgress<double> progress, long total)
    {
        private long _done;

        public void Add(long bytes)
        {
            _done += bytes;
            progress.Report(Math.Min(1.0, (double)_done / total));
        }
    }

    private readonly struct WeightBinder(GgufFile file, IBackend backend, LoadProgress? progress)
    {
        /// <param name="name">the tensor's name in the file.</param>
        /// <param name="rows">rows the config expects (ggml's ne[1]).</param>
        /// <param name="cols">row length the config expects (ne[0]).</param>
        /// <param name="lookupOnly">the matrix is an embedding table that is never multiplied.</param>
        public IWeight Matrix(string name, int rows, int cols, bool lookupOnly = false)
        {
            var t = Find(name);
            if (t.Dims.Count != 2 || t.Dims[0] != cols || t.Dims[1] != rows)
                throw new ModelFormatException(file.Path, $"tensor '{name}' has shape {t.ShapeString}, expected [{cols}, {rows}]");
            return Load(t, lookupOnly);
        }

        public IWeight Vector(string name, int length)
        {
            var t = Find(name);
            if (t.ElementCount != length || t.Dims[0] != length)
                throw new ModelFormatException(file.Path, $"tensor '{name}' has shape {t.ShapeString}, expected [{length}]");
            return Load(t);
        }

        private IWeight Load(GgufTensor t, bool lookupOnly = false)
        {
            var w = lookupOnly ? backend.LoadEmbeddingTable(t) : backend.LoadWeight(t);
            progress?.Add(t.ByteSize);
            return w;
        }

        private GgufTensor Find(string name) =>
            file.FindTensor(name) ?? throw new ModelFormatException(file.Path, $"tensor '{name}' not found");
    }
}

/// <summary>The KV cache has no room for another position.</summary>
public sealed class ContextFullException(int contextLength)
    : Exception($"the context is full ({contextLength} tokens); use a larger context (-c) or a shorter prompt")
{
    public int ContextLength { get; } = contextLength;
}
