using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Model;

/// <summary>Options that size the runtime state of a loaded model.</summary>
/// <param name="ContextLength">KV cache positions per sequence; 0 means the model's trained context (capped at 4096).</param>
/// <param name="BatchSize">Most tokens evaluated by one forward call; longer inputs are split.</param>
/// <param name="Sequences">Independent sequences (KV cache contexts).</param>
public sealed record ModelOptions(int ContextLength = 0, int BatchSize = 512, int Sequences = 1);

/// <summary>
/// A Llama-family transformer (llama, mistral, qwen2, qwen3) over an <see cref="IBackend"/>. The forward pass is written
/// once here; the backend supplies the kernels and owns every buffer.
/// </summary>
public sealed class LlamaModel : IDisposable
{
    private sealed class Layer
    {
        public required IWeight AttnNorm;           // (dim)
        public required IWeight Wq, Wk, Wv;         // (qDim, dim), (kvDim, dim), (kvDim, dim)
        public IWeight? Bq, Bk, Bv;                 // (qDim), (kvDim), (kvDim): qwen2
        public IWeight? QNorm, KNorm;               // (headDim): qwen3
        public required IWeight Wo;                 // (dim, qDim)
        public required IWeight FfnNorm;            // (dim)
        public required IWeight WGate, WUp;         // (ff, dim)
        public required IWeight WDown;              // (dim, ff)
    }

    private readonly IBackend _backend;
    private readonly IWeight _tokenEmbd;  // (vocab, dim)
    private readonly IWeight _outputNorm; // (dim)
    private readonly IWeight _output;     // (vocab, dim), token_embd when tied
    private readonly Layer[] _layers;

    // Activations, a row per token of the batch.
    private readonly IActivation _x;      // (batch, dim) residual stream
    private readonly IActivation _xb;     // (batch, dim) normed input of a sub-block
    private readonly IActivation _xb2;    // (batch, dim) output of a sub-block
    private readonly IActivation _q;      // (batch, qDim)
    private readonly IActivation _k;      // (batch, kvDim)
    private readonly IActivation _v;      // (batch, kvDim)
    private readonly IActivation _att;    // (batch, qDim) attention output
    private readonly IActivation _hb;     // (batch, ff) gate, then silu(gate) * up
    private readonly IActivation _hb2;    // (batch, ff) up
    private readonly IActivation _xLast;  // (batch, dim) rows that need logits
    private readonly IActivation _logits; // (batch, vocab)

    public ModelConfig Config { get; }
    public IBackend Backend => _backend;
    public int ContextLength { get; }
    public int BatchSize { get; }
    public int Sequences { get; }
    public int VocabSize => Config.VocabSize;

    private LlamaModel(GgufFile file, ModelConfig config, IBackend backend, ModelOptions options, IProgress<double>? progress)
    {
        Config = config;
        _backend = backend;
        ContextLength = options.ContextLength > 0 ? options.ContextLength : Math.Min(config.ContextLength, 4096);
        BatchSize = Math.Clamp(options.BatchSize, 1, 8192);
        Sequences = Math.Max(1, options.Sequences);
        int dim = config.EmbeddingLength, ff = config.FeedForwardLength, q = config.QDim, kv = config.KvDim, hd = config.HeadDim;

        var w = new WeightBinder(file, backend);
        _tokenEmbd = w.Matrix("token_embd.weight", config.VocabSize, dim);
        _layers = new Layer[config.BlockCount];
        for (int i = 0; i < config.BlockCount; i++)
        {
            string p = $"blk.{i}.";
            _layers[i] = new Layer
            {
                AttnNorm = w.Vector(p + "attn_norm.weight", dim),
                Wq = w.Matrix(p + "attn_q.weight", q, dim),
                Wk = w.Matrix(p + "attn_k.weight", kv, dim),
                Wv = w.Matrix(p + "attn_v.weight", kv, dim),
                Bq = config.QkvBias ? w.Vector(p + "attn_q.bias", q) : null,
                Bk = config.QkvBias ? w.Vector(p + "attn_k.bias", kv) : null,
                Bv = config.QkvBias ? w.Vector(p + "attn_v.bias", kv) : null,
                QNorm = config.QkNorm ? w.Vector(p + "attn_q_norm.weight", hd) : null,
                KNorm = config.QkNorm ? w.Vector(p + "attn_k_norm.weight", hd) : null,
                Wo = w.Matrix(p + "attn_output.weight", dim, q),
                FfnNorm = w.Vector(p + "ffn_norm.weight", dim),
                WGate = w.Matrix(p + "ffn_gate.weight", ff, dim),
                WUp = w.Matrix(p + "ffn_up.weight", ff, dim),
                WDown = w.Matrix(p + "ffn_down.weight", dim, ff),
            };
            progress?.Report((i + 1.0) / (config.BlockCount + 1));
        }
        _outputNorm = w.Vector("output_norm.weight", dim);
        _output = config.TiedOutput ? _tokenEmbd : w.Matrix("output.weight", config.VocabSize, dim);
        progress?.Report(1.0);

        int n = BatchSize;
        _x = backend.Allocate(n, dim);
        _xb = backend.Allocate(n, dim);
        _xb2 = backend.Allocate(n, dim);
        _q = backend.Allocate(n, q);
        _k = backend.Allocate(n, kv);
        _v = backend.Allocate(n, kv);
        _att = backend.Allocate(n, q);
        _hb = backend.Allocate(n, ff);
        _hb2 = backend.Allocate(n, ff);
        _xLast = backend.Allocate(n, dim);
        _logits = backend.Allocate(n, config.VocabSize);
        backend.CreateKvCache(new KvCacheConfig(config.BlockCount, Sequences, ContextLength, config.HeadCountKv, hd));
    }

