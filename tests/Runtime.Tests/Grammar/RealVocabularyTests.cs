using System.Diagnostics;
using System.Text;
using Infer.Runtime.Grammar;
using Infer.Runtime.Tests.Tokenizers;
using Infer.Runtime.Tokenizers;

namespace Infer.Runtime.Tests.Grammar;

/// <summary>
/// The trie-walk mask on the fixtures' real vocabularies (llama3: byte-level BPE, 128256 tokens with multi-character
/// and byte tokens; llama2-spm: SentencePiece with ▁ spaces and &lt;0xNN&gt; byte tokens) against the plain reference:
/// trying every token on its own, byte by byte.
/// </summary>
public class RealVocabularyTests
{
    private const string JsonGrammar = """
        root   ::= " "? value
        value  ::= object | array | string | number | ("true" | "false" | "null") ws
        object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
        array  ::= "[" ws ( value ("," ws value)* )? "]" ws
        string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
        number ::= "-"? ([0] | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,16})? ws
        ws     ::= | " " | "\n" [ \t]{0,20}
        """;

    private const string Text = "{\"name\": \"Ünïcødé 日本語 😀\", \"n\": [1, 2.5, -3e4, {\"deep\": null}], \"ok\": true}";

    public static TheoryData<string> Models => new() { "llama3", "llama2-spm" };

    private static bool[] Reference(GrammarMatcher m, int vocab)
    {
        var allowed = new bool[vocab];
        for (int t = 0; t < vocab; t++) allowed[t] = m.Clone().TryAccept(t);
        return allowed;
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void MaskEqualsTryingEveryTokenAlongAJsonText(string model)
    {
        var tok = TokenizerFixtures.Model(model);
        var constraint = GrammarConstraint.Create(GbnfGrammar.Parse(JsonGrammar), tok);
        var m = constraint.CreateMatcher();
        var ids = tok.Encode(Text, addSpecial: false);
        var logits = new float[tok.VocabSize];
        // every prefix of the text's own tokenization, and two states inside a split character
        for (int step = 0; step <= ids.Length; step++)
        {
            Array.Clear(logits);
            int count = m.Mask(logits);
            var reference = Reference(m, tok.VocabSize);
            for (int t = 0; t < tok.VocabSize; t++)
                Assert.True(reference[t] == (logits[t] == 0), $"{model} step {step}: token {t} '{tok.TokenText(t)}' reference {reference[t]}");
            Assert.Equal(reference.Count(x => x), count);
            if (step == ids.Length) break;
            Assert.True(m.IsAllowed(ids[step]), $"the text's own token {ids[step]} '{tok.TokenText(ids[step])}' at step {step}");
            m.Accept(ids[step]);
        }
        Assert.True(m.CanEnd);
        foreach (int eog in tok.EndOfGenerationIds) Assert.True(m.IsAllowed(eog));
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void ControlTokensAreNeverAllowedEvenWhereTheirTextWouldMatch(string model)
    {
        var tok = TokenizerFixtures.Model(model);
        var m = GrammarConstraint.Create(GbnfGrammar.Parse("root ::= .*"), tok).CreateMatcher();
        var logits = new float[tok.VocabSize];
        m.Mask(logits);
        int controls = 0;
        for (int t = 0; t < tok.VocabSize; t++)
        {
            var type = tok.GetTokenType(t);
            bool special = type is TokenType.Control or TokenType.Unknown or TokenType.Unused;
            if (special && !tok.IsEndOfGeneration(t))
            {
                controls++;
                Assert.True(float.IsNegativeInfinity(logits[t]), $"{t} '{tok.TokenText(t)}'");
            }
        }
        Assert.True(controls > 0);
        foreach (int eog in tok.EndOfGenerationIds) Assert.Equal(0, logits[eog]); // ".*" may end at once
    }

    [Fact]
    public void ByteTokensSpellACharacterAcrossTokens()
    {
        // SentencePiece byte fallback: 😀 is <0xF0><0x9F><0x98><0x80>; the grammar sees the bytes, not the pieces
        var tok = TokenizerFixtures.Model("llama2-spm");
        var m = GrammarConstraint.Create(GbnfGrammar.Parse("root ::= \"😀\" | \"😁\""), tok).CreateMatcher();
        foreach (var piece in new[] { "<0xF0>", "<0x9F>", "<0x98>" })
        {
            Assert.True(tok.TryGetTokenId(piece, out int id));
            Assert.False(m.CanEnd);
            m.Accept(id);
        }
        Assert.True(tok.TryGetTokenId("<0x82>", out int wrong));
        Assert.False(m.IsAllowed(wrong)); // 😂 is U+1F602
        Assert.True(tok.TryGetTokenId("<0x81>", out int last));
        m.Accept(last);
        Assert.True(m.CanEnd);
    }

    [Fact]
    public void AMaskOnTheLlama3VocabularyIsCheapOnceCached()
    {
        // not a benchmark (the machine is shared): a loose bound that catches an accidental per-token vocabulary walk
        var tok = TokenizerFixtures.Model("llama3");
        var constraint = GrammarConstraint.Create(GbnfGrammar.Parse(JsonGrammar), tok);
        var m = constraint.CreateMatcher();
        foreach (int t in tok.Encode("{\"a\": \"", addSpecial: false)) m.Accept(t);
        var logits = new float[tok.VocabSize];
        var sw = Stopwatch.StartNew();
        m.Mask(logits);
        double first = sw.Elapsed.TotalMilliseconds;
        sw.Restart();
        for (int i = 0; i < 100; i++) m.Mask(logits);
        double cached = sw.Elapsed.TotalMilliseconds / 100;
        Assert.True(cached < 2, $"cached mask {cached:F3} ms (first {first:F1} ms, {constraint.Vocabulary.NodeCount} trie nodes)");
    }

    [Fact]
    public void TheVocabularyTrieHoldsEveryGrammarTokenOnce()
    {
        var tok = TokenizerFixtures.Model("llama3");
        var v = GrammarVocabulary.FromTokenizer(tok);
        Assert.Same(v, GrammarVocabulary.FromTokenizer(tok));
        var seen = new HashSet<int>();
        var path = new List<byte>();
        for (int j = 0; j < v.NodeCount; j++)
        {
            path.RemoveRange(v.NodeDepth[j] - 1, path.Count - (v.NodeDepth[j] - 1));
            path.Add(v.NodeByte[j]);
            for (int k = 0; k < v.NodeTokenCount[j]; k++)
            {
                int id = v.SortedTokens[v.NodeFirstToken[j] + k];
                Assert.True(seen.Add(id));
                Assert.Equal(tok.TokenBytes(id), path.ToArray());
            }
        }
        int expected = Enumerable.Range(0, tok.VocabSize).Count(v.IsGrammarToken);
        Assert.Equal(expected, seen.Count);
        Assert.True(expected > 128000 - 300, $"{expected}");
        Assert.Equal(Encoding.UTF8.GetBytes(" the"), v.Bytes(tok.Encode(" the", addSpecial: false).Single()).ToArray());
    }
}
