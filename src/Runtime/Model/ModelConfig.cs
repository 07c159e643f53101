using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Model;

/// <summary>
/// Hyperparameters of a Llama-family model, read from GGUF metadata (<c>{arch}.*</c> keys), never guessed from names.
/// llama (Llama 2/3.x, Mistral), qwen2 and qwen3 differ only in flags here.
/// </summary>
public sealed record ModelConfig
{
    public static readonly IReadOnlyList<string> SupportedArchitectures = ["llama", "qwen2", "qwen3"];

    public required string Architecture { get; init; }
    public required int EmbeddingLength { get; init; }   // dim
    public required int BlockCount { get; init; }        // layers
    public required int FeedForwardLength { get; init; } // hidden dim of the SwiGLU
    public required int HeadCount { get; init; }
    public required int HeadCountKv { get; init; }
    public required int HeadDim { get; init; }           // attention.key_length (may differ from dim / heads)
    public required int ContextLength { get; init; }     // trained context
    public required float RmsEps { get; init; }
    public required RopeConfig Rope { get; init; }
    public required int VocabSize { get; init; }
    public required bool QkvBias { get; init; }          // qwen2
    public required bool QkNorm { get; init; }           // qwen3
    public required bool TiedOutput { get; init; }       // no output.weight: token_embd is reused

    public int QDim => HeadCount * HeadDim;
    public int KvDim => HeadCountKv * HeadDim;

