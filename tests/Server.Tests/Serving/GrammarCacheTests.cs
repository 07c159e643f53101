using System.Text.Json;
using Infer.Runtime.Gguf;
using Infer.Runtime.Grammar;
using Infer.Runtime.Serving;
using Infer.Runtime.Tokenizers;
using Infer.Tests;

namespace Infer.Server.Tests.Serving;

/// <summary>One constraint per distinct grammar, shared; the least recently used one leaves first.</summary>
public sealed class GrammarCacheTests : IDisposable
{
    private readonly GgufFile _file = GgufFile.Open(Fixtures.Model("llama2-spm", "q8_0"));
    private readonly Tokenizer _tokenizer;

    public GrammarCacheTests() => _tokenizer = Tokenizer.FromGguf(_file);

    public void Dispose() => _file.Dispose();

    private static JsonElement Json(string text) => JsonDocument.Parse(text).RootElement;

    [Fact]
    public void EqualGrammarsShareOneConstraint()
    {
        var cache = new GrammarCache(_tokenizer);
        var a = cache.JsonSchema(Json("""{"type": "object", "properties": {"x": {"type": "integer"}}}"""));
        // other spacing and annotations, same grammar
        var b = cache.JsonSchema(Json("""{ "title": "T", "type":"object","properties":{"x":{"type":"integer", "description": "d"}} }"""));
        Assert.Same(a, b);
        Assert.Same(cache.JsonObject(), cache.Gbnf(JsonSchemaGrammar.AnyObject));
        Assert.NotSame(a, cache.JsonObject());
        Assert.Equal(2, cache.Count);
        Assert.Same(GrammarCache.For(_tokenizer), GrammarCache.For(_tokenizer));
    }

    [Fact]
    public void TheLeastRecentlyUsedGrammarLeavesFirst()
    {
        var cache = new GrammarCache(_tokenizer, capacity: 2);
        var a = cache.Gbnf("root ::= \"a\"");
        var b = cache.Gbnf("root ::= \"b\"");
        Assert.Same(a, cache.Gbnf("root ::= \"a\"")); // a is now the most recent
        cache.Gbnf("root ::= \"c\"");                  // b leaves
        Assert.Equal(2, cache.Count);
        Assert.Same(a, cache.Gbnf("root ::= \"a\""));
        Assert.NotSame(b, cache.Gbnf("root ::= \"b\""));
    }

    [Fact]
    public void ErrorsNameTheProblem()
    {
        var cache = new GrammarCache(_tokenizer);
        var e = Assert.Throws<JsonSchemaException>(() => cache.JsonSchema(Json("""{"type": "string", "format": "email"}""")));
        Assert.Equal("format", e.Keyword);
        Assert.NotNull(cache.JsonSchema(Json("""{"type": "string", "format": "email"}"""), unknownFormatsAsStrings: true));
        var g = Assert.Throws<GrammarException>(() => cache.Gbnf("root ::= (\"a\""));
        Assert.True(g.Line > 0);
        Assert.Equal(1, cache.Count);
    }
}
