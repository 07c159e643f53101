namespace Infer.Runtime.Tests.Tokenizers;

public class StreamingDecoderTests
{
    // llama2-spm byte-fallback tokens: <0xNN> is id 3 + NN
    private static int Byte(int b) => 3 + b;

    [Fact]
    public void EmojiFromByteFallbackTokensComesOutWhole()
    {
        var tok = TokenizerFixtures.Model("llama2-spm");
        var d = tok.CreateStreamingDecoder();
        // "🚀" is F0 9F 9A 80
        Assert.Equal("", d.Append(Byte(0xF0)));
        Assert.Equal("", d.Append(Byte(0x9F)));
        Assert.Equal("", d.Append(Byte(0x9A)));
        Assert.Equal("🚀", d.Append(Byte(0x80)));
        Assert.Equal("", d.Flush());
    }

    [Fact]
    public void SpmPiecesKeepTheirSpaces()
    {
        var tok = TokenizerFixtures.Model("llama2-spm");
        var d = tok.CreateStreamingDecoder();
        // fixture: "🚀 rocket" -> 29871 (▁) 243 162 157 131 696 (▁ro) 3522 (cket)
        Assert.Equal(" ", d.Append(29871));
        Assert.Equal("", d.Append(243));
        Assert.Equal("", d.Append(162));
        Assert.Equal("", d.Append(157));
        Assert.Equal("🚀", d.Append(131));
        Assert.Equal(" ro", d.Append(696));
        Assert.Equal("cket", d.Append(3522));
    }

    [Fact]
    public void ByteLevelTokensSplittingACharacter()
    {
        var tok = TokenizerFixtures.Model("llama3");
        // fixture: "🚀 rocket" -> 9468 248 222 25294; the first three tokens hold F0 9F | 9A | 80
        Assert.Equal(new byte[] { 0xF0, 0x9F }, tok.TokenBytes(9468));
        var d = tok.CreateStreamingDecoder();
        Assert.Equal("", d.Append(9468));
        Assert.Equal("", d.Append(248));
        Assert.Equal("🚀", d.Append(222));
        Assert.Equal(" rocket", d.Append(25294));
    }

    [Fact]
    public void SpanAppendMatchesStringAppend()
    {
        var tok = TokenizerFixtures.Model("llama3");
        var ids = tok.Encode("Héllo 🚀 wörld — 你好 👍🏽", addSpecial: false);
        var a = tok.CreateStreamingDecoder();
        var b = tok.CreateStreamingDecoder();
        var buffer = new char[tok.MaxTokenChars];
        var viaSpan = new System.Text.StringBuilder();
        var viaString = new System.Text.StringBuilder();
        foreach (var id in ids)
        {
            viaString.Append(a.Append(id));
            viaSpan.Append(buffer, 0, b.Append(id, buffer));
        }
        Assert.Equal(viaString.ToString(), viaSpan.ToString());
        Assert.Equal("Héllo 🚀 wörld — 你好 👍🏽", viaSpan.ToString());
    }

    [Fact]
    public void InvalidSequencesBecomeReplacementWhenTheyCannotComplete()
    {
        var tok = TokenizerFixtures.Model("llama2-spm");
        var d = tok.CreateStreamingDecoder();
        Assert.Equal("\uFFFD", d.Append(Byte(0xFF)));       // never valid in UTF-8
        Assert.Equal("", d.Append(Byte(0xF0)));
        Assert.Equal("", d.Append(Byte(0x9F)));
        Assert.Equal("\uFFFDA", d.Append(Byte('A')));       // F0 9F cannot continue with 'A'
        Assert.Equal("", d.Append(Byte(0xE2)));
        Assert.Equal("\uFFFD", d.Flush());                  // end of stream inside a character
        Assert.Equal("é", d.Append(Byte(0xC3)) + d.Append(Byte(0xA9))); // reusable after Flush
    }

    [Fact]
    public void SpecialTokensHiddenByDefault()
    {
        var tok = TokenizerFixtures.Model("qwen2");
        var hidden = tok.CreateStreamingDecoder();
        var shown = tok.CreateStreamingDecoder(removeSpecial: false);
        // fixture: "<|im_start|>user\nhi<|im_end|>" -> 151644 872 198 6023 151645
        int[] ids = [151644, 872, 198, 6023, 151645];
        Assert.Equal("user\nhi", string.Concat(ids.Select(hidden.Append)));
        Assert.Equal("<|im_start|>user\nhi<|im_end|>", string.Concat(ids.Select(shown.Append)));
    }

    [Theory]
    [MemberData(nameof(FixtureTokenizationTests.TokenizerCases), MemberType = typeof(FixtureTokenizationTests))]
    public void StreamingEqualsWholeDecode(string model, int index)
    {
        var tok = TokenizerFixtures.Model(model);
        var c = TokenizerFixtures.Reference(model).GetProperty("tokenizer")[index];
        var ids = TokenizerFixtures.Ids(c.GetProperty("ids_no_special"));
        var d = tok.CreateStreamingDecoder(removeSpecial: false);
        var streamed = string.Concat(ids.Select(d.Append)) + d.Flush();
        var expected = c.GetProperty("decoded").GetString()!;
        // SentencePiece's decode drops the dummy-prefix space of the first token; a stream keeps every space
        if (tok.AddSpacePrefix && ids.Length > 0 && tok.TokenBytes(ids[0]) is [(byte)' ', ..]) expected = " " + expected;
        Assert.Equal(expected, streamed);
    }
}
