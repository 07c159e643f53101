using System.Globalization;

namespace Infer.Runtime.Tokenizers;

/// <summary>
/// A small backtracking regular-expression matcher over Unicode code points, for the pre-tokenizer
/// patterns of Hugging Face tokenizers (Oniguruma syntax). .NET's Regex works on UTF-16 code units,
/// so <c>\p{L}</c> cannot match a letter outside the BMP and classes cannot hold supplementary ranges;
/// this engine sees whole code points.
/// Supported: literals, escapes (<c>\s \S \d \r \n \t \\ \p{..} \P{..}</c> and escaped punctuation),
/// classes with ranges and negation, <c>(?:...)</c>, <c>(?=...)</c>, <c>(?!...)</c>, <c>|</c>, <c>$</c>,
/// and greedy <c>? * + {m} {m,} {m,n}</c> on single-character atoms. Anything else is rejected when the
/// pattern is built. Recursion depth is bounded by the pattern, not the input.
/// </summary>
internal sealed class CodepointRegex : ISplitter
{
    private readonly Node _root;

    public string Pattern { get; }

    public CodepointRegex(string pattern)
    {
        Pattern = pattern;
        var parser = new Parser(pattern);
        _root = parser.ParseAll();
    }

    /// <summary>Length of the match starting exactly at <paramref name="start"/> within text[..end], or -1.</summary>
    public int MatchAt(ReadOnlySpan<int> text, int start) => _root.Match(text, start) is var e and >= 0 ? e - start : -1;

    /// <summary>Splits text into matches and the gaps between them, all kept (Hugging Face "Isolated" split).</summary>
    public void SplitIsolated(ReadOnlySpan<int> text, int offset, List<(int Start, int Length)> output)
    {
        int gapStart = 0, pos = 0;
        while (pos < text.Length)
        {
            int end = _root.Match(text, pos);
            if (end > pos)
            {
                if (gapStart < pos) output.Add((offset + gapStart, pos - gapStart));
                output.Add((offset + pos, end - pos));
                pos = end;
                gapStart = pos;
            }
            else
            {
                pos++;
            }
        }
        if (gapStart < text.Length) output.Add((offset + gapStart, text.Length - gapStart));
    }

    // ---- matcher nodes: each node matches itself then continues with Next; returns the end or -1 ----

    private abstract class Node
    {
        public abstract int Match(ReadOnlySpan<int> text, int pos);
    }

    private sealed class Accept : Node
    {
        public static readonly Accept Instance = new();
        public override int Match(ReadOnlySpan<int> text, int pos) => pos;
    }

    private sealed class Repeat(CharSet set, int min, int max, Node next) : Node
    {
        public override int Match(ReadOnlySpan<int> text, int pos)
        {
            int n = 0;
            while (n < max && pos + n < text.Length && set.Contains(text[pos + n])) n++;
            for (; n >= min; n--)
            {
                int r = next.Match(text, pos + n);
                if (r >= 0) return r;
            }
            return -1;
        }
    }

    private sealed class Alternation(Node[] branches) : Node
    {
        public override int Match(ReadOnlySpan<int> text, int pos)
        {
            foreach (var b in branches)
            {
                int r = b.Match(text, pos);
                if (r >= 0) return r;
            }
            return -1;
        }
    }

    private sealed class LookAhead(Node body, bool negative, Node next) : Node
    {
        public override int Match(ReadOnlySpan<int> text, int pos)
        {
            bool found = body.Match(text, pos) >= 0;
            return found != negative ? next.Match(text, pos) : -1;
        }
    }

    private sealed class EndAnchor(Node next) : Node
    {
        public override int Match(ReadOnlySpan<int> text, int pos) => pos == text.Length ? next.Match(text, pos) : -1;
    }

    // ---- character sets ----

