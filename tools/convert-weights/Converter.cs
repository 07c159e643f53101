using System.Globalization;
using Infer.Runtime;
using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights;

/// <summary>Converts a Hugging Face checkpoint folder to GGUF with llama.cpp's metadata keys, tensor names and type rules.</summary>
public static class Converter
{
    public const uint QuantizationVersion = 2; // GGML_QNT_VERSION

    public static void Convert(string hfDir, string outPath, OutputType type, IProgress<WriteProgress>? progress = null)
    {
        if (!Directory.Exists(hfDir)) throw new ModelFormatException(hfDir, "checkpoint folder not found");
        var cfg = HfConfig.Load(hfDir);
        using var checkpoint = SafetensorsCheckpoint.Open(hfDir);
        var tensors = PlanTensors(cfg, checkpoint, type);
        var vocab = Vocab.Build(hfDir, cfg);
        var metadata = BuildMetadata(cfg, type, tensors, vocab, ModelName(hfDir));
        Write(outPath, metadata, tensors, progress);
    }

    /// <summary>Writes a whole GGUF file: metadata, tensor infos, then each tensor streamed in order.</summary>
    public static void Write(string outPath, MetadataList metadata, IReadOnlyList<PlannedTensor> tensors, IProgress<WriteProgress>? progress,
        uint alignment = GgufFile.DefaultAlignment)
    {
        using var writer = new GgufWriter(outPath, alignment);
        foreach (var (key, t, value) in metadata) writer.Add(key, t, value);
        foreach (var t in tensors) writer.AddTensor(t.Name, t.Type, t.Dims);
        writer.WriteHeader();
        TensorStream.WriteAll(writer, tensors, progress);
        writer.Commit();
    }

    /// <summary>general.name as llama.cpp derives it from a folder name ("hf" becomes "Hf").</summary>
    private static string ModelName(string dir)
    {
        string name = new DirectoryInfo(Path.GetFullPath(dir)).Name;
        return string.Join(' ', name.Replace('_', ' ').Replace('-', ' ').Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(w => char.ToUpperInvariant(w[0]) + w[1..]));
    }

    // ---- tensors ----

    /// <summary>
    /// The output tensors in llama.cpp's order (generated rope_freqs first, then the checkpoint's tensors in file order),
    /// each shape checked against config.json.
    /// </summary>
    public static List<PlannedTensor> PlanTensors(HfConfig cfg, SafetensorsCheckpoint checkpoint, OutputType type)
    {
        var plan = new List<PlannedTensor>();
        if (cfg.Arch == "llama" && cfg.RopeScaling is { Type: "llama3" } rs)
        {
            float[] factors = Llama3RopeFactors.Compute(cfg.RopeTheta ?? 10000.0, cfg.HeadDim, rs.Factor, rs.LowFreqFactor, rs.HighFreqFactor,
                cfg.OriginalMaxPositionEmbeddings ?? rs.OriginalContextLength ?? 8192);
            plan.Add(new PlannedTensor("rope_freqs.weight", GgmlType.F32, [factors.Length], new ArraySource(factors)));
        }
        bool hasLmHead = checkpoint.Find("lm_head.weight") is not null;
        foreach (var t in checkpoint.Tensors)
        {
            if (TensorNames.IsIgnored(t.Name)) continue;
            string name = TensorNames.ToGguf(t.Name, cfg.BlockCount)
                ?? throw new UnsupportedModelException(t.FilePath, $"tensor '{t.Name}' has no GGUF name for architecture {cfg.HfArchitecture}");
            if (name == "output.weight" && cfg.TieWordEmbeddings == true) continue; // tied: token_embd is written once
            long[] expected = ExpectedShape(cfg, name)
                ?? throw new UnsupportedModelException(t.FilePath, $"tensor '{t.Name}' ({name}) is not used by {cfg.Arch}");
            if (!t.Shape.SequenceEqual(expected))
                throw new ModelFormatException(t.FilePath,
                    $"tensor '{t.Name}' has shape {t.ShapeString} but config.json implies [{string.Join(", ", expected)}]");
            long[] dims = [.. t.Shape.Reverse()];
            if (dims.Length == 0) dims = [1];
            int permute = 0;
            if (cfg.PermuteQk && name.StartsWith("blk.", StringComparison.Ordinal))
            {
                if (name.EndsWith(".attn_q.weight", StringComparison.Ordinal) || name.EndsWith(".attn_q.bias", StringComparison.Ordinal))
                    permute = cfg.HeadCount;
                else if (name.EndsWith(".attn_k.weight", StringComparison.Ordinal) || name.EndsWith(".attn_k.bias", StringComparison.Ordinal))
                    permute = cfg.HeadCountKv;
            }
            plan.Add(new PlannedTensor(name, GgmlType.F32, dims, new SafetensorsSource(t, permute)));
        }
        CheckComplete(cfg, plan, hasLmHead, checkpoint);
        return AssignTypes(plan, type, cfg.Arch, cfg.BlockCount, cfg.HeadCount / cfg.HeadCountKv);
    }

