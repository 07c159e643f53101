using System.Globalization;
using System.Text;

namespace Infer.Templates;

internal enum TokenKind
{
    Text,
    VarBegin,
    VarEnd,
    BlockBegin,
    BlockEnd,
    Name,
    String,
    Integer,
    Float,
    Operator,
    Eof,
}

internal readonly record struct Token(TokenKind Kind, string Value, int Line, object? Literal = null)
{
    public bool Is(TokenKind kind, string value) => Kind == kind && Value == value;

    public bool IsOp(string op) => Kind == TokenKind.Operator && Value == op;

    public bool IsName(string name) => Kind == TokenKind.Name && Value == name;

    public string Describe() => Kind switch
    {
        TokenKind.Eof => "end of template",
        TokenKind.BlockEnd => "end of statement block",
        TokenKind.VarEnd => "end of print statement",
        TokenKind.Text => "template data",
        TokenKind.String => "string",
        _ => $"'{Value}'",
    };
}

/// <summary>
/// Splits template source into text and tag tokens the way Jinja2's lexer does with
/// trim_blocks and lstrip_blocks on: newlines normalized to \n, one trailing newline dropped,
/// <c>{%- -%}</c> / <c>{{- -}}</c> / <c>{#- -#}</c> strip all whitespace on that side,
/// <c>{%+</c> and <c>+%}</c> turn lstrip/trim off for that tag.
/// </summary>
internal sealed class Lexer
{
    private static readonly string[] Operators =
    [
        "//", "**", "==", "!=", "<=", ">=",
        "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|",
    ];

    private readonly string _src;
    private readonly List<Token> _tokens = [];
    private readonly List<int> _lineStarts = [0];

    private Lexer(string source)
    {
        var normalized = source.Replace("\r\n", "\n").Replace('\r', '\n');
        if (normalized.EndsWith('\n')) normalized = normalized[..^1];
        _src = normalized;
        for (int i = 0; i < _src.Length; i++)
            if (_src[i] == '\n') _lineStarts.Add(i + 1);
    }

    public static List<Token> Tokenize(string source)
    {
        var lexer = new Lexer(source);
        lexer.Run();
        return lexer._tokens;
    }

    private int LineAt(int pos)
    {
        // _lineStarts[k] is the offset where line k + 1 begins.
        int i = _lineStarts.BinarySearch(pos);
        return i >= 0 ? i + 1 : ~i;
    }

    private void Run()
    {
        int pos = 0;
        while (pos <= _src.Length)
        {
            int tagStart = FindTagStart(pos);
            int textEnd = tagStart < 0 ? _src.Length : tagStart;
            int textStart = pos;
            if (tagStart >= 0)
            {
                char kind = _src[tagStart + 1];
                char mod = tagStart + 2 < _src.Length ? _src[tagStart + 2] : '\0';
                if (mod == '-')
                {
                    while (textEnd > textStart && char.IsWhiteSpace(_src[textEnd - 1])) textEnd--;
                }
                else if (mod != '+' && kind != '{')
                {
                    textEnd = LStrip(textStart, textEnd);
                }
            }
            if (textEnd > textStart)
                _tokens.Add(new Token(TokenKind.Text, _src[textStart..textEnd], LineAt(textStart)));
            if (tagStart < 0) break;
            pos = LexTag(tagStart);
        }
        _tokens.Add(new Token(TokenKind.Eof, "", LineAt(_src.Length)));
    }

    /// <summary>lstrip_blocks: drop spaces and tabs between the start of the line and a block or comment tag.</summary>
    private int LStrip(int textStart, int textEnd)
    {
        int i = textEnd;
        while (i > textStart && _src[i - 1] != '\n' && char.IsWhiteSpace(_src[i - 1])) i--;
        bool atLineStart = i == 0 || _src[i - 1] == '\n';
        return atLineStart ? i : textEnd;
    }

    private int FindTagStart(int from)
    {
        int i = from;
        while (true)
        {
            i = _src.IndexOf('{', i);
            if (i < 0 || i + 1 >= _src.Length) return -1;
            char c = _src[i + 1];
            if (c == '{' || c == '%' || c == '#') return i;
            i++;
        }
    }