    internal sealed class CharSet
    {
        private readonly List<(int Lo, int Hi)> _ranges = [];
        private readonly List<Func<int, bool>> _predicates = [];
        private bool _negated;
        // membership of code points below 0x10000, filled 64 at a time on first use: (bits, which blocks are filled)
        private readonly ulong[] _bmpBits = new ulong[0x10000 / 64];
        private readonly ulong[] _bmpDone = new ulong[0x10000 / 64 / 64];

        public static CharSet Single(int cp)
        {
            var s = new CharSet();
            s._ranges.Add((cp, cp));
            return s;
        }

        public void AddRange(int lo, int hi) => _ranges.Add((lo, hi));
        public void AddPredicate(Func<int, bool> p) => _predicates.Add(p);
        public void AddSet(CharSet other) => _predicates.Add(other.Contains);
        public void Negate() => _negated = !_negated;

        /// <summary>True when the set is exactly one literal code point (usable as a range bound).</summary>
        public bool TryGetSingle(out int cp)
        {
            cp = -1;
            if (_negated || _predicates.Count != 0 || _ranges.Count != 1 || _ranges[0].Lo != _ranges[0].Hi) return false;
            cp = _ranges[0].Lo;
            return true;
        }

        public bool Contains(int cp)
        {
            if ((uint)cp >= 0x10000) return Evaluate(cp);
            int block = cp >> 6;
            if ((Volatile.Read(ref _bmpDone[block >> 6]) & (1UL << (block & 63))) == 0) FillBlock(block);
            return (_bmpBits[block] & (1UL << (cp & 63))) != 0;
        }

        /// <summary>Thread-safe: the block's bits are written before its done flag, and every writer writes the same bits.</summary>
        private void FillBlock(int block)
        {
            ulong bits = 0;
            for (int i = 0; i < 64; i++)
                if (Evaluate(block * 64 + i)) bits |= 1UL << i;
            _bmpBits[block] = bits;
            Interlocked.Or(ref _bmpDone[block >> 6], 1UL << (block & 63));
        }

        private bool Evaluate(int cp)
        {
            bool hit = false;
            foreach (var (lo, hi) in _ranges)
                if (cp >= lo && cp <= hi) { hit = true; break; }
            if (!hit)
                foreach (var p in _predicates)
                    if (p(cp)) { hit = true; break; }
            return hit != _negated;
        }
    }

    /// <summary>Unicode White_Space, which is what Oniguruma's \s matches.</summary>
    internal static bool IsWhiteSpace(int cp) =>
        cp is >= 0x09 and <= 0x0D or 0x20 or 0x85 or 0xA0 or 0x1680 or >= 0x2000 and <= 0x200A
            or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000;

    private static UnicodeCategory Category(int cp) =>
        cp is >= 0 and <= 0x10FFFF ? CharUnicodeInfo.GetUnicodeCategory(cp) : UnicodeCategory.OtherNotAssigned;

    private static Func<int, bool> PropertyPredicate(string name, string pattern) => name switch
    {
        "L" => cp => Category(cp) <= UnicodeCategory.OtherLetter,
        "Lu" => cp => Category(cp) == UnicodeCategory.UppercaseLetter,
        "Ll" => cp => Category(cp) == UnicodeCategory.LowercaseLetter,
        "Lt" => cp => Category(cp) == UnicodeCategory.TitlecaseLetter,
        "Lm" => cp => Category(cp) == UnicodeCategory.ModifierLetter,
        "Lo" => cp => Category(cp) == UnicodeCategory.OtherLetter,
        "M" => cp => Category(cp) is UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark,
        "N" => cp => Category(cp) is UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber,
        "Nd" => cp => Category(cp) == UnicodeCategory.DecimalDigitNumber,
        "P" => cp => Category(cp) is >= UnicodeCategory.ConnectorPunctuation and <= UnicodeCategory.OtherPunctuation,
        "S" => cp => Category(cp) is >= UnicodeCategory.MathSymbol and <= UnicodeCategory.OtherSymbol,
        "Z" => cp => Category(cp) is >= UnicodeCategory.SpaceSeparator and <= UnicodeCategory.ParagraphSeparator,
        _ => throw new ArgumentException($"unsupported Unicode property \\p{{{name}}} in pattern '{pattern}'"),
    };

