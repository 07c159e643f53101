using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;
using Infer.Tests;

namespace Infer.ConvertWeights.Tests;

/// <summary>
/// quantize --imatrix hands each tensor the weights llama-quantize would: the entry of the same name for every tensor it
/// quantizes, nothing for a tensor without an entry, and the file records the matrix under quantize.imatrix.*.
/// </summary>
public class ImatrixQuantizeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("imatrix-quantize-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const string Missing = "blk.0.attn_k.weight";

    /// <summary>Random weights (a tenth of them zero) for every 2-D weight of the fixture but <see cref="Missing"/>.</summary>
    private static Dictionary<string, float[]> Weights(GgufFile model)
    {
        var rng = new Random(5);
        var weights = new Dictionary<string, float[]>();
        foreach (var t in model.Tensors.Where(t => t.Dims.Count == 2 && t.Name != Missing))
            weights[t.Name] = [.. Enumerable.Range(0, (int)t.RowLength).Select(_ => rng.Next(10) == 0 ? 0f : (float)Math.Exp(4 * rng.NextDouble()))];
        return weights;
    }

    private (int Code, string Err) Run(params string[] args)
    {
        var err = new StringWriter();
        int rc = Program.Run(["quantize", .. args], err, showProgress: false);
        return (rc, err.ToString().TrimEnd());
    }

    [Theory]
    [InlineData("q4_k_m")]
    [InlineData("q3_k_m")]
    [InlineData("iq4_xs")]
    public void EveryQuantizedTensorGetsItsOwnWeights(string type)
    {
        string input = Fixtures.Model("llama3", "bf16");
        using var source = GgufFile.Open(input);
        var weights = Weights(source);
        string imatrix = Path.Combine(_dir, "m.gguf");
        // the sums are weights x 4 calls: llama-quantize divides them back
        ImatrixFiles.WriteGguf(imatrix, weights.Select(kv => (kv.Key, kv.Value.Select(v => v * 4).ToArray(), new[] { 4f })),
            datasets: ["wiki.train.raw"], chunks: 33);
        string output = Path.Combine(_dir, $"out.{type}.gguf");
        var (rc, err) = Run(input, output, type, "--imatrix", imatrix);
        Assert.True(rc == 0, err);
        Assert.Contains(Missing, err); // "no importance weights for ... tensor(s)"

        using var quantized = GgufFile.Open(output);
        int weighted = 0;
        foreach (var q in quantized.Tensors)
        {
            var s = source.GetTensor(q.Name);
            if (q.Type == s.Type) continue;
            var x = new float[s.ElementCount];
            RowCodec.Dequantize(s.Type, s.Span, x);
            var expected = new byte[q.ByteSize];
            float[] w = weights.GetValueOrDefault(q.Name) ?? [];
            RowCodec.QuantizeWeighted(q.Type, x, expected, (int)q.RowLength, w);
            Assert.True(expected.AsSpan().SequenceEqual(q.Span), $"{q.Name} ({q.Type}) is not what the quantizer makes of its weights");
            if (w.Length > 0 && RowCodec.UsesImportance(q.Type)) weighted++;
        }
        Assert.True(weighted > 4, $"only {weighted} tensors were quantized with weights");

        Assert.Equal(imatrix, quantized.GetString("quantize.imatrix.file"));
        Assert.Equal("wiki.train.raw", quantized.GetString("quantize.imatrix.dataset"));
        Assert.Equal(weights.Count, quantized.GetInt("quantize.imatrix.entries_count"));
        Assert.Equal(GgufValueType.UInt32, quantized.Metadata["quantize.imatrix.entries_count"].Type);
        Assert.Equal(33, quantized.GetInt("quantize.imatrix.chunks_count"));
    }

    [Fact]
    public void WithoutImatrixNothingIsRecorded()
    {
        string output = Path.Combine(_dir, "plain.gguf");
        var (rc, err) = Run(Fixtures.Model("llama3", "bf16"), output, "q4_k_m");
        Assert.True(rc == 0, err);
        using var quantized = GgufFile.Open(output);
        Assert.DoesNotContain(quantized.MetadataKeys, k => k.StartsWith("quantize.imatrix", StringComparison.Ordinal));
    }

    [Fact]
    public void AnEntryOfTheWrongSizeIsAnErrorNamingTheTensor()
    {
        string input = Fixtures.Model("llama3", "bf16");
        string imatrix = Path.Combine(_dir, "wrong.dat");
        ImatrixFiles.WriteLegacy(imatrix, [("blk.0.attn_q.weight", 1, [1, 2, 3])]);
        string output = Path.Combine(_dir, "out.gguf");
        var (rc, err) = Run(input, output, "q4_k_m", "--imatrix", imatrix);
        Assert.Equal(1, rc);
        Assert.DoesNotContain('\n', err);
        Assert.Contains("blk.0.attn_q.weight", err);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void ATokenEmbeddingOfTheWrongSizeIsQuantizedWithout()
    {
        // llama-quantize ignores a token_embd entry that does not fit (it always warns about it) instead of failing
        string imatrix = Path.Combine(_dir, "embd.dat");
        ImatrixFiles.WriteLegacy(imatrix, [("token_embd.weight", 1, [1, 2, 3]), ("blk.0.attn_q.weight", 2, [2, 4])]);
        var m = ImportanceMatrix.Load(imatrix);
        var missing = new List<string>();
        Assert.Null(Quantizer.ImportanceFor(m, imatrix, "token_embd.weight", [64, 1000], missing));
        Assert.Equal([1, 2], Quantizer.ImportanceFor(m, imatrix, "blk.0.attn_q.weight", [2, 8], missing)!);
        // a 3-D tensor needs row length x experts weights
        Assert.Throws<Infer.Runtime.ModelFormatException>(() => Quantizer.ImportanceFor(m, imatrix, "blk.0.attn_q.weight", [2, 8, 2], missing));
        Assert.Empty(missing);
        Assert.Null(Quantizer.ImportanceFor(m, imatrix, "blk.0.attn_k.weight", [2, 8], missing));
        Assert.Equal(["blk.0.attn_k.weight"], missing);
    }

    [Theory]
    [InlineData("iq4_xs", false, "Q5_K Q5_K IQ4_XS")]
    [InlineData("iq4_xs", true, "IQ4_XS")]
    [InlineData("q4_0", false, "Q4_0")]
    [InlineData("q4_0", true, "Q4_1 Q4_1 Q4_0")]
    [InlineData("q5_0", true, "Q5_1 Q5_1 Q5_0")]
    public void TwoFfnDownRulesDependOnTheImatrix(string type, bool hasImatrix, string ffnDown)
    {
        const int layers = 16;
        var names = Enumerable.Range(0, layers).Select(i => $"blk.{i}.ffn_down.weight").ToList();
        var rules = new QuantRules(OutputType.Parse(type), names, "llama", layers, gqa: 1, hasImatrix);
        string[] expected = ffnDown.Split(' ');
        for (int i = 0; i < layers; i++)
            Assert.Equal(expected[Math.Min(i, expected.Length - 1)], rules.Choose(names[i], [1536, 512], GgmlType.BF16).ToString());
    }
}
