using Infer.Runtime.Gguf;
using Infer.Tests;

namespace Infer.ConvertWeights.Tests;

public class SynthTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("synth-tests-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static long Parameters(string preset, int vocab) =>
        Synth.Plan(Synth.Presets[preset] with { VocabSize = vocab }, OutputType.Q4_0, 1).Sum(t => t.ElementCount);

    [Fact]
    public void Llama32_1bPlanHas1_24BParameters()
    {
        // Hand count from Llama 3.2 1B's config.json: embedding 128256 x 2048 (tied); per layer q and o 2048 x 2048,
        // k and v 512 x 2048, three FFN matrices 8192 x 2048, two norms of 2048; final norm 2048; rope_freqs 32.
        long perLayer = 2L * 2048 * 2048 + 2L * 512 * 2048 + 3L * 8192 * 2048 + 2 * 2048;
        long expected = 128256L * 2048 + 16 * perLayer + 2048 + 32;
        Assert.Equal(1_235_814_432L, expected);
        Assert.Equal(expected, Parameters("llama-3.2-1b", 128256));
        Assert.Equal("1.2B", Converter.SizeLabel(expected));
    }

    [Theory]
    [InlineData("llama-3.2-3b", 128256, 3_212_749_824L)]    // published: 3.21 B
    [InlineData("llama-3.1-8b", 128256, 8_030_261_248L)]    // published: 8.03 B
    [InlineData("qwen2.5-0.5b", 151936, 494_032_768L)]      // published: 0.49 B
    [InlineData("qwen3-0.6b", 151936, 596_049_920L)]        // published: 0.6 B (0.44 B without embedding)
    [InlineData("qwen3-8b", 151936, 8_190_735_360L)]        // published: 8.2 B
    public void PresetsHaveThePublishedParameterCounts(string preset, int vocab, long expected)
    {
        long rope = preset.StartsWith("llama", StringComparison.Ordinal) ? Synth.Presets[preset].HeadDim / 2 : 0;
        Assert.Equal(expected + rope, Parameters(preset, vocab));
    }

    [Fact]
    public void Q4_0PlanFollowsLlamaQuantizeRules()
    {
        var plan = Synth.Plan(Synth.Presets["llama-3.2-1b"], OutputType.Q4_0, 1);
        Assert.Equal("rope_freqs.weight", plan[0].Name);
        Assert.Null(plan.Find(t => t.Name == "output.weight")); // tied
        Assert.Equal(GgmlType.Q6_K, plan.Single(t => t.Name == "token_embd.weight").Type); // doubles as the output matrix
        Assert.All(plan.Where(t => t.Dims.Length == 1), t => Assert.Equal(GgmlType.F32, t.Type));
        Assert.All(plan.Where(t => t.Name.StartsWith("blk.", StringComparison.Ordinal) && t.Dims.Length == 2),
            t => Assert.Equal(GgmlType.Q4_0, t.Type));
        Assert.Equal(147, plan.Count);
    }

    [Fact]
    public void WritesASmallModelWithDonorVocabNormalWeightsAndUnitNorms()
    {
        string output = Path.Combine(_dir, "tiny.gguf");
        var err = new StringWriter();
        string donor = Fixtures.Model("qwen3", "bf16");
        int rc = Program.Run(["synth", "--arch", "qwen3", "--layers", "2", "--hidden", "64", "--ffn", "128", "--heads", "4", "--kv-heads", "2",
            "--head-dim", "32", "--tied", "true", "--type", "f32", "--seed", "7", "--tokenizer-from", donor, "-o", output], err, showProgress: false);
        Assert.True(rc == 0, err.ToString());
        using var f = GgufFile.Open(output);
        using var d = GgufFile.Open(donor);
        Assert.Equal("qwen3", f.GetString("general.architecture"));
        Assert.Equal(32, f.GetInt32("qwen3.attention.key_length"));
        foreach (var key in d.MetadataKeys.Where(k => k.StartsWith("tokenizer.", StringComparison.Ordinal)))
            Assert.True(GgufCompare.ValueEquals(d.Metadata[key].Value, f.Metadata[key].Value), key);
        Assert.Equal([64L, 151936L], f.GetTensor("token_embd.weight").Dims);
        Assert.Equal([32L], f.GetTensor("blk.1.attn_k_norm.weight").Dims);

        var norm = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(f.GetTensor("blk.0.attn_q_norm.weight").Span);
        Assert.All(norm.ToArray(), v => Assert.Equal(1f, v));
        var w = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(f.GetTensor("token_embd.weight").Span);
        double sum = 0, sumSq = 0;
        foreach (float v in w)
        {
            sum += v;
            sumSq += (double)v * v;
        }
        double mean = sum / w.Length, std = Math.Sqrt(sumSq / w.Length - mean * mean);
        Assert.True(Math.Abs(mean) < 1e-4, $"mean {mean}");              // 9.7M samples: standard error 6e-6
        Assert.True(Math.Abs(std - 0.02) < 1e-4, $"std {std}");

        // the same seed gives the same file; another seed does not
        string again = Path.Combine(_dir, "again.gguf");
        Assert.Equal(0, Program.Run(["synth", "--arch", "qwen3", "--layers", "2", "--hidden", "64", "--ffn", "128", "--heads", "4", "--kv-heads", "2",
            "--head-dim", "32", "--tied", "true", "--type", "f32", "--seed", "7", "--tokenizer-from", donor, "-o", again], err, showProgress: false));
        Assert.Equal(File.ReadAllBytes(output), File.ReadAllBytes(again));
        Assert.Equal(0, Program.Run(["synth", "--arch", "qwen3", "--layers", "2", "--hidden", "64", "--ffn", "128", "--heads", "4", "--kv-heads", "2",
            "--head-dim", "32", "--tied", "true", "--type", "f32", "--seed", "8", "--tokenizer-from", donor, "-o", again], err, showProgress: false));
        Assert.NotEqual(File.ReadAllBytes(output), File.ReadAllBytes(again));
    }

    [Fact]
    public void UnknownPresetIsAUsageError()
    {
        var err = new StringWriter();
        int rc = Program.Run(["synth", "--preset", "gpt-5", "--type", "q4_0", "--tokenizer-from", "x.gguf", "-o", Path.Combine(_dir, "x.gguf")],
            err, showProgress: false);
        Assert.Equal(2, rc);
        Assert.Contains("unknown preset 'gpt-5'", err.ToString());
        Assert.Contains("llama-3.2-1b", err.ToString());
    }
}