    // ---- parser: builds the node graph back to front so each piece knows its continuation ----

    private abstract record Ast;
    private sealed record AstSet(CharSet Set, int Min, int Max) : Ast;
    private sealed record AstAlt(List<List<Ast>> Branches) : Ast;
    private sealed record AstLook(List<List<Ast>> Body, bool Negative) : Ast;
    private sealed record AstEnd : Ast;

    private sealed class Parser(string pattern)
    {
        private readonly int[] _p = pattern.EnumerateRunes().Select(r => r.Value).ToArray();
        private int _i;

        public Node ParseAll()
        {
            var alt = ParseAlternation();
            if (_i != _p.Length) throw Error("unexpected ')'");
            return Compile(alt, Accept.Instance);
        }

        private ArgumentException Error(string what) => new($"regex '{pattern}': {what} at code point {_i}");

        private List<List<Ast>> ParseAlternation()
        {
            var branches = new List<List<Ast>> { ParseSequence() };
            while (_i < _p.Length && _p[_i] == '|')
            {
                _i++;
                branches.Add(ParseSequence());
            }
            return branches;
        }

        private List<Ast> ParseSequence()
        {
            var items = new List<Ast>();
            while (_i < _p.Length && _p[_i] != '|' && _p[_i] != ')')
            {
                var atom = ParseAtom();
                if (atom is AstSet set)
                {
                    var (min, max) = ParseQuantifier();
                    items.Add(set with { Min = min, Max = max });
                }
                else
                {
                    if (_i < _p.Length && _p[_i] is '?' or '*' or '+' or '{') throw Error("quantifier on a group is not supported");
                    items.Add(atom);
                }
            }
            return items;
        }

        private (int, int) ParseQuantifier()
        {
            if (_i >= _p.Length) return (1, 1);
            (int, int) q;
            switch (_p[_i])
            {
                case '?': _i++; q = (0, 1); break;
                case '*': _i++; q = (0, int.MaxValue); break;
                case '+': _i++; q = (1, int.MaxValue); break;
                case '{':
                    _i++;
                    int min = ParseNumber();
                    int max = min;
                    if (_p[_i] == ',')
                    {
                        _i++;
                        max = _p[_i] == '}' ? int.MaxValue : ParseNumber();
                    }
                    if (_p[_i] != '}') throw Error("bad {m,n}");
                    _i++;
                    q = (min, max);
                    break;
                default: return (1, 1);
            }
            if (_i < _p.Length && _p[_i] is '?' or '+') throw Error("lazy or possessive quantifiers are not supported");
            return q;
        }

        private int ParseNumber()
        {
            int start = _i, n = 0;
            while (_i < _p.Length && _p[_i] is >= '0' and <= '9') n = n * 10 + (_p[_i++] - '0');
            if (_i == start) throw Error("number expected");
            return n;
        }

        private Ast ParseAtom()
        {
            int c = _p[_i];
            switch (c)
            {
                case '(':
                    _i++;
                    if (_i + 1 < _p.Length && _p[_i] == '?')
                    {
                        int kind = _p[_i + 1];
                        _i += 2;
                        var body = ParseAlternation();
                        Expect(')');
                        return kind switch
                        {
                            ':' => new AstAlt(body),
                            '=' => new AstLook(body, false),
                            '!' => new AstLook(body, true),
                            _ => throw Error("unsupported group kind"),
                        };
                    }
                    {
                        var body = ParseAlternation();
                        Expect(')');
                        return new AstAlt(body);
                    }
                case '[':
                    _i++;
                    return new AstSet(ParseClass(), 1, 1);
                case '$':
                    _i++;
                    return new AstEnd();
                case '.':
                    _i++;
                    {
                        var s = CharSet.Single('\n');
                        s.Negate();
                        return new AstSet(s, 1, 1);
                    }
                case '\\':
                    _i++;
                    return new AstSet(ParseEscape(), 1, 1);
                case '^' or '*' or '+' or '?' or '{':
                    throw Error($"unexpected '{(char)c}'");
                default:
                    _i++;
                    return new AstSet(CharSet.Single(c), 1, 1);
            }
        }

