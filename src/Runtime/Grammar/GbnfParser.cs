using System.Globalization;

namespace Infer.Runtime.Grammar;

internal enum ElementKind : byte
{
    /// <summary>Ends an alternative.</summary>
    End,

    /// <summary>One code point from <see cref="GbnfGrammar.Sets"/>[Value].</summary>
    Char,

    /// <summary>A reference to rule Value.</summary>
    Rule,
}

internal readonly record struct Element(ElementKind Kind, int Value);

/// <summary>
/// Parses llama.cpp's GBNF (grammars/README.md): <c>name ::= alternatives</c> rules, <c>|</c>, groups, literals with
/// escapes, character classes, <c>.</c>, and the repetitions <c>* + ? {m} {m,} {m,n}</c>, which are rewritten into
/// helper rules the way llama.cpp does (S{m,n} becomes m copies of S and a chain of n-m optional S). A line may also
/// start with <c>|</c> to continue the previous rule. Errors carry the line and column.
/// </summary>
internal sealed class GbnfParser
{
    /// <summary>Largest count in <c>{m,n}</c>; bigger counts would expand to millions of rules.</summary>
    public const int MaxRepetition = 100_000;

    /// <summary>Largest grammar after repetitions are expanded, in elements.</summary>
    public const int MaxElements = 4_000_000;

    /// <summary>Deepest nesting of groups (the parser recurses per group; a hostile grammar must not overflow the stack).</summary>
    public const int MaxNesting = 500;

    internal sealed class RuleDef(string name, int position, bool generated)
    {
        public string Name { get; } = name;

        /// <summary>Where the rule is defined (or, for a generated rule, the group or repetition that made it).</summary>
        public int Position { get; set; } = position;

        public bool Generated { get; } = generated;
        public List<List<Element>>? Alternatives { get; set; }
        public int FirstReference { get; set; } = -1;
    }