    /// <summary>Lexes one tag starting at <paramref name="start"/>; returns the position after it (and after any whitespace it strips).</summary>
    private int LexTag(int start)
    {
        int line = LineAt(start);
        char kind = _src[start + 1];
        int pos = start + 2;
        if (pos < _src.Length && (_src[pos] == '-' || _src[pos] == '+')) pos++;
        if (kind == '#')
        {
            int end = _src.IndexOf("#}", pos, StringComparison.Ordinal);
            if (end < 0) throw new TemplateException("TemplateSyntaxError", "Missing end of comment tag", line, "comment");
            bool strip = end > pos && _src[end - 1] == '-';
            bool keep = end > pos && _src[end - 1] == '+';
            return AfterTag(end + 2, strip, !keep);
        }
        if (kind == '%' && TryLexRaw(pos, line, out int afterRaw)) return afterRaw;
        _tokens.Add(new Token(kind == '{' ? TokenKind.VarBegin : TokenKind.BlockBegin, kind == '{' ? "{{" : "{%", line));
        int depth = 0;
        while (true)
        {
            while (pos < _src.Length && char.IsWhiteSpace(_src[pos])) pos++;
            if (pos >= _src.Length)
            {
                throw new TemplateException("TemplateSyntaxError",
                    kind == '{' ? "unexpected end of template, expected '}}'" : "unexpected end of template, expected '%}'",
                    LineAt(pos), kind == '{' ? "print" : "statement");
            }
            if (depth == 0)
            {
                string close = kind == '{' ? "}}" : "%}";
                bool minus = _src[pos] == '-' && string.CompareOrdinal(_src, pos + 1, close, 0, 2) == 0;
                bool plus = _src[pos] == '+' && string.CompareOrdinal(_src, pos + 1, close, 0, 2) == 0;
                if (minus || plus || string.CompareOrdinal(_src, pos, close, 0, 2) == 0)
                {
                    int tokLine = LineAt(pos);
                    _tokens.Add(new Token(kind == '{' ? TokenKind.VarEnd : TokenKind.BlockEnd, close, tokLine));
                    int after = pos + 2 + (minus || plus ? 1 : 0);
                    return AfterTag(after, minus, kind == '%' && !plus);
                }
            }
            pos = LexToken(pos, ref depth);
        }
    }

    /// <summary>Handles {% raw %} ... {% endraw %}: the body is text, untouched.</summary>
    private bool TryLexRaw(int pos, int line, out int after)
    {
        after = 0;
        int p = pos;
        while (p < _src.Length && char.IsWhiteSpace(_src[p])) p++;
        if (string.CompareOrdinal(_src, p, "raw", 0, 3) != 0) return false;
        p += 3;
        while (p < _src.Length && char.IsWhiteSpace(_src[p])) p++;
        bool minus = p < _src.Length && _src[p] == '-';
        if (minus) p++;
        if (string.CompareOrdinal(_src, p, "%}", 0, 2) != 0) return false;
        p += 2;
        int bodyStart = minus ? SkipWhitespace(p) : p;
        int search = bodyStart;
        while (true)
        {
            int open = _src.IndexOf("{%", search, StringComparison.Ordinal);
            if (open < 0) throw new TemplateException("TemplateSyntaxError", "Missing end of raw directive", line, "raw");
            int q = open + 2;
            bool endMinus = q < _src.Length && _src[q] == '-';
            if (endMinus || (q < _src.Length && _src[q] == '+')) q++;
            q = SkipWhitespace(q);
            if (string.CompareOrdinal(_src, q, "endraw", 0, 6) == 0)
            {
                q = SkipWhitespace(q + 6);
                bool closeMinus = q < _src.Length && _src[q] == '-';
                if (closeMinus || (q < _src.Length && _src[q] == '+')) q++;
                if (string.CompareOrdinal(_src, q, "%}", 0, 2) != 0) { search = open + 2; continue; }
                int bodyEnd = open;
                if (endMinus) while (bodyEnd > bodyStart && char.IsWhiteSpace(_src[bodyEnd - 1])) bodyEnd--;
                else bodyEnd = LStrip(bodyStart, bodyEnd);
                if (bodyEnd > bodyStart) _tokens.Add(new Token(TokenKind.Text, _src[bodyStart..bodyEnd], LineAt(bodyStart)));
                after = AfterTag(q + 2, closeMinus, true);
                return true;
            }
            search = open + 2;
        }
    }

    private int SkipWhitespace(int p)
    {
        while (p < _src.Length && char.IsWhiteSpace(_src[p])) p++;
        return p;
    }

