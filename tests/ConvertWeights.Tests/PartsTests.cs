using System.Text.Json;
using Infer.Runtime;
using Infer.Tests;

namespace Infer.ConvertWeights.Tests;

public class QkPermutationTests
{
    [Fact]
    public void InterleavesTheTwoHalvesOfEachHead()
    {
        // 2 heads of dim 4: HF rows (h, half j, i) -> llama.cpp rows (h, i, j)
        long[] expected = [0, 2, 1, 3, 4, 6, 5, 7];
        for (int r = 0; r < 8; r++) Assert.Equal(expected[r], QkPermutation.SourceRow(r, heads: 2, rows: 8));
    }

    [Fact]
    public void PermutesAMatrixAsGgufPyDoes()
    {
        // reshape(1 head, 2, 3, cols).swapaxes(1, 2): rows [a0 a1 a2 | b0 b1 b2] -> [a0 b0 a1 b1 a2 b2]
        float[] w = [0, 0, 1, 1, 2, 2, 10, 10, 11, 11, 12, 12]; // 6 rows x 2 cols
        Assert.Equal([0, 0, 10, 10, 1, 1, 11, 11, 2, 2, 12, 12], QkPermutation.Permute(w, heads: 1, rows: 6, cols: 2));
    }

    [Fact]
    public void IsABijectionForEveryHeadLayout()
    {
        foreach (var (heads, hd) in new[] { (1, 2), (2, 32), (8, 64), (3, 128) })
        {
            int rows = heads * hd;
            var seen = new bool[rows];
            for (int r = 0; r < rows; r++) seen[QkPermutation.SourceRow(r, heads, rows)] = true;
            Assert.All(seen, Assert.True);
        }
    }
}

public class RopeFactorTests
{
    [Fact]
    public void Llama3FactorsMatchTheClosedForm()
    {
        var f = Llama3RopeFactors.Compute(500000, 32, 8, 1, 4, 8192);
        Assert.Equal(16, f.Length);
        for (int k = 0; k < 16; k++)
        {
            double freq = Math.Pow(500000, -2.0 * k / 32);
            double wavelen = 2 * Math.PI / freq;
            double expected = wavelen < 2048 ? 1 : wavelen > 8192 ? 8 : 1 / ((1 - (8192 / wavelen - 1) / 3) / 8 + (8192 / wavelen - 1) / 3);
            Assert.Equal(expected, f[k], 1e-5);
        }
        Assert.Equal(2.69453f, f[8], 1e-4f); // the one interpolated band at head dim 32
    }
}

public class TensorNameTests
{
    [Theory]
    [InlineData("model.embed_tokens.weight", "token_embd.weight")]
    [InlineData("lm_head.weight", "output.weight")]
    [InlineData("model.norm.weight", "output_norm.weight")]
    [InlineData("model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight")]
    [InlineData("model.layers.1.self_attn.q_proj.bias", "blk.1.attn_q.bias")]
    [InlineData("model.layers.27.self_attn.k_norm.weight", "blk.27.attn_k_norm.weight")]
    [InlineData("model.layers.3.post_attention_layernorm.weight", "blk.3.ffn_norm.weight")]
    [InlineData("model.layers.3.mlp.down_proj.weight", "blk.3.ffn_down.weight")]
    [InlineData("model.layers.28.mlp.down_proj.weight", null)] // past block_count
    [InlineData("model.vision_tower.weight", null)]
    public void MapsHuggingFaceNames(string hf, string? gguf) => Assert.Equal(gguf, TensorNames.ToGguf(hf, blockCount: 28));
}

public class PreTokenizerTests
{
    private static string Identify(string preTokenizerJson) =>
        PreTokenizer.Identify(JsonDocument.Parse($"{{\"pre_tokenizer\": {preTokenizerJson}}}").RootElement, "tokenizer.json");

    private static string Split(string regex) =>
        $$"""
        {"type":"Sequence","pretokenizers":[
            {"type":"Split","pattern":{"Regex":{{JsonSerializer.Serialize(regex)}}},"behavior":"Isolated","invert":false},
            {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]}
        """;

    [Fact]
    public void Llama3RegexIsLlamaBpe() => Assert.Equal("llama-bpe", Identify(Split(PreTokenizer.Llama3Regex)));

    [Fact]
    public void QwenRegexIsQwen2() => Assert.Equal("qwen2", Identify(Split(PreTokenizer.Qwen2Regex)));

    [Fact]
    public void PlainByteLevelIsGpt2() => Assert.Equal("gpt-2", Identify("""{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}"""));

    [Fact]
    public void UnknownRegexIsAnError()
    {
        var e = Assert.Throws<UnsupportedModelException>(() => Identify(Split(@"\p{L}+|\s+")));
        Assert.Contains("unrecognized BPE pre-tokenizer", e.Message);
    }