    /// <summary>
    /// f32/f16/bf16/q8_0 follow convert_hf_to_gguf.py's rules; the other types follow llama-quantize's rules, as if the
    /// model were converted to F32 and then quantized.
    /// </summary>
    public static List<PlannedTensor> AssignTypes(List<PlannedTensor> plan, OutputType type, string arch, int blockCount, int gqa = 1)
    {
        if (type.IsFloat || type.BaseType == GgmlType.Q8_0)
            return plan.Select(p => p with { Type = TypeRules.ForConvert(p.Name, p.Dims, type, blockCount) }).ToList();
        var rules = new QuantRules(type, plan.Select(p => p.Name).ToList(), arch, blockCount, gqa);
        return plan.Select(p => p with { Type = rules.Choose(p.Name, p.Dims, GgmlType.F32) }).ToList();
    }

    private static void CheckComplete(HfConfig cfg, List<PlannedTensor> plan, bool hasLmHead, SafetensorsCheckpoint checkpoint)
    {
        var names = plan.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        var required = new List<string> { "token_embd.weight", "output_norm.weight" };
        for (int b = 0; b < cfg.BlockCount; b++)
        {
            foreach (var n in new[] { "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down" })
                required.Add($"blk.{b}.{n}.weight");
            if (cfg.Arch == "qwen3")
            {
                required.Add($"blk.{b}.attn_q_norm.weight");
                required.Add($"blk.{b}.attn_k_norm.weight");
            }
            if (cfg.Arch == "qwen2")
            {
                required.Add($"blk.{b}.attn_q.bias");
                required.Add($"blk.{b}.attn_k.bias");
                required.Add($"blk.{b}.attn_v.bias");
            }
        }
        if (cfg.TieWordEmbeddings == false && !hasLmHead) required.Add("output.weight");
        var missing = required.Where(r => !names.Contains(r)).ToList();
        if (missing.Count > 0)
        {
            string file = checkpoint.Files.Count > 0 ? checkpoint.Files[0].Path : cfg.Path;
            throw new ModelFormatException(file, $"{missing.Count} tensor(s) that config.json requires are missing, first '{missing[0]}'");
        }
    }

    /// <summary>The PyTorch shape config.json implies for a GGUF tensor name, or null for a name the architecture does not use.</summary>
    public static long[]? ExpectedShape(HfConfig cfg, string ggufName)
    {
        long hidden = cfg.EmbeddingLength, q = (long)cfg.HeadCount * cfg.HeadDim, kv = (long)cfg.HeadCountKv * cfg.HeadDim;
        string n = ggufName;
        int dot = n.StartsWith("blk.", StringComparison.Ordinal) ? n.IndexOf('.', 4) : -1;
        string local = dot > 0 ? n[(dot + 1)..] : n;
        return local switch
        {
            "token_embd.weight" or "output.weight" => [cfg.VocabSize, hidden],
            "output_norm.weight" or "attn_norm.weight" or "ffn_norm.weight" => [hidden],
            "attn_q.weight" => [q, hidden],
            "attn_k.weight" or "attn_v.weight" => [kv, hidden],
            "attn_output.weight" => [hidden, q],
            "attn_q.bias" => [q],
            "attn_k.bias" or "attn_v.bias" => [kv],
            "attn_output.bias" => [hidden],
            "attn_q_norm.weight" or "attn_k_norm.weight" => [cfg.HeadDim],
            "ffn_gate.weight" or "ffn_up.weight" => [cfg.FeedForwardLength, hidden],
            "ffn_down.weight" => [hidden, cfg.FeedForwardLength],
            _ => null,
        };
    }

