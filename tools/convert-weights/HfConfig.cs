using System.Text.Json;
using Infer.Runtime;

namespace Infer.ConvertWeights;

/// <summary>RoPE scaling as config.json states it (<c>rope_scaling</c> or <c>rope_parameters</c>).</summary>
public sealed record RopeScaling(string Type, double Factor, double LowFreqFactor, double HighFreqFactor, int? OriginalContextLength);

/// <summary>
/// The hyperparameters of a Hugging Face causal LM checkpoint, read from config.json. Only the fields llama.cpp's
/// converter writes are kept; nullable ones are written only when config.json has them, as llama.cpp does.
/// </summary>
public sealed record HfConfig
{
    /// <summary>Hugging Face architecture names and the llama.cpp architecture each converts to.</summary>
    public static readonly IReadOnlyDictionary<string, string> SupportedArchitectures = new Dictionary<string, string>
    {
        ["LlamaForCausalLM"] = "llama",
        ["MistralForCausalLM"] = "llama",
        ["Qwen2ForCausalLM"] = "qwen2",
        ["Qwen3ForCausalLM"] = "qwen3",
    };

    /// <summary>Largest vocabulary accepted (real models stay under 300k); bounds the token arrays a hostile config can demand.</summary>
    public const int MaxVocab = 1 << 22;

    public required string Path { get; init; }
    public required string HfArchitecture { get; init; }

    /// <summary>llama.cpp's architecture name (general.architecture).</summary>
    public required string Arch { get; init; }
    public required int BlockCount { get; init; }
    public int? ContextLength { get; init; }
    public required int EmbeddingLength { get; init; }
    public required int FeedForwardLength { get; init; }
    public required int HeadCount { get; init; }
    public required int HeadCountKv { get; init; }

    /// <summary>head_dim exactly as config.json gives it (null when absent).</summary>
    public int? HeadDimFromConfig { get; init; }
    public double? RopeTheta { get; init; }
    public double? RmsNormEps { get; init; }
    public required int VocabSize { get; init; }
    public bool? TieWordEmbeddings { get; init; }
    public RopeScaling? RopeScaling { get; init; }
    public int? OriginalMaxPositionEmbeddings { get; init; }
    public long? BosTokenId { get; init; }
    public long? EosTokenId { get; init; }
    public long? UnkTokenId { get; init; }
    public long? SepTokenId { get; init; }
    public long? PadTokenId { get; init; }
    public long? ClsTokenId { get; init; }
    public long? MaskTokenId { get; init; }

    public int HeadDim => HeadDimFromConfig ?? EmbeddingLength / HeadCount;

    /// <summary>Llama checkpoints store Q and K with Hugging Face's RoPE layout, which llama.cpp's llama graph undoes.</summary>
    public bool PermuteQk => Arch == "llama";