    private int AfterTag(int pos, bool stripAll, bool trimNewline)
    {
        if (stripAll) return SkipWhitespace(pos);
        if (trimNewline && pos < _src.Length && _src[pos] == '\n') return pos + 1;
        return pos;
    }

    private int LexToken(int pos, ref int depth)
    {
        int line = LineAt(pos);
        char c = _src[pos];
        if (char.IsLetter(c) || c == '_')
        {
            int end = pos + 1;
            while (end < _src.Length && (char.IsLetterOrDigit(_src[end]) || _src[end] == '_')) end++;
            _tokens.Add(new Token(TokenKind.Name, _src[pos..end], line));
            return end;
        }
        if (char.IsAsciiDigit(c)) return LexNumber(pos, line);
        if (c == '\'' || c == '"') return LexString(pos, line);
        foreach (var op in Operators)
        {
            if (string.CompareOrdinal(_src, pos, op, 0, op.Length) != 0) continue;
            if (op is "(" or "[" or "{") depth++;
            else if (op is ")" or "]" or "}") depth = Math.Max(0, depth - 1);
            _tokens.Add(new Token(TokenKind.Operator, op, line));
            return pos + op.Length;
        }
        throw new TemplateException("TemplateSyntaxError", $"unexpected char '{c}' at {pos}", line, "expression");
    }

    private int LexNumber(int pos, int line)
    {
        int end = pos;
        while (end < _src.Length && (char.IsAsciiDigit(_src[end]) || _src[end] == '_')) end++;
        bool isFloat = false;
        if (end + 1 < _src.Length && _src[end] == '.' && char.IsAsciiDigit(_src[end + 1]))
        {
            isFloat = true;
            end++;
            while (end < _src.Length && (char.IsAsciiDigit(_src[end]) || _src[end] == '_')) end++;
        }
        if (end < _src.Length && (_src[end] == 'e' || _src[end] == 'E'))
        {
            int e = end + 1;
            if (e < _src.Length && (_src[e] == '+' || _src[e] == '-')) e++;
            if (e < _src.Length && char.IsAsciiDigit(_src[e]))
            {
                isFloat = true;
                end = e;
                while (end < _src.Length && char.IsAsciiDigit(_src[end])) end++;
            }
        }
        var text = _src[pos..end].Replace("_", "");
        if (isFloat)
            _tokens.Add(new Token(TokenKind.Float, text, line, double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture)));
        else if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long l))
            _tokens.Add(new Token(TokenKind.Integer, text, line, l));
        else
            throw new TemplateException("OverflowError", $"integer literal {text} does not fit in 64 bits", line, "integer literal");
        return end;
    }

    /// <summary>A quoted string literal with Python's unicode-escape rules (unknown escapes keep their backslash).</summary>
    private int LexString(int pos, int line)
    {
        char quote = _src[pos];
        var sb = new StringBuilder();
        int i = pos + 1;
        while (true)
        {
            if (i >= _src.Length) throw new TemplateException("TemplateSyntaxError", "unexpected end of string", line, "string literal");
            char c = _src[i];
            if (c == quote) break;
            if (c != '\\' || i + 1 >= _src.Length)
            {
                sb.Append(c);
                i++;
                continue;
            }
            char e = _src[i + 1];
            i += 2;
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case '\n': break;
                case 'x': i = AppendHexEscape(sb, i, 2, line); break;
                case 'u': i = AppendHexEscape(sb, i, 4, line); break;
                case 'U': i = AppendHexEscape(sb, i, 8, line); break;
                case >= '0' and <= '7':
                    {
                        int value = e - '0';
                        int n = 1;
                        while (n < 3 && i < _src.Length && _src[i] >= '0' && _src[i] <= '7')
                        {
                            value = value * 8 + (_src[i] - '0');
                            i++;
                            n++;
                        }
                        sb.Append((char)value);
                        break;
                    }
                default: sb.Append('\\').Append(e); break;
            }
        }
        _tokens.Add(new Token(TokenKind.String, _src[pos..(i + 1)], line, sb.ToString()));
        return i + 1;
    }

    private int AppendHexEscape(StringBuilder sb, int i, int digits, int line)
    {
        if (i + digits > _src.Length || !int.TryParse(_src.AsSpan(i, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int cp))
            throw new TemplateException("TemplateSyntaxError", "truncated \\x/\\u escape in string literal", line, "string literal");
        sb.Append(char.ConvertFromUtf32(cp));
        return i + digits;
    }
}
