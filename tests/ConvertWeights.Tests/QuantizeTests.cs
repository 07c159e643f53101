using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;
using Infer.Tests;

namespace Infer.ConvertWeights.Tests;

public class QuantizeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("quantize-tests-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Quantize(string input, string type)
    {
        string output = Path.Combine(_dir, $"{Path.GetFileNameWithoutExtension(input)}.{type}.gguf");
        var err = new StringWriter();
        int rc = Program.Run(["quantize", input, output, type], err, showProgress: false);
        Assert.True(rc == 0, err.ToString());
        return output;
    }

    [Theory]
    [InlineData("llama2-spm")]
    [InlineData("llama3")]
    public void Q8_0OfTheBf16FixtureEqualsLlamaCppQ8_0(string name)
    {
        // llama.cpp's converter wrote both fixtures from the same weights; quantizing its bf16 file must give its q8_0 file.
        using var expected = GgufFile.Open(Fixtures.Model(name, "q8_0"));
        using var actual = GgufFile.Open(Quantize(Fixtures.Model(name, "bf16"), "q8_0"));
        GgufCompare.TensorsMatch(expected, actual);
        GgufCompare.MetadataMatches(expected, actual);
    }

    /// <summary>Relative RMS error bounds of a round trip through each type on Gaussian-like weights (measured headroom about 1.5x).</summary>
    public static readonly Dictionary<GgmlType, double> MaxRelativeRmse = new()
    {
        [GgmlType.Q8_0] = 0.008,
        [GgmlType.F16] = 0.001,
        [GgmlType.Q4_0] = 0.15,
        [GgmlType.Q4_1] = 0.12,
        [GgmlType.Q5_0] = 0.075,
        [GgmlType.Q5_1] = 0.06,
        [GgmlType.Q2_K] = 0.45,
        [GgmlType.Q3_K] = 0.25,
        [GgmlType.Q4_K] = 0.12,
        [GgmlType.Q5_K] = 0.06,
        [GgmlType.Q6_K] = 0.03,
        [GgmlType.IQ4_NL] = 0.12,
        [GgmlType.IQ4_XS] = 0.12,
    };

    private static void AssertRoundTrip(GgufFile original, GgufFile quantized)
    {
        foreach (var o in original.Tensors)
        {
            var q = quantized.GetTensor(o.Name);
            Assert.Equal(o.Dims, q.Dims);
            var x = new float[o.ElementCount];
            var y = new float[o.ElementCount];
            RowCodec.Dequantize(o.Type, o.Span, x);
            RowCodec.Dequantize(q.Type, q.Span, y);
            if (q.Type == o.Type)
            {
                Assert.True(o.Span.SequenceEqual(q.Span), $"{o.Name} kept its type but changed bytes");
                continue;
            }
            double err = 0, norm = 0;
            for (int i = 0; i < x.Length; i++)
            {
                err += (x[i] - y[i]) * (double)(x[i] - y[i]);
                norm += x[i] * (double)x[i];
            }
            double rel = Math.Sqrt(err / norm);
            Assert.True(rel <= MaxRelativeRmse[q.Type], $"{o.Name} as {q.Type}: relative RMSE {rel:F4} over {MaxRelativeRmse[q.Type]}");
        }
    }

    [Theory]
    [InlineData("llama3", "q4_0", GgmlType.Q4_0)]
    [InlineData("llama2-spm", "q4_0", GgmlType.Q4_0)]
    [InlineData("qwen2", "q4_0", GgmlType.Q4_0)]
    [InlineData("qwen3", "q8_0", GgmlType.Q8_0)]
    [InlineData("llama2-spm", "q5_1", GgmlType.Q5_1)]
    public void QuantizedFixturesRoundTripWithinTolerance(string name, string type, GgmlType main)
    {
        using var original = GgufFile.Open(Fixtures.Model(name, "bf16"));
        using var quantized = GgufFile.Open(Quantize(Fixtures.Model(name, "bf16"), type));
        AssertRoundTrip(original, quantized);
        Assert.Equal(OutputType.Parse(type).FileType, quantized.GetInt("general.file_type"));
        Assert.Equal(2, quantized.GetInt("general.quantization_version"));
        foreach (var key in original.MetadataKeys.Where(k => k != "general.file_type"))
            Assert.True(GgufCompare.ValueEquals(original.Metadata[key].Value, quantized.Metadata[key].Value), key);
        Assert.Equal(main, quantized.GetTensor("blk.0.attn_q.weight").Type);
        Assert.Equal(GgmlType.F32, quantized.GetTensor("blk.0.attn_norm.weight").Type);
        Assert.Equal(GgmlType.F16, quantized.GetTensor("blk.0.ffn_down.weight").Type); // rows of 176 fit no 32-block
    }

    [Fact]
    public void KQuantMixesOnAModelWith256WideRows()
    {
        // 8 layers, hidden 256: every K-quant block fits, so the mixes' per-layer choices show.
        string input = Path.Combine(_dir, "wide.gguf");
        var custom = Synth.Custom("llama", layers: 8, hidden: 256, ffn: 512, heads: 4, kv: 2, headDim: null, ctx: 4096,
            ropeTheta: 10000, rmsEps: 1e-5, tied: false);
        var shape = custom with { VocabSize = 512 };
        var plan = Synth.Plan(shape, OutputType.F32, seed: 3);
        Converter.Write(input, Converter.BuildMetadata(shape, OutputType.F32, plan, [], "wide"), plan, progress: null);
        using var original = GgufFile.Open(input);

        using (var q = GgufFile.Open(Quantize(input, "q4_k_m")))
        {
            AssertRoundTrip(original, q);
            Assert.Equal(15, q.GetInt("general.file_type"));
            Assert.Equal(GgmlType.Q6_K, q.GetTensor("output.weight").Type);
            Assert.Equal(GgmlType.Q4_K, q.GetTensor("token_embd.weight").Type); // untied: token embedding keeps the base type
            // use_more_bits(i, 8): layers 0 (first eighth), 7 (last eighth), and (i - 1) % 3 == 2 -> 3, 6
            for (int i = 0; i < 8; i++)
            {
                var expected = i is 0 or 3 or 6 or 7 ? GgmlType.Q6_K : GgmlType.Q4_K;
                Assert.Equal(expected, q.GetTensor($"blk.{i}.attn_v.weight").Type);
                Assert.Equal(expected, q.GetTensor($"blk.{i}.ffn_down.weight").Type);
                Assert.Equal(GgmlType.Q4_K, q.GetTensor($"blk.{i}.attn_q.weight").Type);
            }
        }
        using (var q = GgufFile.Open(Quantize(input, "q4_k_s")))
        {
            AssertRoundTrip(original, q);
            for (int i = 0; i < 8; i++)
            {
                Assert.Equal(i < 4 ? GgmlType.Q5_K : GgmlType.Q4_K, q.GetTensor($"blk.{i}.attn_v.weight").Type);
                Assert.Equal(i < 1 ? GgmlType.Q5_K : GgmlType.Q4_K, q.GetTensor($"blk.{i}.ffn_down.weight").Type);
            }
        }
        foreach (var (type, main) in new[] { ("q5_k_m", GgmlType.Q5_K), ("q6_k", GgmlType.Q6_K), ("q4_1", GgmlType.Q4_1), ("q5_0", GgmlType.Q5_0) })
        {
            using var q = GgufFile.Open(Quantize(input, type));
            AssertRoundTrip(original, q);
            Assert.Equal(main, q.GetTensor("blk.2.attn_q.weight").Type);
        }
    }

    [Fact]
    public void LowBitKQuantMixesRoundTrip()
    {
        string input = Path.Combine(_dir, "wide-low.gguf");
        var custom = Synth.Custom("llama", layers: 8, hidden: 256, ffn: 512, heads: 4, kv: 2, headDim: null, ctx: 4096,
            ropeTheta: 10000, rmsEps: 1e-5, tied: false);
        var shape = custom with { VocabSize = 512 };
        var plan = Synth.Plan(shape, OutputType.F32, seed: 5);
        Converter.Write(input, Converter.BuildMetadata(shape, OutputType.F32, plan, [], "wide"), plan, progress: null);
        using var original = GgufFile.Open(input);
        foreach (var (type, fileType, main) in new[] { ("q2_k", 10, GgmlType.Q2_K), ("q3_k_s", 11, GgmlType.Q3_K), ("q3_k", 12, GgmlType.Q3_K),
            ("q3_k_l", 13, GgmlType.Q3_K), ("iq4_nl", 25, GgmlType.IQ4_NL), ("iq4_xs", 30, GgmlType.IQ4_XS) })
        {
            using var q = GgufFile.Open(Quantize(input, type));
            AssertRoundTrip(original, q);
            Assert.Equal(fileType, q.GetInt("general.file_type"));
            Assert.Equal(main, q.GetTensor("blk.2.attn_q.weight").Type);
        }
    }

    [Theory]
    [InlineData(0, 32, true)]
    [InlineData(3, 32, true)]
    [InlineData(4, 32, false)]
    [InlineData(6, 32, true)]
    [InlineData(7, 32, false)]
    [InlineData(27, 32, true)]
    [InlineData(28, 32, true)]
    [InlineData(26, 32, false)]
    public void UseMoreBitsMatchesLlamaCpp(int layer, int layers, bool expected) =>
        Assert.Equal(expected, QuantRules.UseMoreBits(layer, layers));

    [Theory]
    [InlineData(4096, GgmlType.Q4_K, GgmlType.Q4_K)]
    [InlineData(64, GgmlType.Q4_K, GgmlType.Q5_0)]
    [InlineData(64, GgmlType.Q5_K, GgmlType.Q5_1)]
    [InlineData(64, GgmlType.Q6_K, GgmlType.Q8_0)]
    [InlineData(176, GgmlType.Q6_K, GgmlType.F16)]
    [InlineData(176, GgmlType.Q4_0, GgmlType.F16)]
    [InlineData(64, GgmlType.Q2_K, GgmlType.Q4_0)]     // as llama-quantize 3.22.1 (node-llama-cpp) writes them
    [InlineData(64, GgmlType.Q3_K, GgmlType.Q4_0)]
    [InlineData(896, GgmlType.IQ4_XS, GgmlType.IQ4_NL)]
    [InlineData(48, GgmlType.Q3_K, GgmlType.F16)]
    [InlineData(512, GgmlType.Q3_K, GgmlType.Q3_K)]
    public void FallbackForRowsThatDoNotFitTheBlock(long rowLength, GgmlType wanted, GgmlType expected) =>
        Assert.Equal(expected, QuantRules.Fallback(rowLength, wanted));
}
