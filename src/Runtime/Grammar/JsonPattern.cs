using System.Globalization;
using System.Text;

namespace Infer.Runtime.Grammar;

/// <summary>
/// Turns a JSON schema <c>pattern</c> (an ECMAScript regular expression, matched against the decoded string) into GBNF
/// over the string's JSON spelling. Supported: literals and escapes, classes with ranges and negation, <c>\d \w \s</c>
/// and their negations, <c>.</c>, groups (capturing, <c>(?:</c>, named), <c>|</c>, the quantifiers <c>* + ? {m} {m,}
/// {m,n}</c> (lazy forms too), and <c>^</c> / <c>$</c> at the ends of top-level alternatives; an unanchored side may
/// have any characters. Backreferences, lookaround, word boundaries and Unicode property escapes are errors.
/// </summary>
internal sealed class JsonPattern
{
    private readonly string _p;
    private readonly Func<string, Exception> _error;
    private readonly Func<string, string, string> _addRule;
    private int _i;
    private int _depth;

    /// <summary>What one item of a sequence matches: a single literal character (merged with its neighbours) or an expression.</summary>
    private readonly record struct Item(int Char, string? Expr);

    private JsonPattern(string pattern, Func<string, Exception> error, Func<string, string, string> addRule)
    {
        _p = pattern;
        _error = error;
        _addRule = addRule;
    }

    /// <summary>GBNF for the inside of the JSON string (no quotes).</summary>
    /// <param name="pattern">the schema's <c>pattern</c> value.</param>
    /// <param name="error">makes the exception thrown for an unsupported or malformed pattern (the message says where).</param>
    /// <param name="addRule">adds a helper rule (name, body) and returns the name it got.</param>
    /// <param name="anyChar">the rule for one JSON string character, used on an unanchored side.</param>
    public static string Convert(string pattern, Func<string, Exception> error, Func<string, string, string> addRule, string anyChar)
    {
        var c = new JsonPattern(pattern, error, addRule);
        var alternatives = new List<string>();
        while (true)
        {
            bool start = c.Eat('^');
            var items = c.Sequence(topLevel: true);
            bool end = c.Eat('$');
            if (!c.AtEnd && c.Peek != '|') throw c.Error(c.Peek == ')' ? "unbalanced ')'" : "'$' is only supported at the end of the pattern");
            var seq = Join(items);
            if (!start) seq = (anyChar + "* " + seq).Trim();
            if (!end) seq = (seq + " " + anyChar + "*").Trim();
            alternatives.Add(seq.Length == 0 ? "\"\"" : seq);
            if (c.AtEnd) break;
            c._i++; // '|'
        }
        return alternatives.Count == 1 ? alternatives[0] : "(" + string.Join(" | ", alternatives) + ")";
    }

    private bool AtEnd => _i >= _p.Length;

    private char Peek => _p[_i];

    private bool Eat(char c)
    {
        if (AtEnd || _p[_i] != c) return false;
        _i++;
        return true;
    }

    private Exception Error(string what) => _error($"{what} (at offset {_i} of the pattern)");

    private List<Item> Sequence(bool topLevel)
    {
        var items = new List<Item>();
        while (!AtEnd)
        {
            char c = Peek;
            if (c is '|' or ')') break;
            if (c == '$' && topLevel && (_i + 1 == _p.Length || _p[_i + 1] == '|')) break;
            if (c is '^' or '$') throw Error($"'{c}' is only supported at the start ('^') or end ('$') of the pattern");
            var item = Atom();
            items.Add(Quantified(item));
        }
        return items;
    }

