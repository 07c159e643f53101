using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Infer.Runtime.Grammar;

/// <summary>Writes GBNF syntax: quoted literals, character classes, and JSON text as it must appear in the output.</summary>
internal static class GbnfText
{
    /// <summary>A GBNF string literal matching exactly <paramref name="text"/>.</summary>
    public static string Literal(string text)
    {
        var sb = new StringBuilder(text.Length + 2).Append('"');
        foreach (var rune in text.EnumerateRunes())
        {
            int c = rune.Value;
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c < 0x20 || c == 0x7F) sb.Append(CultureInfo.InvariantCulture, $"\\x{c:X2}");
                    else sb.Append(rune.ToString());
                    break;
            }
        }
        return sb.Append('"').ToString();
    }

    /// <summary>A GBNF character class of the code points in <paramref name="ranges"/> (inclusive pairs).</summary>
    public static string Class(ReadOnlySpan<int> ranges)
    {
        var sb = new StringBuilder("[");
        for (int i = 0; i < ranges.Length; i += 2)
        {
            ClassChar(sb, ranges[i]);
            if (ranges[i + 1] == ranges[i]) continue;
            if (ranges[i + 1] > ranges[i] + 1) sb.Append('-');
            ClassChar(sb, ranges[i + 1]);
        }
        return sb.Append(']').ToString();
    }

    private static void ClassChar(StringBuilder sb, int c)
    {
        if (c is '\\' or ']' or '[' or '-' or '"') sb.Append('\\').Append((char)c);
        else if (c == '^' && sb.Length == 1) sb.Append("\\x5E");
        else if (c < 0x20 || c == 0x7F) sb.Append(CultureInfo.InvariantCulture, $"\\x{c:X2}");
        else if (c is >= 0xD800 and <= 0xDFFF) sb.Append(CultureInfo.InvariantCulture, $"\\u{c:X4}");
        else if (c > 0xFFFF) sb.Append(CultureInfo.InvariantCulture, $"\\U{c:X8}");
        else sb.Append((char)c);
    }

    /// <summary>
    /// <paramref name="text"/> as a JSON string with its quotes, in the one canonical spelling the grammars use: <c>\"</c>,
    /// <c>\\</c>, <c>\b \f \n \r \t</c>, <c>\u00XX</c> for other control characters, everything else as itself.
    /// </summary>
    public static string JsonString(string text)
    {
        var sb = new StringBuilder(text.Length + 2).Append('"');
        foreach (char c in text) AppendJsonChar(sb, c);
        return sb.Append('"').ToString();
    }

    public static void AppendJsonChar(StringBuilder sb, char c)
    {
        switch (c)
        {
            case '"': sb.Append("\\\""); break;
            case '\\': sb.Append("\\\\"); break;
            case '\b': sb.Append("\\b"); break;
            case '\f': sb.Append("\\f"); break;
            case '\n': sb.Append("\\n"); break;
            case '\r': sb.Append("\\r"); break;
            case '\t': sb.Append("\\t"); break;
            default:
                if (c < 0x20) sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
                else sb.Append(c);
                break;
        }
    }

    /// <summary>A JSON value written compactly (no spaces), strings canonical, numbers as written in the schema.</summary>
    public static string CompactJson(JsonElement e)
    {
        var sb = new StringBuilder();
        WriteCompact(sb, e);
        return sb.ToString();
    }

    private static void WriteCompact(StringBuilder sb, JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                sb.Append('{');
                bool first = true;
                foreach (var p in e.EnumerateObject())
                {
                    if (!first) sb.Append(',');
                    first = false;
                    sb.Append(JsonString(p.Name)).Append(':');
                    WriteCompact(sb, p.Value);
                }
                sb.Append('}');
                break;
            case JsonValueKind.Array:
                sb.Append('[');
                int i = 0;
                foreach (var item in e.EnumerateArray())
                {
                    if (i++ > 0) sb.Append(',');
                    WriteCompact(sb, item);
                }
                sb.Append(']');
                break;
            case JsonValueKind.String:
                sb.Append(JsonString(e.GetString()!));
                break;
            default:
                sb.Append(e.GetRawText());
                break;
        }
    }
}
