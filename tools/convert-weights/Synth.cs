using Infer.Runtime;
using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights;

/// <summary>
/// Random-weight models in the exact shapes of real ones, for benchmarks: weights are normal(0, 0.02), norms are 1, and the
/// tokenizer (and so the vocabulary size, the embedding's row count) comes from a donor GGUF. Values are generated row by row
/// from a seeded counter-based generator, so output is reproducible and memory stays bounded.
/// </summary>
public static class Synth
{
    public const float WeightStd = 0.02f;

    /// <summary>Hyperparameters from each model's published config.json (vocabulary excepted: it comes from the donor).</summary>
    public static readonly IReadOnlyDictionary<string, HfConfig> Presets = new Dictionary<string, HfConfig>
    {
        ["llama-3.2-1b"] = Llama("llama-3.2-1b", layers: 16, hidden: 2048, ffn: 8192, heads: 32, kv: 8, headDim: 64, tied: true, ropeFactor: 32),
        ["llama-3.2-3b"] = Llama("llama-3.2-3b", layers: 28, hidden: 3072, ffn: 8192, heads: 24, kv: 8, headDim: 128, tied: true, ropeFactor: 32),
        ["llama-3.1-8b"] = Llama("llama-3.1-8b", layers: 32, hidden: 4096, ffn: 14336, heads: 32, kv: 8, headDim: 128, tied: false, ropeFactor: 8),
        ["qwen2.5-0.5b"] = Qwen("qwen2.5-0.5b", "Qwen2ForCausalLM", "qwen2",
            layers: 24, hidden: 896, ffn: 4864, heads: 14, kv: 2, headDim: null, ctx: 32768, tied: true),
        ["qwen3-0.6b"] = Qwen("qwen3-0.6b", "Qwen3ForCausalLM", "qwen3",
            layers: 28, hidden: 1024, ffn: 3072, heads: 16, kv: 8, headDim: 128, ctx: 40960, tied: true),
        ["qwen3-8b"] = Qwen("qwen3-8b", "Qwen3ForCausalLM", "qwen3",
            layers: 36, hidden: 4096, ffn: 12288, heads: 32, kv: 8, headDim: 128, ctx: 40960, tied: false),
    };

    private static HfConfig Llama(string name, int layers, int hidden, int ffn, int heads, int kv, int headDim, bool tied, double ropeFactor) => new()
    {
        Path = $"preset {name}",
        HfArchitecture = "LlamaForCausalLM",
        Arch = "llama",
        BlockCount = layers,
        ContextLength = 131072,
        EmbeddingLength = hidden,
        FeedForwardLength = ffn,
        HeadCount = heads,
        HeadCountKv = kv,
        HeadDimFromConfig = headDim,
        RopeTheta = 500000,
        RmsNormEps = 1e-5,
        VocabSize = 128256,
        TieWordEmbeddings = tied,
        RopeScaling = new RopeScaling("llama3", ropeFactor, 1.0, 4.0, 8192),
    };

    private static HfConfig Qwen(string name, string hfArch, string arch, int layers, int hidden, int ffn, int heads, int kv, int? headDim,
        int ctx, bool tied) => new()
        {
            Path = $"preset {name}",
            HfArchitecture = hfArch,
            Arch = arch,
            BlockCount = layers,
            ContextLength = ctx,
            EmbeddingLength = hidden,
            FeedForwardLength = ffn,
            HeadCount = heads,
            HeadCountKv = kv,
            HeadDimFromConfig = headDim,
            RopeTheta = 1000000,
            RmsNormEps = 1e-6,
            VocabSize = 151936,
            TieWordEmbeddings = tied,
        };