        private void Expect(char c)
        {
            if (_i >= _p.Length || _p[_i] != c) throw Error($"'{c}' expected");
            _i++;
        }

        private CharSet ParseEscape()
        {
            if (_i >= _p.Length) throw Error("dangling backslash");
            int c = _p[_i++];
            var set = new CharSet();
            switch (c)
            {
                case 's': set.AddPredicate(IsWhiteSpace); break;
                case 'S': set.AddPredicate(IsWhiteSpace); set.Negate(); break;
                case 'd': set.AddPredicate(cp => Category(cp) == UnicodeCategory.DecimalDigitNumber); break;
                case 'r': set.AddRange('\r', '\r'); break;
                case 'n': set.AddRange('\n', '\n'); break;
                case 't': set.AddRange('\t', '\t'); break;
                case 'p' or 'P':
                    {
                        Expect('{');
                        int start = _i;
                        while (_i < _p.Length && _p[_i] != '}') _i++;
                        var name = string.Concat(_p[start.._i].Select(char.ConvertFromUtf32));
                        Expect('}');
                        set.AddPredicate(PropertyPredicate(name, pattern));
                        if (c == 'P') set.Negate();
                        break;
                    }
                default:
                    if (c is >= 'a' and <= 'z' or >= 'A' and <= 'Z' or >= '0' and <= '9') throw Error($"unsupported escape \\{(char)c}");
                    set.AddRange(c, c);
                    break;
            }
            return set;
        }

        private CharSet ParseClass()
        {
            var set = new CharSet();
            if (_i < _p.Length && _p[_i] == '^')
            {
                set.Negate();
                _i++;
            }
            bool first = true;
            while (true)
            {
                if (_i >= _p.Length) throw Error("unterminated class");
                int c = _p[_i];
                if (c == ']' && !first)
                {
                    _i++;
                    return set;
                }
                first = false;
                int lo;
                if (c == '\\')
                {
                    _i++;
                    var esc = ParseEscape();
                    if (!IsSingle(esc, out lo))
                    {
                        set.AddSet(esc);
                        continue;
                    }
                }
                else
                {
                    lo = c;
                    _i++;
                }
                if (_i + 1 < _p.Length && _p[_i] == '-' && _p[_i + 1] != ']')
                {
                    _i++;
                    int hi;
                    if (_p[_i] == '\\')
                    {
                        _i++;
                        if (!IsSingle(ParseEscape(), out hi)) throw Error("bad range end");
                    }
                    else
                    {
                        hi = _p[_i++];
                    }
                    if (hi < lo) throw Error("reversed range");
                    set.AddRange(lo, hi);
                }
                else
                {
                    set.AddRange(lo, lo);
                }
            }
        }

        private static bool IsSingle(CharSet set, out int cp) => set.TryGetSingle(out cp);

        private static Node Compile(List<List<Ast>> alternation, Node next)
        {
            if (alternation.Count == 1) return CompileSequence(alternation[0], next);
            var branches = new Node[alternation.Count];
            for (int b = 0; b < branches.Length; b++) branches[b] = CompileSequence(alternation[b], next);
            return new Alternation(branches);
        }

        private static Node CompileSequence(List<Ast> items, Node next)
        {
            for (int k = items.Count - 1; k >= 0; k--)
            {
                next = items[k] switch
                {
                    AstSet s => new Repeat(s.Set, s.Min, s.Max, next),
                    AstAlt a => Compile(a.Branches, next),
                    AstLook l => new LookAhead(Compile(l.Body, Accept.Instance), l.Negative, next),
                    AstEnd => new EndAnchor(next),
                    _ => throw new InvalidOperationException(),
                };
            }
            return next;
        }
    }
}
