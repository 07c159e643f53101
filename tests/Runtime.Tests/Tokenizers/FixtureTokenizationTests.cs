using System.Text.Json;

namespace Infer.Runtime.Tests.Tokenizers;

/// <summary>
/// Tokenization against the fixtures' references: transformers / Hugging Face tokenizers (SentencePiece
/// itself for llama2-spm) in reference.json, and llama.cpp's test-tokenizer-0 vectors.
/// </summary>
public class FixtureTokenizationTests
{
    public static TheoryData<string, string> PromptCases()
    {
        var data = new TheoryData<string, string>();
        foreach (var model in TokenizerFixtures.Models)
            foreach (var c in TokenizerFixtures.Reference(model).GetProperty("cases").EnumerateArray())
                data.Add(model, c.GetProperty("id").GetString()!);
        return data;
    }

    public static TheoryData<string, int> TokenizerCases()
    {
        var data = new TheoryData<string, int>();
        foreach (var model in TokenizerFixtures.Models)
        {
            int n = TokenizerFixtures.Reference(model).GetProperty("tokenizer").GetArrayLength();
            for (int i = 0; i < n; i++) data.Add(model, i);
        }
        return data;
    }

    public static TheoryData<string, int> VocabCases()
    {
        var data = new TheoryData<string, int>();
        foreach (var vocab in TokenizerFixtures.Vocabs)
        {
            int n = TokenizerFixtures.VocabTest(vocab).Inputs.Length;
            for (int i = 0; i < n; i++) data.Add(vocab, i);
        }
        return data;
    }

    private static JsonElement Case(string model, string id) =>
        TokenizerFixtures.Reference(model).GetProperty("cases").EnumerateArray().Single(c => c.GetProperty("id").GetString() == id);

    [Theory]
    [MemberData(nameof(PromptCases))]
    public void CaseInputIds(string model, string caseId)
    {
        var tok = TokenizerFixtures.Model(model);
        var c = Case(model, caseId);
        var expected = TokenizerFixtures.Ids(c.GetProperty("input_ids"));
        // a chat case's input_ids are the rendered template (which carries its own BOS) tokenized without adding specials
        var actual = c.TryGetProperty("rendered", out var rendered)
            ? tok.Encode(rendered.GetString()!, addSpecial: false, parseSpecial: true)
            : tok.Encode(c.GetProperty("prompt").GetString()!);
        Assert.Equal(expected, actual);
    }

    [Theory]
    [MemberData(nameof(TokenizerCases))]
    public void TokenizerCase(string model, int index)
    {
        var tok = TokenizerFixtures.Model(model);
        var c = TokenizerFixtures.Reference(model).GetProperty("tokenizer")[index];
        var text = c.GetProperty("text").GetString()!;
        var noSpecial = TokenizerFixtures.Ids(c.GetProperty("ids_no_special"));
        var withSpecial = TokenizerFixtures.Ids(c.GetProperty("ids_with_special"));
        var decoded = c.GetProperty("decoded").GetString()!;

        Assert.Equal(noSpecial, tok.Encode(text, addSpecial: false));
        Assert.Equal(withSpecial, tok.Encode(text, addSpecial: true));
        // "decoded" is transformers' decode(ids_no_special): special tokens kept as text (Qwen's "<|im_start|>")
        Assert.Equal(decoded, tok.Decode(noSpecial));
    }

    [Theory]
    [MemberData(nameof(VocabCases))]
    public void LlamaCppVocabVector(string vocab, int index)
    {
        var tok = TokenizerFixtures.Vocab(vocab);
        var (inputs, outputs) = TokenizerFixtures.VocabTest(vocab);
        // test-tokenizer-0 tokenizes with add_special = false, parse_special = false
        Assert.Equal(outputs[index], tok.Encode(inputs[index], addSpecial: false, parseSpecial: false));
    }
}