    /// <summary>Shapes given on the command line (architecture llama unless stated).</summary>
    public static HfConfig Custom(string arch, int layers, int hidden, int ffn, int heads, int kv, int? headDim, int ctx, double ropeTheta,
        double rmsEps, bool tied)
    {
        string hfArch = HfConfig.SupportedArchitectures.FirstOrDefault(kv => kv.Value == arch).Key
            ?? throw new UsageException($"unknown architecture '{arch}' (llama, qwen2, qwen3)");
        foreach (var (what, v) in new[] { ("--layers", layers), ("--hidden", hidden), ("--ffn", ffn), ("--heads", heads), ("--kv-heads", kv) })
            if (v <= 0) throw new UsageException($"{what} must be positive");
        int hd = headDim ?? hidden / heads;
        if (headDim is null && hidden % heads != 0) throw new UsageException("--hidden must be a multiple of --heads (or give --head-dim)");
        if (heads % kv != 0) throw new UsageException("--heads must be a multiple of --kv-heads");
        if (hd % 2 != 0) throw new UsageException("the head dimension must be even");
        return new HfConfig
        {
            Path = "command line",
            HfArchitecture = hfArch,
            Arch = arch,
            BlockCount = layers,
            ContextLength = ctx,
            EmbeddingLength = hidden,
            FeedForwardLength = ffn,
            HeadCount = heads,
            HeadCountKv = kv,
            HeadDimFromConfig = headDim,
            RopeTheta = ropeTheta,
            RmsNormEps = rmsEps,
            VocabSize = 1,
            TieWordEmbeddings = tied,
        };
    }

    /// <summary>
    /// The tensors of a model with <paramref name="cfg"/>'s shapes, in llama.cpp's converter order, with their types for
    /// <paramref name="type"/>.
    /// </summary>
    public static List<PlannedTensor> Plan(HfConfig cfg, OutputType type, ulong seed)
    {
        var names = new List<(string Name, long[] Dims)>();
        long hidden = cfg.EmbeddingLength, ff = cfg.FeedForwardLength;
        long q = (long)cfg.HeadCount * cfg.HeadDim, kv = (long)cfg.HeadCountKv * cfg.HeadDim;
        if (cfg.TieWordEmbeddings != true) names.Add(("output.weight", [hidden, cfg.VocabSize]));
        names.Add(("token_embd.weight", [hidden, cfg.VocabSize]));
        for (int b = 0; b < cfg.BlockCount; b++)
        {
            // Hugging Face's alphabetical order inside a layer, mapped to GGUF names, as the converter writes them
            names.Add(($"blk.{b}.attn_norm.weight", [hidden]));
            names.Add(($"blk.{b}.ffn_down.weight", [ff, hidden]));
            names.Add(($"blk.{b}.ffn_gate.weight", [hidden, ff]));
            names.Add(($"blk.{b}.ffn_up.weight", [hidden, ff]));
            names.Add(($"blk.{b}.ffn_norm.weight", [hidden]));
            if (cfg.Arch == "qwen2") names.Add(($"blk.{b}.attn_k.bias", [kv]));
            if (cfg.Arch == "qwen3") names.Add(($"blk.{b}.attn_k_norm.weight", [cfg.HeadDim]));
            names.Add(($"blk.{b}.attn_k.weight", [hidden, kv]));
            names.Add(($"blk.{b}.attn_output.weight", [q, hidden]));
            if (cfg.Arch == "qwen2") names.Add(($"blk.{b}.attn_q.bias", [q]));
            if (cfg.Arch == "qwen3") names.Add(($"blk.{b}.attn_q_norm.weight", [cfg.HeadDim]));
            names.Add(($"blk.{b}.attn_q.weight", [hidden, q]));
            if (cfg.Arch == "qwen2") names.Add(($"blk.{b}.attn_v.bias", [kv]));
            names.Add(($"blk.{b}.attn_v.weight", [hidden, kv]));
        }
        names.Add(("output_norm.weight", [hidden]));

        var plan = new List<PlannedTensor>();
        if (cfg.Arch == "llama" && cfg.RopeScaling is { Type: "llama3" } rs)
        {
            float[] factors = Llama3RopeFactors.Compute(cfg.RopeTheta ?? 10000, cfg.HeadDim, rs.Factor, rs.LowFreqFactor, rs.HighFreqFactor,
                rs.OriginalContextLength ?? 8192);
            plan.Add(new PlannedTensor("rope_freqs.weight", GgmlType.F32, [factors.Length], new ArraySource(factors)));
        }
        for (int i = 0; i < names.Count; i++)
        {
            var (name, dims) = names[i];
            object source = name.EndsWith("_norm.weight", StringComparison.Ordinal)
                ? new ConstantSource(1f)
                : new NormalSource(seed, (ulong)i, WeightStd);
            plan.Add(new PlannedTensor(name, GgmlType.F32, dims, source));
        }
        return Converter.AssignTypes(plan, type, cfg.Arch, cfg.BlockCount, cfg.HeadCount / cfg.HeadCountKv);
    }

