using System.Diagnostics;
using System.Text;

namespace Infer.Runtime.Tests.Tokenizers;

public class TokenizerMetadataAndSpeedTests
{
    [Fact]
    public void Llama3Metadata()
    {
        var tok = TokenizerFixtures.Model("llama3");
        Assert.Equal(128256, tok.VocabSize);
        Assert.Equal("llama-bpe", tok.Pre);
        Assert.Equal(128000, tok.BosId);
        Assert.Equal(128009, tok.EosId);
        Assert.True(tok.AddBos);   // no add_bos_token key: llama.cpp's default for llama-bpe
        Assert.False(tok.AddEos);
        Assert.True(tok.IsEndOfGeneration(128009)); // <|eot_id|>
        Assert.True(tok.IsEndOfGeneration(128001)); // <|end_of_text|>
        Assert.False(tok.IsEndOfGeneration(128006)); // <|start_header_id|>
        Assert.False(tok.IsEndOfGeneration(13));
    }

    [Theory]
    [InlineData("qwen2")]
    [InlineData("qwen3")]
    public void QwenMetadata(string model)
    {
        var tok = TokenizerFixtures.Model(model);
        Assert.Equal(151936, tok.VocabSize);
        Assert.Equal("qwen2", tok.Pre);
        Assert.False(tok.AddBos);
        Assert.Equal(151645, tok.EosId);
        Assert.Equal(151643, tok.PadId);
        Assert.True(tok.IsEndOfGeneration(151645)); // <|im_end|>
        Assert.True(tok.IsEndOfGeneration(151643)); // <|endoftext|>
        Assert.False(tok.IsEndOfGeneration(151644)); // <|im_start|>
        Assert.False(tok.IsEndOfGeneration(128247)); // "</s>" is an ordinary BPE token in Qwen's vocabulary
    }

    [Fact]
    public void Llama2Metadata()
    {
        var tok = TokenizerFixtures.Model("llama2-spm");
        Assert.Equal(Infer.Runtime.Tokenizers.TokenizerKind.SentencePiece, tok.Kind);
        Assert.Equal(32000, tok.VocabSize);
        Assert.Equal((1, 2), (tok.BosId, tok.EosId));
        Assert.True(tok.AddBos);
        Assert.True(tok.AddSpacePrefix);
        Assert.Equal([2], tok.EndOfGenerationIds);
    }

    [Fact]
    public void QwenNormalizesToNfc()
    {
        // fixture: "á" written as a + U+0301 is one token (1953) for Qwen, two for Llama 3
        Assert.Equal([1953], TokenizerFixtures.Model("qwen2").Encode("a\u0301"));
        Assert.Equal([1953], TokenizerFixtures.Model("qwen2").Encode("\u00E1"));
        Assert.Equal([64, 54939], TokenizerFixtures.Model("llama3").Encode("a\u0301", addSpecial: false));
    }

    private static readonly string[] LongInputKinds =
        ["letters", "spaces", "digits", "newlines", "emoji", "mixed", "punctuation", "spaces-then-symbol"];

    public static TheoryData<string, string> LongInputs()
    {
        var data = new TheoryData<string, string>();
        foreach (var model in TokenizerFixtures.Models)
            foreach (var kind in LongInputKinds)
                data.Add(model, kind);
        return data;
    }

    public static TheoryData<string, string> LongVocabInputs()
    {
        var data = new TheoryData<string, string>();
        foreach (var vocab in TokenizerFixtures.Vocabs)
            foreach (var kind in LongInputKinds)
                data.Add(vocab, kind);
        return data;
    }

    private static string LongInput(string kind, int length)
    {
        var unit = kind switch
        {
            "letters" => "a",
            "spaces" => " ",
            "digits" => "7",
            "newlines" => "\n \n",
            "emoji" => "🚀",
            "punctuation" => "!?",
            _ => "Hello world! Héllo wörld — 你好，世界 🌍 1234567 tabs\tand\nnewlines   spaces. def fib(n): return n ",
        };
        if (kind == "spaces-then-symbol") return new string(' ', length) + "\u2460"; // a long run before a non-space
        var sb = new StringBuilder(length + unit.Length);
        while (sb.Length < length) sb.Append(unit);
        return sb.ToString();
    }

    /// <summary>100 KB of one repeated character class must tokenize quickly (no quadratic merging or backtracking) and round-trip.</summary>
    [Theory]
    [MemberData(nameof(LongInputs))]
    public void HundredKilobytesTokenizeQuicklyAndRoundTrip(string model, string kind) =>
        TokenizesQuicklyAndRoundTrips(TokenizerFixtures.Model(model), model, kind);

    [Theory]
    [MemberData(nameof(LongVocabInputs))]
    public void HundredKilobytesWithEveryPreTokenizer(string vocab, string kind) =>
        TokenizesQuicklyAndRoundTrips(TokenizerFixtures.Vocab(vocab), vocab, kind);

    private static void TokenizesQuicklyAndRoundTrips(Infer.Runtime.Tokenizers.Tokenizer tok, string name, string kind)
    {
        var text = LongInput(kind, 100_000);
        tok.Encode("warm up " + kind);
        var sw = Stopwatch.StartNew();
        var ids = tok.Encode(text, addSpecial: false);
        var seconds = sw.Elapsed.TotalSeconds;
        // typically well under 0.5 s; a quadratic path would take minutes
        Assert.True(seconds < 10, $"{name}/{kind}: {seconds:F2} s for 100 KB");
        Assert.Equal(text, tok.Decode(ids));
    }

    [Theory]
    [InlineData("llama2-spm")]
    [InlineData("llama3")]
    [InlineData("qwen2")]
    public void FewKilobytesTakeMilliseconds(string model)
    {
        var tok = TokenizerFixtures.Model(model);
        var text = LongInput("mixed", 4_000);
        tok.Encode(text);
        var best = double.MaxValue;
        for (int i = 0; i < 10; i++)
        {
            var sw = Stopwatch.StartNew();
            tok.Encode(text);
            best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
        }
        // typically 1-2 ms; the bound leaves room for a machine busy with other work
        Assert.True(best < 100, $"{model}: {best:F2} ms for 4 KB");
    }
}