    // ---- metadata ----

    /// <summary>The metadata in llama.cpp's order: general.*, hyperparameters, tokenizer, quantization version.</summary>
    public static MetadataList BuildMetadata(HfConfig cfg, OutputType type, IReadOnlyList<PlannedTensor> tensors, MetadataList vocab, string name)
    {
        var md = new MetadataList();
        string a = cfg.Arch;
        md.String("general.architecture", a);
        md.String("general.type", "model");
        md.String("general.name", name);
        md.String("general.size_label", SizeLabel(tensors.Sum(t => t.ElementCount)));
        md.UInt32($"{a}.block_count", (uint)cfg.BlockCount);
        if (cfg.ContextLength is { } ctx) md.UInt32($"{a}.context_length", (uint)ctx);
        md.UInt32($"{a}.embedding_length", (uint)cfg.EmbeddingLength);
        md.UInt32($"{a}.feed_forward_length", (uint)cfg.FeedForwardLength);
        md.UInt32($"{a}.attention.head_count", (uint)cfg.HeadCount);
        md.UInt32($"{a}.attention.head_count_kv", (uint)cfg.HeadCountKv);
        if (cfg.RopeScaling is { } rs)
        {
            switch (rs.Type)
            {
                case "linear":
                    md.String($"{a}.rope.scaling.type", "linear");
                    md.Float32($"{a}.rope.scaling.factor", (float)rs.Factor);
                    break;
                case "yarn":
                    md.String($"{a}.rope.scaling.type", "yarn");
                    md.Float32($"{a}.rope.scaling.factor", (float)rs.Factor);
                    if (rs.OriginalContextLength is { } orig) md.UInt32($"{a}.rope.scaling.original_context_length", (uint)orig);
                    break;
                case "llama3":
                    break; // carried by rope_freqs.weight
                case "dynamic":
                    break; // dynamic NTK scaling: llama.cpp's converter writes nothing for it either
                default:
                    throw new UnsupportedModelException(cfg.Path,
                        $"rope_scaling type '{rs.Type}' is not supported (default, linear, yarn, llama3, dynamic are)");
            }
        }
        if (cfg.RopeTheta is { } theta) md.Float32($"{a}.rope.freq_base", (float)theta);
        if (cfg.RmsNormEps is { } eps) md.Float32($"{a}.attention.layer_norm_rms_epsilon", (float)eps);
        if (cfg.HeadDimFromConfig is { } hd)
        {
            md.UInt32($"{a}.attention.key_length", (uint)hd);
            md.UInt32($"{a}.attention.value_length", (uint)hd);
        }
        md.UInt32("general.file_type", (uint)type.FileType);
        if (a == "llama")
        {
            md.UInt32($"{a}.vocab_size", (uint)cfg.VocabSize);
            md.UInt32($"{a}.rope.dimension_count", (uint)cfg.HeadDim);
        }
        md.AddRange(vocab);
        md.UInt32("general.quantization_version", QuantizationVersion);
        return md;
    }

    /// <summary>gguf-py's size label: the parameter count with at least two significant digits and a K/M/B/T suffix ("8.3M", "10M").</summary>
    public static string SizeLabel(long parameters)
    {
        (double scaled, string suffix) = parameters switch
        {
            >= 1_000_000_000_000 => (parameters / 1e12, "T"),
            >= 1_000_000_000 => (parameters / 1e9, "B"),
            >= 1_000_000 => (parameters / 1e6, "M"),
            _ => (parameters / 1e3, "K"),
        };
        int digits = ((long)scaled).ToString(CultureInfo.InvariantCulture).Length;
        int decimals = Math.Max(0, 2 - digits);
        return scaled.ToString("F" + decimals, CultureInfo.InvariantCulture) + suffix;
    }
}
