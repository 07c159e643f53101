using Infer.Runtime.Grammar;

namespace Infer.Runtime.Tests.Grammar;

/// <summary>GBNF syntax: what parses and matches (hand-checked sentences), and where errors point.</summary>
public class GbnfParserTests
{
    private static void Matches(string grammar, string[] accepted, string[] rejected)
    {
        var g = GbnfGrammar.Parse(grammar);
        foreach (var s in accepted) Assert.True(g.IsMatch(s), $"should accept {Show(s)}");
        foreach (var s in rejected) Assert.False(g.IsMatch(s), $"should reject {Show(s)}");
    }

    private static string Show(string s) => System.Text.Json.JsonSerializer.Serialize(s);

    [Fact]
    public void LiteralsSequencesAndAlternatives()
    {
        Matches("""root ::= "ab" "c" | "d" """, ["abc", "d"], ["", "ab", "abcd", "dd", "c"]);
    }

    [Theory]
    [InlineData("\"a\"*", new[] { "", "a", "aaaa" }, new[] { "b", "ab" })]
    [InlineData("\"a\"+", new[] { "a", "aaa" }, new[] { "" })]
    [InlineData("\"a\"?", new[] { "", "a" }, new[] { "aa" })]
    [InlineData("\"a\"{3}", new[] { "aaa" }, new[] { "aa", "aaaa" })]
    [InlineData("\"a\"{2,}", new[] { "aa", "aaaaaaa" }, new[] { "a", "" })]
    [InlineData("\"a\"{2,4}", new[] { "aa", "aaa", "aaaa" }, new[] { "a", "aaaaa" })]
    [InlineData("\"a\"{0,2}", new[] { "", "a", "aa" }, new[] { "aaa" })]
    [InlineData("\"a\"{ 1 , 2 }", new[] { "a", "aa" }, new[] { "", "aaa" })]
    [InlineData("\"ab\"{2}", new[] { "abab" }, new[] { "abb", "ab" })] // a quantifier repeats the whole literal
    [InlineData("(\"a\" | \"bc\"){1,2} \"!\"", new[] { "a!", "bca!", "bcbc!" }, new[] { "!", "aaa!", "b!" })]
    public void Repetitions(string body, string[] accepted, string[] rejected) => Matches("root ::= " + body, accepted, rejected);

    [Fact]
    public void Escapes()
    {
        Matches("""root ::= "\x41\u00e9\U0001F600\n\t\r\\\"" [\]\[\-] """,
            ["Aé😀\n\t\r\\\"]", "Aé😀\n\t\r\\\"[", "Aé😀\n\t\r\\\"-"], ["Aé😀\n\t\r\\\"x", "Ae😀\n\t\r\\\"]"]);
    }

    [Fact]
    public void CharacterClasses()
    {
        Matches("root ::= [a-z0-9_]+", ["abc_09", "z"], ["", "A", "a-b"]);
        Matches("""root ::= [^"\\]*""", ["", "abc", "é😀 ", "\n"], ["a\"", "\\"]);
        Matches("root ::= [ぁ-ゟ]+", ["ひらがな"], ["カタカナ", "a"]);
        Matches("root ::= [-a]", ["-", "a"], ["b"]); // a leading or trailing '-' is literal
        Matches("root ::= [a-]", ["-", "a"], ["b"]);
        Matches("root ::= [\\x00-\\x1F]", ["\u0001", "\u001f"], [" "]);
        Matches("root ::= .", ["a", "😀", "\n"], ["", "ab"]);
    }

    [Fact]
    public void RulesCommentsAndLineBreaks()
    {
        const string g = """
            # a comment line
            root ::= greeting " " Name-2 # trailing comment
            greeting ::=
              "hello" | "hi"
            Name-2 ::= (
                "world"   # inside a group line breaks are free
              | "you"
            )
            """;
        Matches(g, ["hello world", "hi you"], ["hello", "hey you"]);
    }