    private Item Atom()
    {
        char c = Peek;
        switch (c)
        {
            case '(':
                {
                    _i++;
                    if (++_depth > GbnfParser.MaxNesting) throw Error($"groups are nested more than {GbnfParser.MaxNesting} deep");
                    if (Eat('?'))
                    {
                        if (Eat(':')) { }
                        else if (!AtEnd && Peek == '<' && _i + 1 < _p.Length && _p[_i + 1] is not ('=' or '!'))
                        {
                            int close = _p.IndexOf('>', _i);
                            if (close < 0) throw Error("unterminated group name");
                            _i = close + 1;
                        }
                        else throw Error("lookahead and lookbehind are not supported");
                    }
                    var alternatives = new List<string>();
                    while (true)
                    {
                        alternatives.Add(Join(Sequence(topLevel: false)) is { Length: > 0 } s ? s : "\"\"");
                        if (Eat('|')) continue;
                        if (!Eat(')')) throw Error("missing ')'");
                        break;
                    }
                    _depth--;
                    return new Item(-1, "(" + string.Join(" | ", alternatives) + ")");
                }
            case '[':
                return new Item(-1, ClassExpr(Class()));
            case '.':
                _i++;
                return new Item(-1, _addRule("dot", ClassExpr(CharSet.FromRanges([('\n', '\n'), ('\r', '\r'), (0x2028, 0x2029)], negate: true))));
            case '\\':
                {
                    var set = Escape(inClass: false, out int single);
                    return set is null ? new Item(single, null) : new Item(-1, ClassExpr(set));
                }
            case '*' or '+' or '?':
                throw Error($"'{c}' has nothing to repeat");
            default:
                return new Item(NextChar(), null);
        }
    }

    private int NextChar()
    {
        char c = _p[_i++];
        if (char.IsHighSurrogate(c) && !AtEnd && char.IsLowSurrogate(Peek)) return char.ConvertToUtf32(c, _p[_i++]);
        return c;
    }

    private Item Quantified(Item item)
    {
        if (AtEnd) return item;
        int min, max;
        int start = _i;
        switch (Peek)
        {
            case '*': _i++; (min, max) = (0, -1); break;
            case '+': _i++; (min, max) = (1, -1); break;
            case '?': _i++; (min, max) = (0, 1); break;
            case '{':
                if (!TryBraces(out min, out max)) return item; // not a quantifier: '{' is a literal (ECMAScript Annex B)
                break;
            default: return item;
        }
        Eat('?'); // lazy: the same strings match
        string what = item.Expr ?? LiteralExpr([item.Char]);
        string q = (min, max) switch
        {
            (0, -1) => "*",
            (1, -1) => "+",
            (0, 1) => "?",
            _ when max == min => $"{{{min}}}",
            _ when max < 0 => $"{{{min},}}",
            _ => $"{{{min},{max}}}",
        };
        if (max >= 0 && max < min) { _i = start; throw Error($"the quantifier {{{min},{max}}} has its maximum below its minimum"); }
        if (Math.Max(min, max) > GbnfParser.MaxRepetition) throw Error($"the quantifier count is too large (at most {GbnfParser.MaxRepetition})");
        return new Item(-1, what + q);
    }