    private readonly string _s;
    private int _p;
    private int _elements;
    private int _depth;
    private readonly List<RuleDef> _rules = [];
    private readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);
    private readonly List<CharSet> _sets = [];
    private readonly Dictionary<CharSet, int> _setIds = [];

    private GbnfParser(string text) => _s = text;

    public static GbnfGrammar Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var p = new GbnfParser(text);
        p.ParseAll();
        return GbnfGrammar.Build(text, p._rules, p._sets);
    }

    private bool End => _p >= _s.Length;

    private char Peek => _p < _s.Length ? _s[_p] : '\0';

    public static (int Line, int Column) LineColumn(string text, int index)
    {
        int line = 1, lineStart = 0;
        for (int i = 0; i < index && i < text.Length; i++)
            if (text[i] == '\n') { line++; lineStart = i + 1; }
        return (line, index - lineStart + 1);
    }

    private GrammarException Error(int index, string message)
    {
        var (line, column) = LineColumn(_s, index);
        return new GrammarException(message, line, column);
    }

    private string Found() => End ? "the end of the grammar"
        : _s[_p] switch { '\n' or '\r' => "a line break", char c => $"'{c}'" };

    private void ParseAll()
    {
        SkipSpace(newlines: true);
        while (!End) ParseRule();
        foreach (var r in _rules)
            if (r.Alternatives is null) throw Error(r.FirstReference, $"undefined rule '{r.Name}'");
        if (!_ids.ContainsKey("root")) throw new GrammarException("the grammar has no 'root' rule (the rule generation starts from)");
    }

    private static bool IsWordChar(char c) => char.IsAsciiLetterOrDigit(c) || c is '-' or '_';

    private string ParseName(string what)
    {
        int start = _p;
        while (!End && IsWordChar(_s[_p])) _p++;
        if (_p == start) throw Error(_p, $"expected {what}, found {Found()}");
        return _s[start.._p];
    }

    private int RuleId(string name)
    {
        if (_ids.TryGetValue(name, out int id)) return id;
        id = _rules.Count;
        _ids[name] = id;
        _rules.Add(new RuleDef(name, -1, generated: false));
        return id;
    }

    private (RuleDef Rule, int Id) NewGeneratedRule(string parent, int position)
    {
        // '~' cannot appear in a written name, so generated names never collide with the grammar's own.
        var r = new RuleDef($"{parent}~{_rules.Count}", position, generated: true);
        _rules.Add(r);
        return (r, _rules.Count - 1);
    }

    private void ParseRule()
    {
        int start = _p;
        string name = ParseName("a rule name");
        SkipSpace(newlines: false);
        if (string.CompareOrdinal(_s, _p, "::=", 0, 3) != 0) throw Error(_p, $"expected '::=' after the rule name '{name}', found {Found()}");
        _p += 3;
        SkipSpace(newlines: true);
        var rule = _rules[RuleId(name)];
        if (rule.Alternatives is not null)
        {
            var (line, column) = LineColumn(_s, rule.Position);
            throw Error(start, $"rule '{name}' is defined twice (first at line {line}, column {column})");
        }
        rule.Position = start;
        rule.Alternatives = ParseAlternates(name, nested: false);
        if (!End)
        {
            if (_s[_p] == '\r') _p += _p + 1 < _s.Length && _s[_p + 1] == '\n' ? 2 : 1;
            else if (_s[_p] == '\n') _p++;
            else throw Error(_p, $"expected a line break or the end of the grammar after rule '{name}', found {Found()}");
        }
        SkipSpace(newlines: true);
    }

    private List<List<Element>> ParseAlternates(string rule, bool nested)
    {
        var alternatives = new List<List<Element>> { ParseSequence(rule, nested) };
        while (true)
        {
            if (Peek == '|')
            {
                _p++;
                SkipSpace(newlines: true);
                alternatives.Add(ParseSequence(rule, nested));
                continue;
            }
            if (!nested && Peek is '\r' or '\n')
            {
                // A following line that starts with '|' continues this rule.
                int save = _p;
                SkipSpace(newlines: true);
                if (Peek == '|') continue;
                _p = save;
            }
            return alternatives;
        }
    }

    private void Add(List<Element> sequence, Element e)
    {
        if (++_elements > MaxElements) throw Error(_p, $"the grammar is too large (more than {MaxElements} elements after expanding repetitions)");
        sequence.Add(e);
    }

    private List<Element> ParseSequence(string rule, bool nested)
    {
        var seq = new List<Element>();
        int last = -1; // where the last item starts in seq (what a quantifier repeats)
        while (!End)
        {
            char c = _s[_p];
            int at = _p;
            if (c == '"')
            {
                last = seq.Count;
                _p++;
                while (Peek != '"')
                {
                    if (End || Peek is '\n' or '\r') throw Error(at, "unterminated string literal (no closing '\"' on this line)");
                    Add(seq, new Element(ElementKind.Char, SetId(CharSet.Single(ParseChar()))));
                }
                _p++;
                if (seq.Count == last) last = -2; // "" matches nothing: there is nothing to repeat
            }
            else if (c == '[')
            {
                last = seq.Count;
                Add(seq, new Element(ElementKind.Char, SetId(ParseClass())));
            }
            else if (c == '.')
            {
                last = seq.Count;
                _p++;
                Add(seq, new Element(ElementKind.Char, SetId(CharSet.Any)));
            }
            else if (IsWordChar(c))
            {
                last = seq.Count;
                string name = ParseName("a rule name");
                int id = RuleId(name);
                if (_rules[id].FirstReference < 0) _rules[id].FirstReference = at;
                Add(seq, new Element(ElementKind.Rule, id));
            }
            else if (c == '(')
            {
                _p++;
                if (++_depth > MaxNesting) throw Error(at, $"groups are nested more than {MaxNesting} deep");
                SkipSpace(newlines: true);
                var (group, groupId) = NewGeneratedRule(rule, at);
                group.Alternatives = ParseAlternates(rule, nested: true);
                _depth--;
                if (Peek != ')')
                {
                    var (line, column) = LineColumn(_s, at);
                    throw Error(_p, $"expected ')' to close the group opened at line {line}, column {column}, found {Found()}");
                }
                _p++;
                last = seq.Count;
                Add(seq, new Element(ElementKind.Rule, groupId));
            }
            else if (c is '*' or '+' or '?')
            {
                _p++;
                Repeat(seq, last, at, c == '+' ? 1 : 0, c == '?' ? 1 : -1, rule);
            }
            else if (c == '{')
            {
                _p++;
                SkipSpace(nested);
                int min = ParseCount();
                SkipSpace(nested);
                int max = min;
                if (Peek == ',')
                {
                    _p++;
                    SkipSpace(nested);
                    max = char.IsAsciiDigit(Peek) ? ParseCount() : -1;
                    SkipSpace(nested);
                }
                if (Peek != '}') throw Error(_p, $"expected {(max == min ? "',' or " : "")}'}}' in the repetition, found {Found()}");
                _p++;
                if (max >= 0 && max < min) throw Error(at, $"the repetition {{{min},{max}}} has its maximum below its minimum");
                Repeat(seq, last, at, min, max, rule);
            }
            else
            {
                break;
            }
            SkipSpace(nested);
        }
        return seq;
    }

    private int ParseCount()
    {
        int start = _p;
        while (char.IsAsciiDigit(Peek)) _p++;
        if (_p == start) throw Error(_p, $"expected a number in the repetition, found {Found()}");
        if (!int.TryParse(_s.AsSpan(start, _p - start), NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n > MaxRepetition)
            throw Error(start, $"the repetition count {_s[start.._p]} is too large (at most {MaxRepetition})");
        return n;
    }

    /// <summary>Rewrites the item seq[last..] as llama.cpp does: S{m,n} = S x m, then n-m nested optional S (unbounded: S' ::= S S' |).</summary>
    private void Repeat(List<Element> seq, int last, int at, int min, int max, string rule)
    {
        if (last < 0 || last >= seq.Count) throw Error(at, $"'{_s[at]}' has nothing to repeat (expected an item before it)");
        var item = seq.GetRange(last, seq.Count - last);
        seq.RemoveRange(last, seq.Count - last);
        _elements -= item.Count;
        for (int i = 0; i < min; i++)
            foreach (var e in item) Add(seq, e);
        if (max < 0)
        {
            var (rec, recId) = NewGeneratedRule(rule, at);
            var body = new List<Element>();
            foreach (var e in item) Add(body, e);
            Add(body, new Element(ElementKind.Rule, recId));
            rec.Alternatives = [body, []];
            Add(seq, new Element(ElementKind.Rule, recId));
            return;
        }
        int previous = -1;
        for (int i = 0; i < max - min; i++)
        {
            var (opt, optId) = NewGeneratedRule(rule, at);
            var body = new List<Element>();
            foreach (var e in item) Add(body, e);
            if (previous >= 0) Add(body, new Element(ElementKind.Rule, previous));
            opt.Alternatives = [body, []];
            previous = optId;
        }
        if (previous >= 0) Add(seq, new Element(ElementKind.Rule, previous));
    }

    private CharSet ParseClass()
    {
        int open = _p++;
        bool negate = Peek == '^';
        if (negate) _p++;
        var ranges = new List<(int, int)>();
        while (Peek != ']')
        {
            if (End || Peek is '\n' or '\r') throw Error(open, "unterminated character class (no closing ']' on this line)");
            int itemAt = _p;
            int lo = ParseChar(), hi = lo;
            if (Peek == '-' && _p + 1 < _s.Length && _s[_p + 1] != ']')
            {
                _p++;
                if (End || Peek is '\n' or '\r') throw Error(open, "unterminated character class (no closing ']' on this line)");
                hi = ParseChar();
                if (hi < lo) throw Error(itemAt, $"the range {_s[itemAt.._p]} is reversed (its end is below its start)");
            }
            ranges.Add((lo, hi));
        }
        _p++;
        if (ranges.Count == 0) throw Error(open, "empty character class");
        var set = CharSet.FromRanges(ranges, negate);
        if (set.IsEmpty) throw Error(open, "the character class matches no character");
        return set;
    }

    private int ParseChar()
    {
        int at = _p;
        char c = _s[_p];
        if (c != '\\')
        {
            if (char.IsHighSurrogate(c) && _p + 1 < _s.Length && char.IsLowSurrogate(_s[_p + 1]))
            {
                _p += 2;
                return char.ConvertToUtf32(c, _s[_p - 1]);
            }
            _p++;
            return c;
        }
        if (_p + 1 >= _s.Length) throw Error(at, "unfinished escape at the end of the grammar");
        char e = _s[_p + 1];
        _p += 2;
        switch (e)
        {
            case 'n': return '\n';
            case 't': return '\t';
            case 'r': return '\r';
            case '\\' or '"' or '[' or ']' or '-' or '/': return e;
            case 'x': return Hex(at, 2);
            case 'u': return Hex(at, 4);
            case 'U': return Hex(at, 8);
            default: throw Error(at, $"unknown escape '\\{e}' (known: \\n \\t \\r \\\\ \\\" \\[ \\] \\- \\xHH \\uHHHH \\UHHHHHHHH)");
        }
    }

    private int Hex(int at, int digits)
    {
        long v = 0;
        for (int i = 0; i < digits; i++)
        {
            int d = _p < _s.Length ? HexValue(_s[_p]) : -1;
            if (d < 0) throw Error(at, $"expected {digits} hex digits after '\\{_s[at + 1]}'");
            v = v * 16 + d;
            _p++;
        }
        if (v > CharSet.MaxCodePoint) throw Error(at, $"U+{v:X} is beyond the last Unicode code point U+10FFFF");
        return (int)v;
    }

    private static int HexValue(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };

    private int SetId(CharSet set)
    {
        if (_setIds.TryGetValue(set, out int id)) return id;
        id = _sets.Count;
        _sets.Add(set);
        _setIds[set] = id;
        return id;
    }

    private void SkipSpace(bool newlines)
    {
        while (!End)
        {
            char c = _s[_p];
            if (c is ' ' or '\t' || newlines && c is '\r' or '\n') _p++;
            else if (c == '#') { while (!End && _s[_p] is not ('\r' or '\n')) _p++; }
            else return;
        }
    }
}
