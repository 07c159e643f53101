namespace Infer.Runtime.Grammar;

/// <summary>
/// The grammar as a lazily built automaton over code points. Like llama.cpp's llama_grammar, a parse position is a set
/// of pushdown stacks of grammar positions, each stack's top a character element; unlike it, stacks are hash-consed
/// (a stack is one node id: position + parent stack), stack sets are interned as states, and each state remembers its
/// transitions. States repeat constantly (inside a JSON string, after a comma), so after a short warm-up advancing by
/// a character is an array lookup and allocates nothing. Not thread-safe; <see cref="GrammarConstraint"/> locks.
/// </summary>
internal sealed class GrammarAutomaton
{
    /// <summary>No stack accepts the character: the sentence cannot continue.</summary>
    public const int Dead = -1;

    private const int Unknown = int.MinValue;

    private readonly Element[] _el;
    private readonly int[][] _alternatives;
    private readonly CharSet[] _sets;

    // stack nodes; node 0 is the empty stack (the grammar is complete)
    private int[] _pos = new int[256];
    private int[] _parent = new int[256];
    private int _nodeCount = 1;
    private readonly Dictionary<long, int> _nodeIds = [];

    private State[] _states = new State[64];
    private int _stateCount;
    private readonly Dictionary<int[], int> _stateIds = new(StackSetComparer.Instance);
    private readonly Dictionary<int[], int>.AlternateLookup<ReadOnlySpan<int>> _stateLookup;

    // scratch for computing a transition
    private readonly List<int> _next = [];
    private readonly Stack<int> _work = new();
    private readonly HashSet<int> _seen = [];

    private sealed class State(int[] stacks)
    {
        public readonly int[] Stacks = stacks; // sorted node ids
        public readonly bool CanEnd = stacks.Length > 0 && stacks[0] == 0;
        public int[]? Ascii;                  // (128): next state, Dead, or Unknown
        public Dictionary<int, int>? Other;   // code point >= 128 -> next state or Dead

        // Which stacks accept a character decides where it leads, so characters that the same stacks accept share
        // one computed transition (bit i: stack i accepts); a class like [^"\\] then costs one computation, not one
        // per distinct character of the vocabulary.
        public Dictionary<ulong, int>? BySignature;
    }

    public GrammarAutomaton(GbnfGrammar grammar)
    {
        _el = grammar.Elements;
        _alternatives = grammar.Alternatives;
        _sets = grammar.Sets;
        _stateLookup = _stateIds.GetAlternateLookup<ReadOnlySpan<int>>();
        _work.Clear();
        _seen.Clear();
        _next.Clear();
        ExpandRule(grammar.Root, 0);
        Start = Intern();
    }

    /// <summary>The state before any character.</summary>
    public int Start { get; }

    public int StateCount => _stateCount;

    public int NodeCount => _nodeCount;

    /// <summary>Whether the grammar may end in this state (one stack is empty).</summary>
    public bool CanEnd(int state) => _states[state].CanEnd;

    /// <summary>Whether any character can follow (some stack is not empty).</summary>
    public bool CanContinue(int state) => _states[state].Stacks.Length > (_states[state].CanEnd ? 1 : 0);

    /// <summary>The state after code point <paramref name="cp"/>, or <see cref="Dead"/>.</summary>
    public int Step(int state, int cp)
    {
        var s = _states[state];
        if ((uint)cp < 128)
        {
            var ascii = s.Ascii ??= NewAsciiRow();
            int t = ascii[cp];
            if (t == Unknown) ascii[cp] = t = Compute(s, cp);
            return t;
        }
        s.Other ??= [];
        if (!s.Other.TryGetValue(cp, out int next))
        {
            next = Compute(s, cp);
            s.Other[cp] = next;
        }
        return next;
    }

    /// <summary>Whether some code point in [lo, hi] can follow (a partial UTF-8 character that may still complete).</summary>
    public bool AcceptsSomeIn(int state, int lo, int hi)
    {
        foreach (int stack in _states[state].Stacks)
            if (stack != 0 && _sets[_el[_pos[stack]].Value].Intersects(lo, hi)) return true;
        return false;
    }

    /// <summary>
    /// Advances by one byte of UTF-8. A character split across tokens is kept in <paramref name="partial"/>
    /// (0: none; otherwise value &lt;&lt; 4 | bytes still missing &lt;&lt; 2 | length - 1) and is only kept while some stack
    /// can still accept one of the characters it may complete to. Invalid UTF-8 (overlong forms, surrogates, stray
    /// continuation bytes, values past U+10FFFF) never continues. Returns false, changing nothing, when the byte cannot
    /// continue.
    /// </summary>
    public bool StepByte(ref int state, ref int partial, byte b)
    {
        int value, missing, length;
        if (partial == 0)
        {
            if (b < 0x80)
            {
                int next = Step(state, b);
                if (next < 0) return false;
                state = next;
                return true;
            }
            if (b is >= 0xC2 and <= 0xDF) { length = 2; value = b & 0x1F; }
            else if (b is >= 0xE0 and <= 0xEF) { length = 3; value = b & 0x0F; }
            else if (b is >= 0xF0 and <= 0xF4) { length = 4; value = b & 0x07; }
            else return false;
            missing = length - 1;
        }
        else
        {
            if ((b & 0xC0) != 0x80) return false;
            value = (partial >> 4 << 6) | (b & 0x3F);
            missing = ((partial >> 2) & 3) - 1;
            length = (partial & 3) + 1;
            if (missing == 0)
            {
                if (value < MinimumFor(length) || value is >= 0xD800 and <= 0xDFFF || value > CharSet.MaxCodePoint) return false;
                int next = Step(state, value);
                if (next < 0) return false;
                state = next;
                partial = 0;
                return true;
            }
        }
        int lo = Math.Max(value << (6 * missing), MinimumFor(length));
        int hi = Math.Min(value << (6 * missing) | ((1 << (6 * missing)) - 1), CharSet.MaxCodePoint);
        if (lo > hi || lo >= 0xD800 && hi <= 0xDFFF || !AcceptsSomeIn(state, lo, hi)) return false;
        partial = value << 4 | missing << 2 | (length - 1);
        return true;
    }