    private bool TryBraces(out int min, out int max)
    {
        min = max = 0;
        int close = _p.IndexOf('}', _i);
        if (close < 0) return false;
        var body = _p[(_i + 1)..close];
        var parts = body.Split(',');
        if (parts.Length > 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out min)) return false;
        if (parts.Length == 1) max = min;
        else if (parts[1].Length == 0) max = -1;
        else if (!int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out max)) return false;
        _i = close + 1;
        return true;
    }

    private CharSet Class()
    {
        _i++; // '['
        bool negate = Eat('^');
        var ranges = new List<(int, int)>();
        while (true)
        {
            if (AtEnd) throw Error("missing ']'");
            if (Peek == ']') break;
            var (lo, loSet) = ClassAtom();
            if (loSet is not null)
            {
                foreach (var r in Pairs(loSet)) ranges.Add(r);
                continue;
            }
            if (!AtEnd && Peek == '-' && _i + 1 < _p.Length && _p[_i + 1] != ']')
            {
                _i++;
                var (hi, hiSet) = ClassAtom();
                if (hiSet is not null) throw Error("a class escape cannot end a range");
                if (hi < lo) throw Error("a range in a class is reversed");
                ranges.Add((lo, hi));
            }
            else
            {
                ranges.Add((lo, lo));
            }
        }
        _i++;
        return CharSet.FromRanges(ranges, negate);
    }

    private (int Char, CharSet? Set) ClassAtom()
    {
        if (Peek != '\\') return (NextChar(), null);
        var set = Escape(inClass: true, out int single);
        return (single, set);
    }

    private static IEnumerable<(int, int)> Pairs(CharSet set)
    {
        var r = set.Ranges.ToArray();
        for (int i = 0; i < r.Length; i += 2) yield return (r[i], r[i + 1]);
    }

    private static readonly CharSet Digit = CharSet.FromRanges([('0', '9')], false);
    private static readonly CharSet Word = CharSet.FromRanges([('0', '9'), ('A', 'Z'), ('a', 'z'), ('_', '_')], false);
    private static readonly (int, int)[] SpaceRanges =
    [
        (9, 13), (' ', ' '), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F),
        (0x3000, 0x3000), (0xFEFF, 0xFEFF),
    ];

    /// <summary>An escape: a class (\d \w \s and negations; returned) or one character (in <paramref name="single"/>).</summary>
    private CharSet? Escape(bool inClass, out int single)
    {
        int at = _i;
        _i++; // '\'
        if (AtEnd) throw Error("the pattern ends with '\\'");
        char e = _p[_i++];
        single = -1;
        switch (e)
        {
            case 'd': return Digit;
            case 'D': return CharSet.FromRanges(Pairs(Digit), negate: true);
            case 'w': return Word;
            case 'W': return CharSet.FromRanges(Pairs(Word), negate: true);
            case 's': return CharSet.FromRanges(SpaceRanges, negate: false);
            case 'S': return CharSet.FromRanges(SpaceRanges, negate: true);
            case 'n': single = '\n'; return null;
            case 'r': single = '\r'; return null;
            case 't': single = '\t'; return null;
            case 'f': single = '\f'; return null;
            case 'v': single = '\v'; return null;
            case '0' when AtEnd || !char.IsAsciiDigit(Peek): single = 0; return null;
            case 'b' when inClass: single = '\b'; return null;
            case 'x': single = HexDigits(2); return null;
            case 'u': single = HexDigits(4); return null;
            case 'c' when !AtEnd && char.IsAsciiLetter(Peek): single = _p[_i++] % 32; return null;
            case 'b' or 'B': _i = at; throw Error("word boundaries (\\b, \\B) are not supported");
            case >= '1' and <= '9' or 'k': _i = at; throw Error("backreferences are not supported");
            case 'p' or 'P': _i = at; throw Error("Unicode property escapes (\\p, \\P) are not supported");
            default:
                if (char.IsAsciiLetterOrDigit(e)) { _i = at; throw Error($"unknown escape '\\{e}'"); }
                single = e;
                return null;
        }
    }

    private int HexDigits(int n)
    {
        if (_i + n > _p.Length || !int.TryParse(_p.AsSpan(_i, n), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int v))
            throw Error($"expected {n} hex digits");
        _i += n;
        return v;
    }

    private static string Join(List<Item> items)
    {
        var parts = new List<string>();
        var literal = new List<int>();
        foreach (var item in items)
        {
            if (item.Expr is null) { literal.Add(item.Char); continue; }
            if (literal.Count > 0) { parts.Add(LiteralExpr(literal)); literal.Clear(); }
            parts.Add(item.Expr);
        }
        if (literal.Count > 0) parts.Add(LiteralExpr(literal));
        return string.Join(" ", parts);
    }

    /// <summary>A GBNF literal of the JSON spelling of these characters.</summary>
    private static string LiteralExpr(List<int> chars)
    {
        var sb = new StringBuilder();
        foreach (int c in chars)
        {
            if (c < 0x10000) GbnfText.AppendJsonChar(sb, (char)c);
            else sb.Append(char.ConvertFromUtf32(c));
        }
        return GbnfText.Literal(sb.ToString());
    }

    /// <summary>GBNF for one decoded character of <paramref name="set"/>, spelled as JSON: raw where JSON allows it, escaped otherwise.</summary>
    private string ClassExpr(CharSet set)
    {
        var raw = new List<(int, int)>();
        foreach (var (lo, hi) in Pairs(set))
        {
            // JSON needs escapes for controls, '"' and '\'; surrogates never occur in UTF-8 text
            foreach (var (a, b) in new[] { (0x20, 0x21), (0x23, 0x5B), (0x5D, 0xD7FF), (0xE000, CharSet.MaxCodePoint) })
            {
                int l = Math.Max(lo, a), h = Math.Min(hi, b);
                if (l <= h) raw.Add((l, h));
            }
        }
        var parts = new List<string>();
        if (raw.Count > 0) parts.Add(GbnfText.Class(CharSet.FromRanges(raw, negate: false).Ranges));
        foreach (int c in new[] { '"', '\\' }.Select(x => (int)x).Concat(Enumerable.Range(0, 0x20)))
            if (set.Contains(c)) parts.Add(LiteralExpr([c]));
        if (parts.Count == 0) throw Error("a class matches no character");
        return parts.Count == 1 ? parts[0] : "(" + string.Join(" | ", parts) + ")";
    }
}
