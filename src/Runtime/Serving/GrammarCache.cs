using System.Runtime.CompilerServices;
using System.Text.Json;
using Infer.Runtime.Grammar;
using Infer.Runtime.Tokenizers;

namespace Infer.Runtime.Serving;

/// <summary>
/// The grammar constraints of structured output requests, one per distinct grammar, shared by every request that asks for
/// it. A constraint caches a token mask per parse state (a walk over the whole vocabulary to compute), so the next request
/// with the same schema finds its masks ready, and slots keep their sampler (equal options) instead of building a new one.
/// Keyed by the GBNF text, so schemas that differ only in annotations or spacing share one. Beyond
/// <see cref="Capacity"/> grammars the least recently used one is dropped (each holds up to
/// <see cref="GrammarConstraint.DefaultMaskCacheBytes"/> of masks). Thread-safe.
/// </summary>
public sealed class GrammarCache
{
    public const int DefaultCapacity = 8;

    private static readonly ConditionalWeakTable<Tokenizer, GrammarCache> PerTokenizer = [];

    private readonly Tokenizer _tokenizer;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, LinkedListNode<(string Grammar, GrammarConstraint Constraint)>> _byGrammar = new(StringComparer.Ordinal);
    private readonly LinkedList<(string Grammar, GrammarConstraint Constraint)> _recent = new(); // most recently used first

    public GrammarCache(Tokenizer tokenizer, int capacity = DefaultCapacity)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _tokenizer = tokenizer;
        Capacity = capacity;
    }

    /// <summary>The cache of <paramref name="tokenizer"/>'s model, shared by the server, batch jobs and in-process clients.</summary>
    public static GrammarCache For(Tokenizer tokenizer) => PerTokenizer.GetValue(tokenizer, t => new GrammarCache(t));

    public int Capacity { get; }

    public int Count
    {
        get { lock (_lock) return _byGrammar.Count; }
    }

    /// <summary>Any JSON object (OpenAI's <c>json_object</c> response format).</summary>
    public GrammarConstraint JsonObject() => Gbnf(JsonSchemaGrammar.AnyObject);

    /// <summary>Values that <paramref name="schema"/> accepts.</summary>
    /// <param name="schema">a JSON schema; equal schemas (by their GBNF) share one constraint.</param>
    /// <param name="unknownFormatsAsStrings">a <c>format</c> the grammar cannot enforce is a plain string instead of an error.</param>
    /// <exception cref="JsonSchemaException">the schema uses a keyword the grammar cannot express (named in the exception).</exception>
    public GrammarConstraint JsonSchema(JsonElement schema, bool unknownFormatsAsStrings = false) =>
        Gbnf(JsonSchemaGrammar.Convert(schema, unknownFormatsAsStrings));

    /// <summary>Sentences of a GBNF grammar (llama.cpp's syntax).</summary>
    /// <exception cref="GrammarException">the grammar does not parse (the message has the line and column).</exception>
    public GrammarConstraint Gbnf(string grammar)
    {
        ArgumentNullException.ThrowIfNull(grammar);
        lock (_lock)
        {
            if (_byGrammar.TryGetValue(grammar, out var node))
            {
                _recent.Remove(node);
                _recent.AddFirst(node);
                return node.Value.Constraint;
            }
        }
        // Parsed outside the lock; two requests racing on a new grammar both build it and the first one stored wins.
        var built = GrammarConstraint.Create(GbnfGrammar.Parse(grammar), _tokenizer);
        lock (_lock)
        {
            if (_byGrammar.TryGetValue(grammar, out var raced)) return raced.Value.Constraint;
            _byGrammar[grammar] = _recent.AddFirst((grammar, built));
            if (_recent.Count > Capacity)
            {
                _byGrammar.Remove(_recent.Last!.Value.Grammar);
                _recent.RemoveLast();
            }
            return built;
        }
    }
}
