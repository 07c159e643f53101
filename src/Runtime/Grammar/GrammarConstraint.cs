using System.Numerics;
using Infer.Runtime.Tokenizers;

namespace Infer.Runtime.Grammar;

/// <summary>
/// A grammar bound to a vocabulary: computes which tokens may follow a parse state, and caches that mask per state
/// (states repeat a lot, as xgrammar observes). A mask is computed by one depth-first pass over the vocabulary's byte
/// trie that advances the automaton byte by byte and skips a subtree at its first rejected byte. Thread-safe: any
/// number of <see cref="GrammarMatcher"/>s (one per sequence) can share one constraint and its caches.
/// </summary>
public sealed class GrammarConstraint
{
    /// <summary>Default memory for cached masks (one bit per token per cached state).</summary>
    public const long DefaultMaskCacheBytes = 32L << 20;

    private readonly object _sync = new();
    private readonly GrammarAutomaton _automaton;
    private readonly GrammarVocabulary _vocab;
    private readonly int _words;

    // mask cache: state key -> slot; slots are reused first-in first-out once the cache is full
    private readonly Dictionary<long, int> _slotOf = [];
    private readonly ulong[][] _masks;     // (slots) x (words)
    private readonly int[] _allowed;       // (slots): tokens allowed, EOG included
    private readonly long[] _slotKey;      // (slots)
    private int _slotsUsed, _nextVictim;

    // trie walk scratch, indexed by depth
    private readonly int[] _walkState, _walkPartial;

    private GrammarConstraint(GbnfGrammar grammar, GrammarVocabulary vocabulary, long maskCacheBytes)
    {
        Grammar = grammar;
        _vocab = vocabulary;
        _automaton = new GrammarAutomaton(grammar);
        _words = (vocabulary.VocabSize + 63) / 64;
        int slots = (int)Math.Clamp(maskCacheBytes / Math.Max(1, _words * 8L), 4, 1 << 20);
        _masks = new ulong[slots][];
        _allowed = new int[slots];
        _slotKey = new long[slots];
        _walkState = new int[vocabulary.MaxDepth + 1];
        _walkPartial = new int[vocabulary.MaxDepth + 1];
        StartKey = Key(_automaton.Start, 0);
    }

    public static GrammarConstraint Create(GbnfGrammar grammar, Tokenizer tokenizer, long maskCacheBytes = DefaultMaskCacheBytes) =>
        Create(grammar, GrammarVocabulary.FromTokenizer(tokenizer), maskCacheBytes);

    public static GrammarConstraint Create(GbnfGrammar grammar, GrammarVocabulary vocabulary, long maskCacheBytes = DefaultMaskCacheBytes)
    {
        ArgumentNullException.ThrowIfNull(grammar);
        ArgumentNullException.ThrowIfNull(vocabulary);
        return new GrammarConstraint(grammar, vocabulary, maskCacheBytes);
    }

    public GbnfGrammar Grammar { get; }

    public GrammarVocabulary Vocabulary => _vocab;

    /// <summary>A new matcher at the start of the grammar.</summary>
    public GrammarMatcher CreateMatcher() => new(this);

    /// <summary>How many masks are cached now and how many parse states the automaton has met (for diagnostics).</summary>
    public (int CachedMasks, int States) CacheStatistics
    {
        get { lock (_sync) return (_slotsUsed, _automaton.StateCount); }
    }

    internal long StartKey { get; }

    /// <summary>A parse position: automaton state in the low 32 bits, pending partial UTF-8 character in the high ones.</summary>
    private static long Key(int state, int partial) => (long)partial << 32 | (uint)state;

    private static int StateOf(long key) => (int)key;

    private static int PartialOf(long key) => (int)(key >> 32);

    internal bool CanEnd(long key)
    {
        lock (_sync) return PartialOf(key) == 0 && _automaton.CanEnd(StateOf(key));
    }

    internal bool CanContinue(long key)
    {
        lock (_sync) return PartialOf(key) != 0 || _automaton.CanContinue(StateOf(key));
    }