    public static HfConfig Load(string dir)
    {
        string path = System.IO.Path.Combine(dir, "config.json");
        if (!File.Exists(path)) throw new ModelFormatException(path, "file not found");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"not valid JSON ({e.Message})");
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, "not a JSON object");
            var r = new JsonReader(path, root);
            string hfArch = r.Architecture();
            if (!SupportedArchitectures.TryGetValue(hfArch, out var arch))
                throw new UnsupportedModelException(path,
                    $"architecture '{hfArch}' is not supported; supported: {string.Join(", ", SupportedArchitectures.Keys)}");
            int heads = r.RequiredInt("num_attention_heads", "n_head", "n_heads");
            int hidden = r.RequiredInt("hidden_size", "n_embd", "dim");
            // llama.cpp prefers rope_parameters (transformers 5) over rope_scaling, and its rope_theta over the top-level one
            var rope = root.TryGetProperty("rope_parameters", out var rp) && rp.ValueKind == JsonValueKind.Object ? rp
                : root.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind == JsonValueKind.Object ? rs
                : (JsonElement?)null;
            double? theta = null;
            RopeScaling? scaling = null;
            if (rope is { } ro)
            {
                var rr = new JsonReader(path, ro);
                theta = rr.OptDouble("rope_theta");
                string? type = rr.OptString("rope_type") ?? rr.OptString("type");
                if (type is not null && type != "default")
                    scaling = new RopeScaling(type.ToLowerInvariant(), rr.OptDouble("factor") ?? 8.0, rr.OptDouble("low_freq_factor") ?? 1.0,
                        rr.OptDouble("high_freq_factor") ?? 4.0, rr.OptInt("original_max_position_embeddings"));
            }
            theta ??= r.OptDouble("rope_theta", "rotary_emb_base");
            var cfg = new HfConfig
            {
                Path = path,
                HfArchitecture = hfArch,
                Arch = arch,
                BlockCount = r.RequiredInt("num_hidden_layers", "n_layers", "n_layer", "num_layers"),
                ContextLength = r.OptInt("max_position_embeddings", "n_ctx", "n_positions"),
                EmbeddingLength = hidden,
                FeedForwardLength = r.RequiredInt("intermediate_size", "n_inner", "hidden_dim"),
                HeadCount = heads,
                HeadCountKv = r.OptInt("num_key_value_heads", "n_kv_heads") ?? heads,
                HeadDimFromConfig = r.OptInt("head_dim"),
                RopeTheta = theta,
                RmsNormEps = r.OptDouble("rms_norm_eps", "norm_eps"),
                VocabSize = r.RequiredInt("vocab_size"),
                TieWordEmbeddings = r.OptBool("tie_word_embeddings"),
                RopeScaling = scaling,
                OriginalMaxPositionEmbeddings = r.OptInt("original_max_position_embeddings"),
                BosTokenId = r.OptLong("bos_token_id"),
                EosTokenId = r.OptLong("eos_token_id"),
                UnkTokenId = r.OptLong("unk_token_id"),
                SepTokenId = r.OptLong("sep_token_id"),
                PadTokenId = r.OptLong("pad_token_id"),
                ClsTokenId = r.OptLong("cls_token_id"),
                MaskTokenId = r.OptLong("mask_token_id"),
            };
            cfg.Validate();
            return cfg;
        }
    }

    private void Validate()
    {
        void Positive(string what, long v)
        {
            if (v <= 0 || v > 1L << 24) throw new ModelFormatException(Path, $"{what} is {v}, out of range");
        }
        Positive("num_hidden_layers", BlockCount);
        Positive("hidden_size", EmbeddingLength);
        Positive("intermediate_size", FeedForwardLength);
        Positive("num_attention_heads", HeadCount);
        Positive("num_key_value_heads", HeadCountKv);
        Positive("vocab_size", VocabSize);
        if (VocabSize > MaxVocab) throw new ModelFormatException(Path, $"vocab_size {VocabSize} is over the limit of {MaxVocab}");
        Positive("head_dim", HeadDim);
        if (HeadCount % HeadCountKv != 0)
            throw new ModelFormatException(Path, $"num_attention_heads {HeadCount} is not a multiple of num_key_value_heads {HeadCountKv}");
        if (HeadDimFromConfig is null && EmbeddingLength % HeadCount != 0)
            throw new ModelFormatException(Path, $"hidden_size {EmbeddingLength} is not a multiple of num_attention_heads {HeadCount}");
        if (HeadDim % 2 != 0) throw new ModelFormatException(Path, $"head dimension {HeadDim} is odd");
    }

    /// <summary>Reads typed fields, trying alternative names in order; a present field of the wrong type is an error.</summary>
    private readonly struct JsonReader(string path, JsonElement obj)
    {
        private JsonElement? Find(params string[] names)
        {
            foreach (var n in names)
                if (obj.TryGetProperty(n, out var v) && v.ValueKind != JsonValueKind.Null) return v;
            return null;
        }

        public string Architecture()
        {
            if (!obj.TryGetProperty("architectures", out var a) || a.ValueKind != JsonValueKind.Array || a.GetArrayLength() == 0
                || a[0].ValueKind != JsonValueKind.String)
                throw new ModelFormatException(path, "no 'architectures' list");
            return a[0].GetString()!;
        }

        public int RequiredInt(params string[] names) =>
            OptInt(names) ?? throw new ModelFormatException(path, $"missing '{names[0]}'");

        public int? OptInt(params string[] names)
        {
            long? v = OptLong(names);
            if (v is null) return null;
            if (v < int.MinValue || v > int.MaxValue) throw new ModelFormatException(path, $"'{names[0]}' is {v}, out of range");
            return (int)v;
        }

        public long? OptLong(params string[] names)
        {
            var e = Find(names);
            if (e is null) return null;
            if (e.Value.ValueKind != JsonValueKind.Number || !e.Value.TryGetInt64(out long v))
            {
                // eos_token_id may be a list in some configs: llama.cpp only takes plain integers here
                if (e.Value.ValueKind == JsonValueKind.Array) return null;
                throw new ModelFormatException(path, $"'{names[0]}' is {e.Value}, expected an integer");
            }
            return v;
        }

        public double? OptDouble(params string[] names)
        {
            var e = Find(names);
            if (e is null) return null;
            if (e.Value.ValueKind != JsonValueKind.Number) throw new ModelFormatException(path, $"'{names[0]}' is {e.Value}, expected a number");
            return e.Value.GetDouble();
        }

        public bool? OptBool(string name)
        {
            var e = Find(name);
            if (e is null) return null;
            return e.Value.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new ModelFormatException(path, $"'{name}' is {e.Value}, expected true or false"),
            };
        }

        public string? OptString(string name)
        {
            var e = Find(name);
            return e is { ValueKind: JsonValueKind.String } s ? s.GetString() : null;
        }
    }
}