    public static ModelConfig FromGguf(GgufFile f)
    {
        string arch = f.TryGetString("general.architecture") ?? throw new ModelFormatException(f.Path, f.TryGetString("general.type") switch
        {
            // llama-imatrix's files (and infer imatrix's) are GGUF too, as are LoRA adapters
            "imatrix" => "an importance matrix (general.type imatrix), not a model: give it to convert-weights quantize --imatrix",
            { } type and not "model" => $"a GGUF file of general.type '{type}', not a model",
            _ => "metadata key 'general.architecture' not found",
        });
        if (!SupportedArchitectures.Contains(arch))
            throw new UnsupportedModelException(f.Path,
                $"architecture '{arch}' is not supported (supported: {string.Join(", ", SupportedArchitectures)})");

        const int maxDim = 1 << 20;
        int dim = f.GetInt32($"{arch}.embedding_length", 1, maxDim);
        int layers = f.GetInt32($"{arch}.block_count", 1, 4096);
        int ff = f.GetInt32($"{arch}.feed_forward_length", 1, maxDim);
        int heads = f.GetInt32($"{arch}.attention.head_count", 1, 4096);
        int kvHeads = f.TryGetInt32($"{arch}.attention.head_count_kv", 1, 4096) ?? heads;
        if (heads % kvHeads != 0)
            throw new ModelFormatException(f.Path,
                $"'{arch}.attention.head_count' ({heads}) is not a multiple of '{arch}.attention.head_count_kv' ({kvHeads})");
        int headDim = f.TryGetInt32($"{arch}.attention.key_length", 1, 65536) ?? (dim % heads == 0 ? dim / heads
            : throw new ModelFormatException(f.Path,
                $"'{arch}.embedding_length' ({dim}) is not a multiple of the head count ({heads}) and '{arch}.attention.key_length' is absent"));
        int valueDim = f.TryGetInt32($"{arch}.attention.value_length", 1, 65536) ?? headDim;
        if (valueDim != headDim)
            throw new UnsupportedModelException(f.Path,
                $"'{arch}.attention.value_length' ({valueDim}) differs from key_length ({headDim}); not supported");
        int ctx = f.TryGetInt32($"{arch}.context_length", 1, 1 << 24) ?? 4096;
        float eps = (float)(f.TryGetFloat($"{arch}.attention.layer_norm_rms_epsilon")
            ?? throw new ModelFormatException(f.Path, $"metadata key '{arch}.attention.layer_norm_rms_epsilon' not found"));
        if (!(eps > 0 && eps < 1))
            throw new ModelFormatException(f.Path, $"'{arch}.attention.layer_norm_rms_epsilon' is {eps}, out of range");

        int ropeDims = f.TryGetInt32($"{arch}.rope.dimension_count", 2, 65536) ?? headDim;
        if (ropeDims > headDim || ropeDims % 2 != 0)
            throw new ModelFormatException(f.Path, $"'{arch}.rope.dimension_count' ({ropeDims}) must be even and at most the head size ({headDim})");
        float freqBase = (float)(f.TryGetFloat($"{arch}.rope.freq_base") ?? 10000.0);
        if (!(freqBase > 1))
            throw new ModelFormatException(f.Path, $"'{arch}.rope.freq_base' is {freqBase}, out of range");
        float freqScale = 1f;
        string scalingType = f.TryGetString($"{arch}.rope.scaling.type") ?? "none";
        switch (scalingType)
        {
            case "none":
                break;
            case "linear":
                double factor = f.TryGetFloat($"{arch}.rope.scaling.factor") ?? 1.0;
                if (!(factor >= 1)) throw new ModelFormatException(f.Path, $"'{arch}.rope.scaling.factor' is {factor}, out of range");
                freqScale = (float)(1.0 / factor);
                break;
            default:
                throw new UnsupportedModelException(f.Path, $"'{arch}.rope.scaling.type' = '{scalingType}' is not supported (none, linear)");
        }
        float[]? freqFactors = null;
        if (f.FindTensor("rope_freqs.weight") is { } rf)
        {
            if (rf.Type != GgmlType.F32 || rf.ElementCount != ropeDims / 2)
                throw new ModelFormatException(f.Path,
                    $"tensor 'rope_freqs.weight' is {GgmlTypeInfo.Name(rf.Type)} {rf.ShapeString}, expected F32 [{ropeDims / 2}]");
            freqFactors = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(rf.Span).ToArray();
        }

        var embd = f.FindTensor("token_embd.weight")
            ?? throw new ModelFormatException(f.Path, "tensor 'token_embd.weight' not found");
        if (embd.Dims.Count != 2 || embd.Dims[0] != dim)
            throw new ModelFormatException(f.Path, $"tensor 'token_embd.weight' has shape {embd.ShapeString}, expected [{dim}, vocab]");
        int vocab = checked((int)embd.Dims[1]);
        CheckVocabulary(f, dim, vocab);

        return new ModelConfig
        {
            Architecture = arch,
            EmbeddingLength = dim,
            BlockCount = layers,
            FeedForwardLength = ff,
            HeadCount = heads,
            HeadCountKv = kvHeads,
            HeadDim = headDim,
            ContextLength = ctx,
            RmsEps = eps,
            Rope = new RopeConfig(ropeDims, freqBase, freqScale, NeoX: arch is "qwen2" or "qwen3", freqFactors),
            VocabSize = vocab,
            QkvBias = f.FindTensor("blk.0.attn_q.bias") is not null,
            QkNorm = f.FindTensor("blk.0.attn_q_norm.weight") is not null,
            TiedOutput = f.FindTensor("output.weight") is null,
        };
    }

    /// <summary>
    /// The token embedding, the output matrix and the tokenizer's vocabulary must agree on the number of tokens (as llama.cpp
    /// requires): otherwise sampling picks ids the tokenizer cannot decode or the embedding cannot look up.
    /// </summary>
    private static void CheckVocabulary(GgufFile f, int dim, int embdRows)
    {
        if (f.FindTensor("output.weight") is { } output && (output.Dims.Count != 2 || output.Dims[0] != dim || output.Dims[1] != embdRows))
            throw new ModelFormatException(f.Path,
                $"tensor 'output.weight' has shape {output.ShapeString}, but 'token_embd.weight' gives [{dim}, {embdRows}]: "
                + "both need a row per token");
        if (f.TryGetArray("tokenizer.ggml.tokens") is { } tokens && tokens.Length != embdRows)
            throw new ModelFormatException(f.Path,
                $"the vocabulary ('tokenizer.ggml.tokens') has {tokens.Length} tokens but tensor 'token_embd.weight' has {embdRows} rows: "
                + "they must match");
    }
}
