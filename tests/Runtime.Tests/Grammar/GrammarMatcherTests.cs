using Infer.Runtime.Grammar;
using Infer.Runtime.Sampling;

namespace Infer.Runtime.Tests.Grammar;

/// <summary>The token-level matcher on a hand-made vocabulary whose every answer is worked out by hand.</summary>
public class GrammarMatcherTests
{
    // id: bytes
    private static readonly byte[]?[] Tokens =
    [
        "a"u8.ToArray(),            // 0
        "b"u8.ToArray(),            // 1
        "ab"u8.ToArray(),           // 2
        "{"u8.ToArray(),            // 3
        "\""u8.ToArray(),           // 4
        "\":"u8.ToArray(),          // 5
        [0xC3],                     // 6: first byte of é
        [0xA9],                     // 7: second byte of é
        [0xC3, 0xA9],               // 8: é
        [0xA9, (byte)'x'],          // 9: end of é, then x
        "x"u8.ToArray(),            // 10
        [0xFF],                     // 11: never UTF-8
        [0xC0, 0x80],               // 12: overlong NUL
        [0xED, 0xA0, 0x80],         // 13: a surrogate
        [0xF0, 0x9F],               // 14: first half of 😀
        [0x98, 0x80],               // 15: second half of 😀
        [0xF0, 0x9F, 0x98, 0x80],   // 16: 😀
        null,                       // 17: end of generation
        null,                       // 18: a control token
        [0xC3, 0xA8],               // 19: è
        " "u8.ToArray(),            // 20
    ];

    private const int Eog = 17, Control = 18;

    private static readonly GrammarVocabulary Vocab = new(Tokens, [Eog]);

    private static GrammarMatcher Matcher(string grammar) => GrammarConstraint.Create(GbnfGrammar.Parse(grammar), Vocab).CreateMatcher();

    private static int[] Allowed(GrammarMatcher m, int extraRows = 0)
    {
        var logits = new float[Tokens.Length + extraRows];
        int count = m.Mask(logits);
        var allowed = Enumerable.Range(0, logits.Length).Where(i => logits[i] == 0).ToArray();
        Assert.Equal(allowed.Length, count);
        return allowed;
    }

    private static void Feed(GrammarMatcher m, params int[] tokens)
    {
        foreach (int t in tokens) m.Accept(t);
    }

    [Fact]
    public void ACharacterSplitAcrossTokensContinuesInTheNextToken()
    {
        var m = Matcher("root ::= \"é\" \"x\"");
        Assert.Equal([6, 8], Allowed(m));              // [C3] or é; not è, not a stray A9
        m.Accept(6);
        Assert.Equal([7, 9], Allowed(m));              // A9 completes é, and A9 x completes the sentence too
        Assert.False(m.TryAccept(Eog));
        m.Accept(9);
        Assert.True(m.CanEnd);
        Assert.False(m.CanContinue);
        Assert.Equal([Eog], Allowed(m));

        m.Reset();
        Assert.False(m.TryAccept(19));                  // è: the right first byte, the wrong character
        Feed(m, 8, 10);
        Assert.Equal([Eog], Allowed(m));
    }

    [Fact]
    public void AnyCharacterAllowsValidUtf8OnlyAndEndOnlyAfterACompleteCharacter()
    {
        var m = Matcher("root ::= .+");
        // not: 7 (stray continuation), 11 (FF), 12 (overlong), 13 (surrogate), 15 (continuations), EOG (nothing yet), 18
        Assert.Equal([0, 1, 2, 3, 4, 5, 6, 8, 10, 14, 16, 19, 20], Allowed(m));
        m.Accept(14);
        Assert.Equal([7, 15], Allowed(m));              // only continuation bytes (A9 leaves one more to go); no end mid-character
        m.Accept(15);
        Assert.Contains(Eog, Allowed(m));
        Assert.DoesNotContain(Control, Allowed(m));
    }

    [Fact]
    public void TokensSpanSeveralGrammarSymbols()
    {
        var m = Matcher("root ::= \"\\\"\" [ab]+ \"\\\"\" \":\"");
        Assert.Equal([4], Allowed(m));                  // '":' would need a letter between the quotes
        m.Accept(4);
        Assert.Equal([0, 1, 2], Allowed(m));
        m.Accept(2);
        Assert.Equal([0, 1, 2, 4, 5], Allowed(m));      // '":' closes the string and adds the colon in one token
        m.Accept(5);
        Assert.Equal([Eog], Allowed(m));
    }

    [Fact]
    public void EndOfGenerationOnlyWhereTheGrammarMayEnd()
    {
        var m = Matcher("root ::= \"a\" \"b\"?");
        Assert.False(m.TryAccept(Eog));
        m.Accept(0);
        Assert.Equal([1, Eog], Allowed(m));
        Assert.True(m.TryAccept(Eog));
        Assert.True(m.TryAccept(Eog));                  // it stays complete
        Assert.Equal([1, Eog], Allowed(m));
    }