    /// <summary>The key after <paramref name="token"/>, or -1 when the token cannot continue. EOG keeps the key where the grammar may end.</summary>
    internal long Advance(long key, int token)
    {
        lock (_sync)
        {
            if (_vocab.IsEndOfGeneration(token))
                return PartialOf(key) == 0 && _automaton.CanEnd(StateOf(key)) ? key : -1;
            if (!_vocab.IsGrammarToken(token)) return -1;
            int state = StateOf(key), partial = PartialOf(key);
            foreach (byte b in _vocab.Bytes(token))
                if (!_automaton.StepByte(ref state, ref partial, b)) return -1;
            return Key(state, partial);
        }
    }

    /// <summary>Sets every logit whose token cannot follow <paramref name="key"/> to -inf; returns how many tokens remain.</summary>
    internal int Apply(long key, Span<float> logits)
    {
        lock (_sync)
        {
            int slot = Slot(key);
            var mask = _masks[slot];
            int n = Math.Min(logits.Length, _vocab.VocabSize);
            int full = n / 64;
            for (int w = 0; w < full; w++)
            {
                ulong bits = mask[w];
                if (bits == ulong.MaxValue) continue;
                var span = logits.Slice(w * 64, 64);
                if (bits == 0) { span.Fill(float.NegativeInfinity); continue; }
                ulong rejected = ~bits;
                while (rejected != 0)
                {
                    span[BitOperations.TrailingZeroCount(rejected)] = float.NegativeInfinity;
                    rejected &= rejected - 1;
                }
            }
            int allowed = _allowed[slot];
            for (int i = full * 64; i < n; i++)
                if ((mask[i >> 6] >> (i & 63) & 1) == 0) logits[i] = float.NegativeInfinity;
            if (logits.Length > n) logits[n..].Fill(float.NegativeInfinity); // rows past the tokenizer's vocabulary
            else if (n < _vocab.VocabSize) allowed = CountAllowed(mask, n);
            return allowed;
        }
    }

    /// <summary>Whether the token is allowed at <paramref name="key"/> (computes and caches the mask).</summary>
    internal bool IsAllowed(long key, int token)
    {
        if ((uint)token >= (uint)_vocab.VocabSize) return false;
        lock (_sync) return (_masks[Slot(key)][token >> 6] >> (token & 63) & 1) != 0;
    }

    private static int CountAllowed(ulong[] mask, int n)
    {
        int count = 0;
        for (int i = 0; i < n; i++) count += (int)(mask[i >> 6] >> (i & 63) & 1);
        return count;
    }

    private int Slot(long key)
    {
        if (_slotOf.TryGetValue(key, out int slot)) return slot;
        if (_slotsUsed < _masks.Length)
        {
            slot = _slotsUsed++;
            _masks[slot] = new ulong[_words];
        }
        else
        {
            slot = _nextVictim;
            _nextVictim = (_nextVictim + 1) % _masks.Length;
            _slotOf.Remove(_slotKey[slot]);
        }
        _slotKey[slot] = key;
        _allowed[slot] = ComputeMask(key, _masks[slot]);
        _slotOf[key] = slot;
        return slot;
    }

    /// <summary>Walks the vocabulary trie from <paramref name="key"/>; returns how many tokens it allows.</summary>
    private int ComputeMask(long key, ulong[] mask)
    {
        Array.Clear(mask);
        var v = _vocab;
        var bytes = v.NodeByte;
        var depth = v.NodeDepth;
        var end = v.NodeEnd;
        var first = v.NodeFirstToken;
        var count = v.NodeTokenCount;
        var sorted = v.SortedTokens;
        int allowed = 0;
        _walkState[0] = StateOf(key);
        _walkPartial[0] = PartialOf(key);
        for (int j = 0; j < bytes.Length;)
        {
            int d = depth[j];
            int state = _walkState[d - 1], partial = _walkPartial[d - 1];
            if (!_automaton.StepByte(ref state, ref partial, bytes[j]))
            {
                j = end[j];
                continue;
            }
            _walkState[d] = state;
            _walkPartial[d] = partial;
            if (first[j] >= 0)
            {
                for (int t = first[j], last = first[j] + count[j]; t < last; t++)
                {
                    int id = sorted[t];
                    mask[id >> 6] |= 1UL << (id & 63);
                    allowed++;
                }
            }
            j++;
        }
        if (PartialOf(key) == 0 && _automaton.CanEnd(StateOf(key)))
        {
            foreach (int id in v.EndOfGenerationIds)
            {
                mask[id >> 6] |= 1UL << (id & 63);
                allowed++;
            }
        }
        return allowed;
    }
}
