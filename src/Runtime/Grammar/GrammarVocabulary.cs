using System.Runtime.CompilerServices;
using Infer.Runtime.Tokenizers;

namespace Infer.Runtime.Grammar;

/// <summary>
/// A vocabulary prepared for grammar masks: every token that may appear inside a grammar (its decoded bytes), in a
/// byte trie laid out in depth-first order, so one pass over flat arrays visits each token prefix once and skips a
/// whole subtree at its first rejected byte; and the end-of-generation tokens, allowed only where the grammar may
/// end. Control, unknown and unused tokens are never allowed. Immutable; build once per tokenizer (≈0.1 s for
/// 128k tokens) with <see cref="FromTokenizer"/>, which caches it.
/// </summary>
public sealed class GrammarVocabulary
{
    private static readonly ConditionalWeakTable<Tokenizer, GrammarVocabulary> Cache = [];

    private readonly byte[] _bytes;    // every grammar token's bytes, back to back
    private readonly int[] _offsets;   // (VocabSize + 1): token i is _bytes[_offsets[i].._offsets[i + 1]]; empty when not allowed
    private readonly bool[] _inGrammar; // (VocabSize)
    private readonly bool[] _eog;       // (VocabSize)

    /// <summary>Trie nodes in depth-first order (N nodes): the byte on the edge into each node, its depth (1 for a
    /// first byte), the index after its subtree, and the tokens whose bytes end exactly there.</summary>
    internal byte[] NodeByte { get; }
    internal ushort[] NodeDepth { get; }
    internal int[] NodeEnd { get; }
    internal int[] NodeFirstToken { get; }   // index into SortedTokens, -1 when no token ends here
    internal byte[] NodeTokenCount { get; }
    internal int[] SortedTokens { get; }     // grammar tokens sorted by bytes (equal bytes adjacent)
    internal int MaxDepth { get; }

    public int VocabSize { get; }

    public IReadOnlyList<int> EndOfGenerationIds { get; }

    public int NodeCount => NodeByte.Length;

    /// <param name="tokens">each token's decoded bytes; null or empty for a token never allowed inside a grammar.</param>
    /// <param name="endOfGeneration">tokens that end generation (allowed only where the grammar may end).</param>
    public GrammarVocabulary(IReadOnlyList<byte[]?> tokens, IEnumerable<int> endOfGeneration)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        VocabSize = tokens.Count;
        _eog = new bool[VocabSize];
        var eog = new List<int>();
        foreach (int id in endOfGeneration)
        {
            if ((uint)id >= (uint)VocabSize) throw new ArgumentOutOfRangeException(nameof(endOfGeneration), id, "outside the vocabulary");
            if (!_eog[id]) eog.Add(id);
            _eog[id] = true;
        }
        eog.Sort();
        EndOfGenerationIds = eog;

        _inGrammar = new bool[VocabSize];
        _offsets = new int[VocabSize + 1];
        long total = 0;
        for (int i = 0; i < VocabSize; i++)
        {
            _inGrammar[i] = !_eog[i] && tokens[i] is { Length: > 0 };
            if (_inGrammar[i]) total += tokens[i]!.Length;
        }
        _bytes = new byte[total];
        int at = 0;
        for (int i = 0; i < VocabSize; i++)
        {
            _offsets[i] = at;
            if (!_inGrammar[i]) continue;
            tokens[i].AsSpan().CopyTo(_bytes.AsSpan(at));
            at += tokens[i]!.Length;
        }
        _offsets[VocabSize] = at;

        var sorted = Enumerable.Range(0, VocabSize).Where(i => _inGrammar[i]).ToArray();
        Array.Sort(sorted, (a, b) =>
        {
            int c = Bytes(a).SequenceCompareTo(Bytes(b));
            return c != 0 ? c : a.CompareTo(b);
        });
        SortedTokens = sorted;

        var nodeByte = new List<byte>();
        var nodeDepth = new List<ushort>();
        var firstToken = new List<int>();
        var tokenCount = new List<byte>();
        var lastAtDepth = new List<int> { -1 }; // lastAtDepth[d]: the current node at depth d
        ReadOnlySpan<byte> previous = default;
        for (int i = 0; i < sorted.Length; i++)
        {
            var b = Bytes(sorted[i]);
            if (b.Length > ushort.MaxValue) throw new ArgumentException($"token {sorted[i]} is longer than {ushort.MaxValue} bytes", nameof(tokens));
            int common = b.CommonPrefixLength(previous);
            if (common == b.Length && common == previous.Length)
            {
                // same bytes as the previous token (a SentencePiece byte token and a piece, say): same node
                tokenCount[lastAtDepth[common]]++;
                continue;
            }
            for (int d = common; d < b.Length; d++)
            {
                int node = nodeByte.Count;
                nodeByte.Add(b[d]);
                nodeDepth.Add((ushort)(d + 1));
                firstToken.Add(-1);
                tokenCount.Add(0);
                if (lastAtDepth.Count <= d + 1) lastAtDepth.Add(node);
                else lastAtDepth[d + 1] = node;
            }
            int end = lastAtDepth[b.Length];
            firstToken[end] = i;
            tokenCount[end] = 1;
            MaxDepth = Math.Max(MaxDepth, b.Length);
            previous = b;
        }
        NodeByte = [.. nodeByte];
        NodeDepth = [.. nodeDepth];
        NodeFirstToken = [.. firstToken];
        NodeTokenCount = [.. tokenCount];
        NodeEnd = SubtreeEnds(NodeDepth);
    }

    /// <summary>For each node the index of the next node not below it (preorder: the next node at the same or a lower depth).</summary>
    private static int[] SubtreeEnds(ushort[] depth)
    {
        var end = new int[depth.Length];
        var open = new Stack<int>();
        for (int j = 0; j < depth.Length; j++)
        {
            while (open.Count > 0 && depth[open.Peek()] >= depth[j]) end[open.Pop()] = j;
            open.Push(j);
        }
        while (open.Count > 0) end[open.Pop()] = depth.Length;
        return end;
    }

    /// <summary>
    /// The vocabulary of a tokenizer: each token's decoded bytes (SentencePiece pieces with ▁ as a space, byte tokens
    /// as their byte, byte-level BPE pieces as raw bytes); control, unknown and unused tokens are left out, and the
    /// tokenizer's end-of-generation tokens end the grammar. Cached per tokenizer.
    /// </summary>
    public static GrammarVocabulary FromTokenizer(Tokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return Cache.GetValue(tokenizer, t =>
        {
            var tokens = new byte[]?[t.VocabSize];
            for (int i = 0; i < tokens.Length; i++)
            {
                var type = t.GetTokenType(i);
                if (type is TokenType.Control or TokenType.Unknown or TokenType.Unused) continue;
                tokens[i] = t.TokenSpan(i).ToArray();
            }
            return new GrammarVocabulary(tokens, t.EndOfGenerationIds);
        });
    }

    /// <summary>The bytes a token contributes to the grammar's text (empty for a token never allowed inside it).</summary>
    public ReadOnlySpan<byte> Bytes(int token) => _bytes.AsSpan(_offsets[token], _offsets[token + 1] - _offsets[token]);

    public bool IsEndOfGeneration(int token) => (uint)token < (uint)VocabSize && _eog[token];

    /// <summary>Whether the token can ever appear inside a grammar (not special, not end-of-generation, not empty).</summary>
    public bool IsGrammarToken(int token) => (uint)token < (uint)VocabSize && _inGrammar[token];
}