    [Fact]
    public void Llama3FixtureTokenizerJsonIsLlamaBpe()
    {
        string path = Path.Combine(Fixtures.ModelDir("llama3"), "hf", "tokenizer.json");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        Assert.Equal("llama-bpe", PreTokenizer.Identify(doc.RootElement, path));
    }
}

public class SentencePieceTests
{
    [Fact]
    public void ParsesTheLlama2TokenizerModel()
    {
        var spm = SentencePieceModel.Load(Path.Combine(Fixtures.ModelDir("llama2-spm"), "hf", "tokenizer.model"));
        Assert.Equal(32000, spm.Pieces.Length);
        Assert.Equal("<unk>", spm.Pieces[0]);
        Assert.Equal(SentencePieceModel.PieceType.Unknown, spm.Types[0]);
        Assert.Equal(SentencePieceModel.PieceType.Control, spm.Types[1]);
        Assert.Equal("<0x00>", spm.Pieces[3]);
        Assert.Equal(SentencePieceModel.PieceType.Byte, spm.Types[3]);
        Assert.Equal("\u2581t", spm.Pieces[260]);
    }

    [Fact]
    public void TruncatedProtobufIsAnError()
    {
        string path = Path.GetTempFileName();
        try
        {
            byte[] good = File.ReadAllBytes(Path.Combine(Fixtures.ModelDir("llama2-spm"), "hf", "tokenizer.model"));
            File.WriteAllBytes(path, good[..1000]);
            var e = Assert.Throws<ModelFormatException>(() => SentencePieceModel.Load(path));
            Assert.Contains("corrupt protobuf", e.Message);
        }
        finally { File.Delete(path); }
    }
}

public class SizeLabelTests
{
    [Theory]
    [InlineData(8_319_000L, "8.3M")]
    [InlineData(10_120_000L, "10M")]
    [InlineData(1_235_814_400L, "1.2B")]
    [InlineData(494_032_768L, "494M")]
    public void FormatsLikeGgufPy(long n, string label) => Assert.Equal(label, Converter.SizeLabel(n));
}

public class PreTokenizerHashTests
{
    [Fact]
    public void Llama3FixtureHashesToLlamaCppsLlamaBpeEntry()
    {
        string path = Path.Combine(Fixtures.ModelDir("llama3"), "hf", "tokenizer.json");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var ids = PreTokenizerHash.Encode(doc.RootElement, PreTokenizerHash.CheckText);
        Assert.Equal(128000, ids[0]); // TemplateProcessing adds <|begin_of_text|>
        Assert.Equal("0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5", PreTokenizerHash.Hash(ids));
        Assert.Equal("llama-bpe", PreTokenizerHash.Lookup(doc.RootElement, out _));
    }

    [Fact]
    public void HashFormatsIdsAsPythonPrintsAList()
    {
        // python3 -c "import hashlib; print(hashlib.sha256(str([1,2,3]).encode()).hexdigest())"
        Assert.Equal("a36b1f2c3f84522dd1005145646617d7054c0851e97c72a039c0bdfac9fa07f3", PreTokenizerHash.Hash([1, 2, 3]));
    }
}

public class RopeScalingMetadataTests
{
    private static HfConfig Config(RopeScaling? rs) =>
        Synth.Custom("llama", 1, 64, 128, 2, 1, null, 4096, 10000, 1e-5, false) with { VocabSize = 10, RopeScaling = rs };

    private static MetadataList Metadata(RopeScaling? rs) => Converter.BuildMetadata(Config(rs), OutputType.BF16, [], [], "x");

    [Fact]
    public void LinearAndYarnWriteLlamaCppsKeys()
    {
        var linear = Metadata(new RopeScaling("linear", 2, 1, 4, null));
        Assert.Contains(linear, e => e.Key == "llama.rope.scaling.type" && (string)e.Value == "linear");
        Assert.Contains(linear, e => e.Key == "llama.rope.scaling.factor" && (float)e.Value == 2f);
        var yarn = Metadata(new RopeScaling("yarn", 4, 1, 4, 32768));
        Assert.Contains(yarn, e => e.Key == "llama.rope.scaling.type" && (string)e.Value == "yarn");
        Assert.Contains(yarn, e => e.Key == "llama.rope.scaling.original_context_length" && (uint)e.Value == 32768u);
        Assert.DoesNotContain(Metadata(new RopeScaling("llama3", 8, 1, 4, 8192)), e => e.Key.Contains("scaling"));
    }

    [Fact]
    public void UnknownRopeTypeIsAnError()
    {
        var e = Assert.Throws<Infer.Runtime.UnsupportedModelException>(() => Metadata(new RopeScaling("longrope", 1, 1, 4, null)));
        Assert.Contains("rope_scaling type 'longrope' is not supported", e.Message);
    }
}