    [Fact]
    public void ALineStartingWithBarContinuesTheRule()
    {
        Matches("root ::= \"a\"\n     | \"b\"\n  | \"c\"\nx ::= \"y\"", ["a", "b", "c"], ["y"]);
    }

    [Fact]
    public void EmptyAlternativesAndRecursion()
    {
        Matches("root ::= \"(\" root \")\" | ", ["", "()", "((()))"], ["(", "())"]);
        Matches("""
            root ::= expr
            expr ::= term ("+" term)*
            term ::= [0-9]+ | "(" expr ")"
            """, ["1", "1+2", "(1+2)+34", "((7))"], ["", "1+", "(1", "1++2"]);
    }

    [Fact]
    public void RightRecursionIsFine()
    {
        Matches("root ::= \"a\" root | \"b\"", ["b", "ab", "aaab"], ["a", ""]);
    }

    [Fact]
    public void LlamaCppJsonGrammarParses()
    {
        // llama.cpp's grammars/json.gbnf
        const string g = """
            root   ::= object
            value  ::= object | array | string | number | ("true" | "false" | "null") ws

            object ::=
              "{" ws (
                        string ":" ws value
                ("," ws string ":" ws value)*
              )? "}" ws

            array  ::=
              "[" ws (
                        value
                ("," ws value)*
              )? "]" ws

            string ::=
              "\"" (
                [^"\\\x7F\x00-\x1F] |
                "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
              )* "\"" ws

            number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

            # Optional space: by convention, applied in this grammar after literal chars when allowed
            ws ::= | " " | "\n" [ \t]{0,20}
            """;
        Matches(g, ["{}", "{\"a\": [1, 2.5e3, true, null, {\"b\": \"c\\n\\u00e9\"}]}", "{ \"é\":\"x\"}\n  "],
            ["", "[]", "{\"a\"}", "{\"a\": tru}", "{\"a\": 01}", "{\"a\":\"\u0001\"}"]);
    }

    [Theory]
    [InlineData("root ::= \"abc", 1, 10, "unterminated string literal")]
    [InlineData("root ::= [a-z", 1, 10, "unterminated character class")]
    [InlineData("root := \"a\"", 1, 6, "expected '::='")]
    [InlineData("root ::= foo", 1, 10, "undefined rule 'foo'")]
    [InlineData("root ::= \"a\"\nroot ::= \"b\"", 2, 1, "rule 'root' is defined twice (first at line 1, column 1)")]
    [InlineData("root ::= \"a\" )", 1, 14, "expected a line break or the end of the grammar after rule 'root', found ')'")]
    [InlineData("root ::= ( \"a\" ", 1, 16, "expected ')' to close the group opened at line 1, column 10")]
    [InlineData("root ::= \"\\q\"", 1, 11, "unknown escape '\\q'")]
    [InlineData("root ::= \"\\x4\"", 1, 11, "expected 2 hex digits after '\\x'")]
    [InlineData("root ::= \"\\U00110000\"", 1, 11, "beyond the last Unicode code point")]
    [InlineData("root ::= * \"a\"", 1, 10, "'*' has nothing to repeat")]
    [InlineData("root ::= \"\"+", 1, 12, "'+' has nothing to repeat")]
    [InlineData("root ::= \"a\"{3,2}", 1, 13, "maximum below its minimum")]
    [InlineData("root ::= \"a\"{1000000}", 1, 14, "too large")]
    [InlineData("root ::= \"a\"{2", 1, 15, "expected ',' or '}'")]
    [InlineData("root ::= \"a\"{x}", 1, 14, "expected a number in the repetition")]
    [InlineData("root ::= [z-a]", 1, 11, "the range z-a is reversed")]
    [InlineData("root ::= []", 1, 10, "empty character class")]
    [InlineData("root ::= [^\\x00-\\U0010FFFF]", 1, 10, "matches no character")]
    [InlineData("root ::= \"a\"\n\nitem ::= 'x'", 3, 10, "expected a line break or the end of the grammar after rule 'item', found '''")]
    [InlineData("root ::= a\na ::= \"x\" @", 2, 11, "found '@'")]
    [InlineData("root ::= \"a\"\n  ::= \"b\"", 2, 3, "expected a rule name")]
    public void SyntaxErrorsPointAtTheProblem(string grammar, int line, int column, string message)
    {
        var e = Assert.Throws<GrammarException>(() => GbnfGrammar.Parse(grammar));
        Assert.Contains(message, e.Message);
        Assert.Equal((line, column), (e.Line, e.Column));
        Assert.StartsWith($"line {line}, column {column}: ", e.Message);
    }