    /// <summary>Writes the model; the donor's tokenizer.* keys are copied and its token count sets the vocabulary size.</summary>
    public static void Write(HfConfig shape, OutputType type, string donorPath, string outPath, ulong seed, string name,
        IProgress<WriteProgress>? progress = null)
    {
        MetadataList vocab;
        int vocabSize;
        using (var donor = GgufFile.Open(donorPath))
        {
            var tokens = donor.TryGetStringArray("tokenizer.ggml.tokens")
                ?? throw new ModelFormatException(donorPath, "donor has no tokenizer.ggml.tokens");
            vocabSize = tokens.Length;
            vocab = [];
            foreach (var key in donor.MetadataKeys.Where(k => k.StartsWith("tokenizer.", StringComparison.Ordinal)))
                vocab.Add(key, donor.Metadata[key].Type, donor.Metadata[key].Value);
        }
        var cfg = shape with { VocabSize = vocabSize };
        var plan = Plan(cfg, type, seed);
        var md = Converter.BuildMetadata(cfg, type, plan, vocab, name);
        Converter.Write(outPath, md, plan, progress);
    }
}

/// <summary>A tensor filled with one value (norm weights of a synthetic model).</summary>
public sealed class ConstantSource(float value) : ITensorSource
{
    public void ReadRows(long firstRow, int count, int rowLength, Span<float> dst) => dst[..(count * rowLength)].Fill(value);
}

/// <summary>
/// Normal(0, std) values; row r of tensor t is drawn from a SplitMix64 stream seeded by (seed, t, r) with the Box-Muller
/// transform, so any row can be generated independently (and in parallel) and the same seed gives the same file.
/// </summary>
public sealed class NormalSource(ulong seed, ulong tensorIndex, float std) : ITensorSource
{
    public void ReadRows(long firstRow, int count, int rowLength, Span<float> dst)
    {
        if ((long)count * rowLength < 1 << 16)
        {
            for (int i = 0; i < count; i++) FillRow(firstRow + i, dst.Slice(i * rowLength, rowLength));
            return;
        }
        unsafe
        {
            fixed (float* p = dst)
            {
                float* basePtr = p;
                Parallel.For(0, count, i => FillRow(firstRow + i, new Span<float>(basePtr + (long)i * rowLength, rowLength)));
            }
        }
    }

    private void FillRow(long row, Span<float> dst)
    {
        ulong state = seed ^ (tensorIndex * 0x9E3779B97F4A7C15UL) ^ ((ulong)row * 0xD1B54A32D192ED03UL);
        for (int i = 0; i < dst.Length; i += 2)
        {
            // u1 in (0, 1], u2 in [0, 1)
            float u1 = ((SplitMix64(ref state) >> 40) + 1) * (1f / (1 << 24));
            float u2 = (SplitMix64(ref state) >> 40) * (1f / (1 << 24));
            float r = std * MathF.Sqrt(-2f * MathF.Log(u1));
            var (s, c) = MathF.SinCos(2f * MathF.PI * u2);
            dst[i] = r * c;
            if (i + 1 < dst.Length) dst[i + 1] = r * s;
        }
    }

    private static ulong SplitMix64(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
