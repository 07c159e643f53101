using BenchmarkDotNet.Attributes;
using Infer.Runtime.Gguf;
using Infer.Runtime.Grammar;
using Infer.Runtime.Tokenizers;

namespace Infer.Benchmarks;

/// <summary>
/// Grammar mask cost per token on the llama3 fixture's vocabulary (128256 tokens), with a JSON schema grammar:
/// <c>Cached</c> is the steady state (the state was seen before: copy the cached mask into the logits),
/// <c>TrieWalk</c> computes a mask from scratch for a known state (one pass over the vocabulary trie),
/// <c>Replay*</c> run Mask + Accept over the tokens of a JSON answer, warm (a later request with the same schema)
/// and cold (a fresh grammar: states, transitions and masks all built on the way). Results are per token.
/// </summary>
[MemoryDiagnoser]
public class GrammarBenchmarks
{
    private const string Schema = """
        {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 40}, "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "email": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
            "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                        "required": ["city"], "additionalProperties": false}},
         "required": ["name", "age", "tags"], "additionalProperties": false}
        """;

    private const string Answer = """
        {"name": "Ada Lovelace", "age": 36, "email": "ada@example.org", "tags": ["mathematics", "poetry", "engines"],
         "address": {"city": "London", "zip": "12345"}}
        """;

    /// <summary>Tokens of <see cref="Answer"/> (checked in setup; the per-token figures divide by it).</summary>
    private const int AnswerTokens = 54;

    private Tokenizer _tokenizer = null!;
    private GbnfGrammar _grammar = null!;
    private GrammarConstraint _warm = null!, _walk = null!;
    private GrammarMatcher _inString = null!;
    private GrammarMatcher[] _walkStates = null!;
    private int[] _answer = null!;
    private float[] _logits = null!;
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        using var file = GgufFile.Open(FixturePath("models", "llama3", "llama3.q8_0.gguf"));
        _tokenizer = Tokenizer.FromGguf(file);
        _grammar = GbnfGrammar.Parse(JsonSchemaGrammar.Convert(Schema));
        _answer = _tokenizer.Encode(Answer.ReplaceLineEndings(""), addSpecial: false);
        if (_answer.Length != AnswerTokens) throw new InvalidOperationException($"the answer has {_answer.Length} tokens, not {AnswerTokens}");
        _logits = new float[_tokenizer.VocabSize];
        _warm = GrammarConstraint.Create(_grammar, _tokenizer);
        Replay(_warm);

        _inString = _warm.CreateMatcher();
        foreach (int t in _tokenizer.Encode("{\"name\": \"Ada", addSpecial: false)) _inString.Accept(t);

        // masks are never kept (cache of 4), transitions are: every Mask call walks the trie
        _walk = GrammarConstraint.Create(_grammar, _tokenizer, maskCacheBytes: 1);
        var states = new List<GrammarMatcher>();
        var m = _walk.CreateMatcher();
        foreach (int t in _answer)
        {
            states.Add(m.Clone());
            m.Mask(_logits);
            m.Accept(t);
        }
        _walkStates = [.. states];
    }

    private static string FixturePath(params string[] parts)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Runtime.sln"))) dir = dir.Parent;
        if (dir is null) throw new DirectoryNotFoundException("run the benchmarks from inside the repository (Runtime.sln not found)");
        return Path.Combine([dir.FullName, "..", "shared", "fixtures", .. parts]);
    }

    private void Replay(GrammarConstraint constraint)
    {
        var m = constraint.CreateMatcher();
        foreach (int t in _answer)
        {
            m.Mask(_logits);
            m.Accept(t);
        }
    }

    [Benchmark]
    public int Cached() => _inString.Mask(_logits);

    [Benchmark]
    public int TrieWalk()
    {
        _next = (_next + 1) % _walkStates.Length;
        return _walkStates[_next].Mask(_logits);
    }

    [Benchmark(OperationsPerInvoke = AnswerTokens)]
    public void ReplayWarm() => Replay(_warm);

    [Benchmark(OperationsPerInvoke = AnswerTokens)]
    public void ReplayCold() => Replay(GrammarConstraint.Create(_grammar, _tokenizer));
}