    [Fact]
    public void MissingRootIsAnError()
    {
        var e = Assert.Throws<GrammarException>(() => GbnfGrammar.Parse("a ::= \"x\""));
        Assert.Contains("no 'root' rule", e.Message);
        Assert.Throws<GrammarException>(() => GbnfGrammar.Parse("  # nothing\n"));
    }

    [Fact]
    public void LeftRecursionIsDetectedAndNamed()
    {
        var e = Assert.Throws<GrammarException>(() => GbnfGrammar.Parse("root ::= expr\nexpr ::= expr \"+\" term | term\nterm ::= [0-9]"));
        Assert.Equal((2, 1), (e.Line, e.Column));
        Assert.Contains("rule 'expr' is left-recursive (expr -> expr", e.Message);

        // indirectly, through a rule that may be empty
        e = Assert.Throws<GrammarException>(() => GbnfGrammar.Parse("root ::= a\na ::= b a \"x\" | \"y\"\nb ::= \"z\"?"));
        Assert.Contains("rule 'a' is left-recursive", e.Message);
        Assert.Equal((2, 1), (e.Line, e.Column));
    }

    [Fact]
    public void RepeatingSomethingThatCanBeEmptyIsAnError()
    {
        var e = Assert.Throws<GrammarException>(() => GbnfGrammar.Parse("root ::= \"a\" (\"b\"?)*"));
        Assert.Equal((1, 20), (e.Line, e.Column));
        Assert.Contains("never end", e.Message);
    }

    [Fact]
    public void ARuleThatCanNeverEndIsAnError()
    {
        var e = Assert.Throws<GrammarException>(() => GbnfGrammar.Parse("root ::= \"a\" | \"b\" loop\nloop ::= \"c\" loop"));
        Assert.Equal((2, 1), (e.Line, e.Column));
        Assert.Contains("rule 'loop' can never end", e.Message);
        // an unreachable one is harmless
        Assert.True(GbnfGrammar.Parse("root ::= \"a\"\nloop ::= \"c\" loop").IsMatch("a"));
    }

    [Fact]
    public void HostileNestingIsAnErrorNotAStackOverflow()
    {
        string deep = "root ::= " + new string('(', 100_000) + "\"a\"" + new string(')', 100_000);
        var e = Assert.Throws<GrammarException>(() => GbnfGrammar.Parse(deep));
        Assert.Contains("nested more than", e.Message);
        Assert.True(GbnfGrammar.Parse("root ::= " + new string('(', 400) + "\"a\"" + new string(')', 400)).IsMatch("a"));
        var j = Assert.Throws<JsonSchemaException>(() => JsonSchemaGrammar.Convert(
            "{\"type\": \"string\", \"pattern\": \"^" + new string('(', 50_000) + new string(')', 50_000) + "$\"}"));
        Assert.Contains("nested more than", j.Message);
        // a chain of 2000 references, each to the next
        var defs = string.Join(", ", Enumerable.Range(0, 2000).Select(i => $"\"d{i}\": {{\"$ref\": \"#/$defs/d{i + 1}\"}}"));
        string chain = $"{{\"$defs\": {{{defs}, \"d2000\": {{}}}}, \"$ref\": \"#/$defs/d0\"}}";
        j = Assert.Throws<JsonSchemaException>(() => JsonSchemaGrammar.Convert(chain));
        Assert.Contains("nested more than", j.Message);
    }
}