    private static int MinimumFor(int length) => length switch { 2 => 0x80, 3 => 0x800, _ => 0x10000 };

    private static int[] NewAsciiRow()
    {
        var row = new int[128];
        Array.Fill(row, Unknown);
        return row;
    }

    private int Compute(State s, int cp)
    {
        var stacks = s.Stacks;
        if (stacks.Length > 64) return Advance(s, cp, ulong.MaxValue);
        ulong signature = 0;
        for (int i = 0; i < stacks.Length; i++)
            if (stacks[i] != 0 && _sets[_el[_pos[stacks[i]]].Value].Contains(cp)) signature |= 1UL << i;
        if (signature == 0) return Dead;
        s.BySignature ??= [];
        if (!s.BySignature.TryGetValue(signature, out int next))
        {
            next = Advance(s, cp, signature);
            s.BySignature[signature] = next;
        }
        return next;
    }

    /// <summary>Moves every stack that accepts <paramref name="cp"/> (among those in <paramref name="signature"/>) past its character.</summary>
    private int Advance(State s, int cp, ulong signature)
    {
        _next.Clear();
        _seen.Clear();
        var stacks = s.Stacks;
        for (int i = 0; i < stacks.Length; i++)
        {
            int stack = stacks[i];
            if (stack == 0 || i < 64 && (signature >> i & 1) == 0) continue;
            int p = _pos[stack];
            if (!_sets[_el[p].Value].Contains(cp)) continue;
            int parent = _parent[stack];
            Expand(_el[p + 1].Kind == ElementKind.End ? parent : Node(p + 1, parent));
        }
        return _next.Count == 0 ? Dead : Intern();
    }

    /// <summary>Pushes every alternative of a rule onto <paramref name="parent"/> and expands the results.</summary>
    private void ExpandRule(int rule, int parent)
    {
        foreach (int a in _alternatives[rule])
            Expand(_el[a].Kind == ElementKind.End ? parent : Node(a, parent));
    }

    /// <summary>
    /// Adds to <see cref="_next"/> the stacks that <paramref name="node"/> becomes once every rule reference on top is
    /// replaced by its alternatives, so each stack ends at a character element (or is empty). Terminates because the
    /// parser rejects left recursion.
    /// </summary>
    private void Expand(int node)
    {
        _work.Push(node);
        while (_work.Count > 0)
        {
            int n = _work.Pop();
            if (!_seen.Add(n)) continue;
            if (n == 0)
            {
                _next.Add(0);
                continue;
            }
            int p = _pos[n];
            var e = _el[p];
            if (e.Kind == ElementKind.Char)
            {
                _next.Add(n);
                continue;
            }
            int parent = _parent[n];
            int after = _el[p + 1].Kind == ElementKind.End ? parent : Node(p + 1, parent);
            foreach (int a in _alternatives[e.Value])
                _work.Push(_el[a].Kind == ElementKind.End ? after : Node(a, after));
        }
    }

    private int Node(int pos, int parent)
    {
        long key = (long)pos << 32 | (uint)parent;
        if (_nodeIds.TryGetValue(key, out int id)) return id;
        if (_nodeCount == _pos.Length)
        {
            Array.Resize(ref _pos, _pos.Length * 2);
            Array.Resize(ref _parent, _parent.Length * 2);
        }
        id = _nodeCount++;
        _pos[id] = pos;
        _parent[id] = parent;
        _nodeIds[key] = id;
        return id;
    }

    /// <summary>The state for the stacks in <see cref="_next"/> (sorted and deduplicated here).</summary>
    private int Intern()
    {
        _next.Sort();
        int n = 0;
        for (int i = 0; i < _next.Count; i++)
            if (i == 0 || _next[i] != _next[n - 1]) _next[n++] = _next[i];
        _next.RemoveRange(n, _next.Count - n);
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_next);
        if (_stateLookup.TryGetValue(span, out int id)) return id;
        var stacks = span.ToArray();
        if (_stateCount == _states.Length) Array.Resize(ref _states, _states.Length * 2);
        id = _stateCount++;
        _states[id] = new State(stacks);
        _stateIds[stacks] = id;
        return id;
    }

    private sealed class StackSetComparer : IEqualityComparer<int[]>, IAlternateEqualityComparer<ReadOnlySpan<int>, int[]>
    {
        public static readonly StackSetComparer Instance = new();

        public bool Equals(int[]? x, int[]? y) => x.AsSpan().SequenceEqual(y);

        public int GetHashCode(int[] obj) => GetHashCode(obj.AsSpan());

        public bool Equals(ReadOnlySpan<int> alternate, int[] other) => alternate.SequenceEqual(other);

        public int GetHashCode(ReadOnlySpan<int> alternate)
        {
            var h = new HashCode();
            foreach (int v in alternate) h.Add(v);
            return h.ToHashCode();
        }

        public int[] Create(ReadOnlySpan<int> alternate) => alternate.ToArray();
    }
}