    /// <summary>Reads the configuration from <paramref name="file"/>, validates every tensor's type and shape and hands the weights to the backend.</summary>
    public static LlamaModel Load(GgufFile file, IBackend backend, ModelOptions? options = null, IProgress<double>? progress = null)
        => new(file, ModelConfig.FromGguf(file), backend, options ?? new ModelOptions(), progress);

    /// <summary>
    /// Evaluates one batch (at most <see cref="BatchSize"/> tokens): token ids with their positions and sequences. Writes the
    /// logits of the batch rows listed in <paramref name="logitRows"/> to <paramref name="logits"/> (logitRows.Length x vocab).
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> sequences, ReadOnlySpan<int> logitRows, Span<float> logits)
    {
        var c = Config;
        ValidateBatch(tokens, positions, sequences, logitRows, logits);
        var b = _backend;
        b.SetBatch(tokens, positions, sequences);

        b.Embed(_tokenEmbd, _x);                                       // x = token_embd[tokens]
        for (int l = 0; l < _layers.Length; l++)
        {
            var L = _layers[l];
            // Attention: x += Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x))
            b.RmsNorm(_x, L.AttnNorm, c.RmsEps, _xb);
            b.MatMul(L.Wq, _xb, _q);
            b.MatMul(L.Wk, _xb, _k);
            b.MatMul(L.Wv, _xb, _v);
            if (L.Bq is not null)
            {
                b.AddBias(_q, L.Bq);
                b.AddBias(_k, L.Bk!);
                b.AddBias(_v, L.Bv!);
            }
            if (L.QNorm is not null)
            {
                b.RmsNorm(_q, L.QNorm, c.RmsEps, _q);                  // per head: q_norm(q.view(heads, headDim))
                b.RmsNorm(_k, L.KNorm!, c.RmsEps, _k);
            }
            b.Rope(_q, c.HeadDim, c.Rope);
            b.Rope(_k, c.HeadDim, c.Rope);
            b.Attention(l, _q, _k, _v, _att, c.HeadCount, c.HeadCountKv, c.HeadDim, 1f / MathF.Sqrt(c.HeadDim));
            b.MatMul(L.Wo, _att, _xb2);
            b.Add(_x, _xb2);

            // FFN: x += w2(silu(w1(norm(x))) * w3(norm(x)))
            b.RmsNorm(_x, L.FfnNorm, c.RmsEps, _xb);
            b.MatMul(L.WGate, _xb, _hb);
            b.MatMul(L.WUp, _xb, _hb2);
            b.SwiGlu(_hb, _hb2);
            b.MatMul(L.WDown, _hb, _xb2);
            b.Add(_x, _xb2);
        }

        // Only the rows that need logits go through the final norm and the (large) output matmul.
        b.GatherRows(_x, logitRows, _xLast);
        b.RmsNorm(_xLast, _outputNorm, c.RmsEps, _xLast, logitRows.Length);
        b.MatMul(_output, _xLast, _logits, logitRows.Length);
        for (int i = 0; i < logitRows.Length; i++)
            b.ReadRow(_logits, i, logits.Slice(i * c.VocabSize, c.VocabSize));
    }

    private void ValidateBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> sequences, ReadOnlySpan<int> logitRows, Span<float> logits)
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

    public void Dispose() => _backend.Dispose();

    /// <summary>Looks tensors up by name, checks their shapes against the config and loads them on the backend.</summary>
    private readonly struct WeightBinder(GgufFile file, IBackend backend)
    {
        public IWeight Matrix(string name, int rows, int cols)
        {
            var t = Find(name);
            if (t.Dims.Count != 2 || t.Dims[0] != cols || t.Dims[1] != rows)
                throw new ModelFormatException(file.Path, $"tensor '{name}' has shape {t.ShapeString}, expected [{cols}, {rows}]");
            return backend.LoadWeight(t);
        }

        public IWeight Vector(string name, int length)
        {
            var t = Find(name);
            if (t.ElementCount != length || t.Dims[0] != length)
                throw new ModelFormatException(file.Path, $"tensor '{name}' has shape {t.ShapeString}, expected [{length}]");
            return backend.LoadWeight(t);
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
