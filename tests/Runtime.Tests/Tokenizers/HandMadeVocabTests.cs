using Infer.Runtime.Gguf;
using Infer.Runtime.Tokenizers;

namespace Infer.Runtime.Tests.Tokenizers;

/// <summary>Tiny hand-made vocabularies whose tokenizations are worked out by hand, and metadata errors.</summary>
public sealed class HandMadeVocabTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("infer-tok-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private Tokenizer Load(VocabGguf v, string name = "v.gguf")
    {
        using var f = GgufFile.Open(v.Write(_dir, name));
        return Tokenizer.FromGguf(f);
    }

    private ModelFormatException Rejects(VocabGguf v, string mustMention)
    {
        var e = Assert.ThrowsAny<ModelFormatException>(() => Load(v, "bad.gguf"));
        Assert.Contains(mustMention, e.Message);
        Assert.Contains("bad.gguf", e.Message);
        return e;
    }

    // TinySpm ids: <unk> 0, <s> 1, </s> 2, <0xNN> 3 + NN, ▁ 259, a 260, b 261, ab 262, ▁a 263, ▁ab 264, ▁b 265, <tool> 266, <|im_end|> 267
    [Theory]
    [InlineData("ab", new[] { 264 })]            // ▁ a b: "ab" (-4) beats "▁a" (-5), then "▁ab"
    [InlineData("ba", new[] { 265, 260 })]       // ▁b, then "▁ba" is no piece
    [InlineData("a c", new[] { 263, 259, 102 })] // "c" is not a piece: byte fallback <0x63>
    [InlineData("😀", new[] { 259, 243, 162, 155, 131 })] // F0 9F 98 80 as byte tokens
    [InlineData("", new int[0])]
    public void SentencePieceMergesByScore(string text, int[] expected)
    {
        var tok = Load(VocabGguf.TinySpm());
        Assert.Equal(TokenizerKind.SentencePiece, tok.Kind);
        Assert.True(tok.AddBos);
        Assert.False(tok.AddEos);
        Assert.True(tok.AddSpacePrefix);
        Assert.Equal(expected, tok.Encode(text, addSpecial: false));
        Assert.Equal([1, .. expected], tok.Encode(text));
    }

    [Fact]
    public void SentencePieceSplitsUnusedPiecesBack()
    {
        // make "▁ab" (264) unused: "ab" still merges with "▁" into it, but SentencePiece then splits it back into "▁" + "ab"
        var types = Enumerable.Repeat(1, 268).ToArray();
        types[0] = 2;
        types[1] = types[2] = 3;
        for (int b = 0; b < 256; b++) types[3 + b] = 6;
        types[264] = 5;
        types[266] = 4;
        types[267] = 3;
        var tok = Load(VocabGguf.TinySpm().Ints(Tokenizer.TokenTypeKey, types));
        Assert.Equal([259, 262], tok.Encode("ab", addSpecial: false));
    }

    [Fact]
    public void SentencePieceSpecialTokens()
    {
        var tok = Load(VocabGguf.TinySpm());
        // a space prefix goes before the first fragment and after each special token
        Assert.Equal([263, 266, 265, 267], tok.Encode("a<tool>b<|im_end|>", addSpecial: false));
        // without special parsing the control token is text; the user-defined one still matches
        int[] imEndAsBytes = [.. "<|im_end|>".Select(c => 3 + c)];
        Assert.Equal([263, 266, 265, .. imEndAsBytes], tok.Encode("a<tool>b<|im_end|>", addSpecial: false, parseSpecial: false));
    }

    [Fact]
    public void SentencePieceDecode()
    {
        var tok = Load(VocabGguf.TinySpm());
        Assert.Equal("ab", tok.Decode([1, 264], removeSpecial: true));
        Assert.Equal("<s> ab", tok.Decode([1, 264]));
        Assert.Equal("ab a", tok.Decode([264, 263]));
        Assert.Equal(" ab", tok.Decode([259, 264]));
        Assert.Equal("😀", tok.Decode([259, 243, 162, 155, 131]));
        Assert.Equal("\uFFFD", tok.Decode([3 + 0xF0, 3 + 0x9F]));
        Assert.Equal(new byte[] { 0xF0 }, tok.TokenBytes(3 + 0xF0));
        Assert.Equal(" ab"u8.ToArray(), tok.TokenBytes(264));
        Assert.Equal("<|im_end|>"u8.ToArray(), tok.TokenBytes(267));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([268]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.TokenBytes(-1));
    }

    [Fact]
    public void SentencePieceWithoutSpacePrefix()
    {
        var tok = Load(VocabGguf.TinySpm().Bool(Tokenizer.AddSpacePrefixKey, false).Bool(Tokenizer.AddBosKey, false));
        Assert.False(tok.AddSpacePrefix);
        Assert.Equal([262], tok.Encode("ab"));
        Assert.Equal(" ab", tok.Decode([264]));
    }

    [Fact]
    public void SentencePieceEndOfGeneration()
    {
        var tok = Load(VocabGguf.TinySpm());
        Assert.Equal(1, tok.BosId);
        Assert.Equal(2, tok.EosId);
        Assert.Equal(0, tok.UnkId);
        Assert.Equal(267, tok.EotId); // "<|im_end|>" found by its text
        Assert.Equal([2, 267], tok.EndOfGenerationIds);
        Assert.True(tok.IsEndOfGeneration(2));
        Assert.False(tok.IsEndOfGeneration(1));
    }

    // TinyBpe ids: byte b -> b (its GPT-2 character), Ġa 256, ab 257, Ġab 258, <|endoftext|> 259; merges: "Ġ a" 0, "a b" 1, "Ġa b" 2
    [Theory]
    [InlineData(" ab", new[] { 258 })]                // Ġ a b -> Ġa b -> Ġab
    [InlineData("ab", new[] { 257 })]
    [InlineData("a b", new[] { 97, 32, 98 })]         // words "a", " b"; no merge makes "Ġb"
    [InlineData("ab ab", new[] { 257, 258 })]
    [InlineData("é", new[] { 0xC3, 0xA9 })]           // UTF-8 bytes as byte characters
    [InlineData("x<|endoftext|>", new[] { 120, 259 })]
    public void BytePairMergesByRank(string text, int[] expected)
    {
        var tok = Load(VocabGguf.TinyBpe());
        Assert.Equal(TokenizerKind.BytePairEncoding, tok.Kind);
        Assert.Equal("gpt-2", tok.Pre);
        Assert.False(tok.AddBos);
        Assert.Equal(expected, tok.Encode(text));
        Assert.Equal(text, tok.Decode(expected));
    }

    [Fact]
    public void BytePairSpecialTokenAsText()
    {
        var tok = Load(VocabGguf.TinyBpe());
        int[] expected = [120, .. "<|endoftext|>".Select(c => (int)c)];
        Assert.Equal(expected, tok.Encode("x<|endoftext|>", parseSpecial: false));
        Assert.True(tok.IsEndOfGeneration(259));
        Assert.Equal("x", tok.Decode([120, 259], removeSpecial: true));
        Assert.Equal("x<|endoftext|>", tok.Decode([120, 259]));
    }

    [Fact]
    public void LlamaBpePreAddsBosByDefault()
    {
        var tok = Load(VocabGguf.TinyBpe("llama-bpe"));
        Assert.True(tok.AddBos);
        Assert.Equal([259, 257], tok.Encode("ab"));
        Assert.Equal([257], tok.Encode("ab", addSpecial: false));
        var noBos = Load(VocabGguf.TinyBpe("llama-bpe").Bool(Tokenizer.AddBosKey, false), "nobos.gguf");
        Assert.Equal([257], noBos.Encode("ab"));
    }

    [Fact]
    public void MissingPreMeansDefault()
    {
        var tok = Load(VocabGguf.TinyBpe().Remove(Tokenizer.PreKey));
        Assert.Equal("default", tok.Pre);
        Assert.Equal([258], tok.Encode(" ab"));
    }

    [Fact]
    public void UnknownTokenizerModel() =>
        Assert.IsType<UnsupportedModelException>(Rejects(VocabGguf.TinyBpe().String(Tokenizer.ModelKey, "bert"), Tokenizer.ModelKey));

    [Fact]
    public void MissingTokenizerModel() => Rejects(VocabGguf.TinyBpe().Remove(Tokenizer.ModelKey), Tokenizer.ModelKey);

    [Fact]
    public void UnknownPreTokenizer()
    {
        var e = Rejects(VocabGguf.TinyBpe("no-such-pre"), Tokenizer.PreKey);
        Assert.IsType<UnsupportedModelException>(e);
        Assert.Contains("no-such-pre", e.Message);
    }

    [Fact]
    public void MissingTokens() => Rejects(VocabGguf.TinySpm().Remove(Tokenizer.TokensKey), Tokenizer.TokensKey);

    [Fact]
    public void DuplicateToken() =>
        Rejects(VocabGguf.TinyBpe().Strings(Tokenizer.MergesKey).Strings(Tokenizer.TokensKey, "a", "b", "a"), Tokenizer.TokensKey);

    [Fact]
    public void ShortScores() => Rejects(VocabGguf.TinySpm().Floats(Tokenizer.ScoresKey, 0f, 1f), Tokenizer.ScoresKey);

    [Fact]
    public void ShortTokenTypes() => Rejects(VocabGguf.TinySpm().Ints(Tokenizer.TokenTypeKey, 1, 1), Tokenizer.TokenTypeKey);

    [Fact]
    public void MissingMerges() => Rejects(VocabGguf.TinyBpe().Remove(Tokenizer.MergesKey), Tokenizer.MergesKey);

    [Fact]
    public void MergeWithoutSpace() => Rejects(VocabGguf.TinyBpe().Strings(Tokenizer.MergesKey, "a b", "ab"), Tokenizer.MergesKey);

    /// <summary>
    /// As in llama.cpp, merges are looked up by their text while encoding: one whose parts ("q zz": zz is no token) or product
    /// ("b c": no "bc") are not in the vocabulary loads, and never applies.
    /// </summary>
    [Theory]
    [InlineData("ab", new[] { 257 })]
    [InlineData("qzz", new[] { 113, 122, 122 })]
    [InlineData("bc", new[] { 98, 99 })]
    public void MergesOfUnknownTokensNeverApply(string text, int[] expected)
    {
        var tok = Load(VocabGguf.TinyBpe().Strings(Tokenizer.MergesKey, "a b", "q zz", "b c"), "inert-merges.gguf");
        Assert.Equal(expected, tok.Encode(text));
    }

    [Fact]
    public void BosOutOfRange() => Rejects(VocabGguf.TinySpm().UInt32(Tokenizer.BosKey, 100000), Tokenizer.BosKey);

    [Fact]
    public void AddBosWithoutBos()
    {
        // a BPE vocabulary smaller than llama.cpp's default BOS id (11) has no BOS unless the metadata names one
        var v = new VocabGguf()
            .String(Tokenizer.ModelKey, "gpt2")
            .Strings(Tokenizer.TokensKey, "a", "b")
            .Strings(Tokenizer.MergesKey)
            .Bool(Tokenizer.AddBosKey, true);
        Rejects(v, Tokenizer.AddBosKey);
    }
}