    [Fact]
    public void ControlTokensAreNeverAllowed()
    {
        var m = Matcher("root ::= .*");
        Assert.DoesNotContain(Control, Allowed(m));
        Assert.False(m.TryAccept(Control));
        Assert.False(m.TryAccept(-1));
        Assert.False(m.TryAccept(Tokens.Length));
    }

    [Fact]
    public void RowsPastTheVocabularyAreMasked()
    {
        var m = Matcher("root ::= \"a\"");
        Assert.Equal([0], Allowed(m, extraRows: 70));
    }

    [Fact]
    public void NoPossibleTokenIsATypedError()
    {
        var m = Matcher("root ::= \"z\"");
        Assert.Throws<GrammarException>(() => m.Mask(new float[Tokens.Length]));
        var e = Assert.Throws<GrammarException>(() => m.Accept(0));
        Assert.Contains("token 0", e.Message);
    }

    [Fact]
    public void CloneIsIndependent()
    {
        var m = Matcher("root ::= \"a\" \"b\"");
        var c = m.Clone();
        c.Accept(0);
        Assert.Equal([0, 2], Allowed(m));
        Assert.Equal([1], Allowed(c));
    }

    [Fact]
    public void MatchersShareTheConstraintButNotTheirPosition()
    {
        var constraint = GrammarConstraint.Create(GbnfGrammar.Parse("root ::= \"ab\"+"), Vocab);
        var a = constraint.CreateMatcher();
        var b = constraint.CreateMatcher();
        a.Accept(2);
        Assert.Equal([0, 2, Eog], Allowed(a));
        Assert.Equal([0, 2], Allowed(b));
        Assert.True(constraint.CacheStatistics.CachedMasks >= 2);
    }

    [Fact]
    public void TheMaskCacheIsBoundedAndStaysCorrectWhenItEvicts()
    {
        // four masks fit; the counter grammar visits twenty distinct states
        var constraint = GrammarConstraint.Create(GbnfGrammar.Parse("root ::= [ab]{20}"), Vocab, maskCacheBytes: 1);
        for (int round = 0; round < 2; round++)
        {
            var m = constraint.CreateMatcher();
            for (int i = 0; i < 20; i++)
            {
                Assert.Equal(i < 19 ? [0, 1, 2] : new[] { 0, 1 }, Allowed(m));
                m.Accept(0);
            }
            Assert.Equal([Eog], Allowed(m));
        }
        Assert.Equal(4, constraint.CacheStatistics.CachedMasks);
    }

    [Fact]
    public void SamplerMasksFirstThenAdvancesTheGrammar()
    {
        var grammar = GrammarConstraint.Create(GbnfGrammar.Parse("root ::= \"{\" [ab]{2} \"\\\"\""), Vocab);
        foreach (float temperature in new[] { 0f, 0.8f })
        {
            var s = new Sampler(Tokens.Length, new SamplerOptions { Temperature = temperature, Grammar = grammar, Seed = 7 });
            for (int round = 0; round < 2; round++)
            {
                var text = new List<byte>();
                while (true)
                {
                    // the unconstrained favourite is always the control token, then x
                    var logits = new float[Tokens.Length];
                    logits[Control] = 10;
                    logits[10] = 9;
                    int t = s.Sample(logits);
                    if (t == Eog) break;
                    text.AddRange(Tokens[t]!);
                    Assert.True(text.Count <= 4);
                }
                string result = System.Text.Encoding.UTF8.GetString([.. text]);
                Assert.Matches("^\\{[ab]{2}\"$", result);
                s.Reset(); // a new reply starts the grammar over
            }
        }
    }

    [Fact]
    public void SteadyStateMaskAndAcceptDoNotAllocate()
    {
        var m = Matcher("root ::= (\"{\" \"\\\"\" [ab]* \"\\\":\" \"x\"? )*");
        var logits = new float[Tokens.Length];
        int[] cycle = [3, 4, 0, 2, 1, 5, 10];
        void Run()
        {
            foreach (int t in cycle)
            {
                m.Mask(logits);
                m.Accept(t);
            }
        }
        Run(); // warm-up: states, transitions and masks are built
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 50; i++) Run();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void MatchersOnManyThreadsShareOneConstraint()
    {
        var constraint = GrammarConstraint.Create(GbnfGrammar.Parse("root ::= (\"{\" [ab]{0,30} \"\\\"\" \"x\"?)+"), Vocab, maskCacheBytes: 64);
        int[] text = [3, 0, 2, 1, 0, 4, 10, 3, 2, 2, 2, 1, 4, 3, 4, 10];
        int[][] Walk()
        {
            var m = constraint.CreateMatcher();
            var seen = new List<int[]>();
            foreach (int t in text)
            {
                seen.Add(Allowed(m));
                m.Accept(t);
            }
            return [.. seen];
        }
        var expected = Walk();
        var results = new int[8][][];
        Parallel.For(0, results.Length, i => { for (int r = 0; r < 20; r++) results[i] = Walk(); });
        foreach (var r in results) Assert.Equal(expected, r);
    }
}
