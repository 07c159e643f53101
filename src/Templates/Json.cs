using System.Globalization;
using System.Text;

namespace Infer.Templates;

/// <summary>How json.dumps was asked to write: indent, separators, key order, ASCII escaping.</summary>
internal readonly record struct JsonStyle(string? Indent, string ItemSeparator, string KeySeparator, bool SortKeys, bool EnsureAscii)
{
    /// <summary>Python's defaults: ", " and ": " without indent, "," and ": " with it.</summary>
    public static JsonStyle Python(string? indent, bool sortKeys = false, bool ensureAscii = false) =>
        new(indent, indent is null ? ", " : ",", ": ", sortKeys, ensureAscii);
}

/// <summary>
/// Python's json.dumps(value, ensure_ascii=False, indent=..., separators=..., sort_keys=...) as transformers'
/// tojson filter calls it; non-ASCII is kept as is unless ensure_ascii is asked for.
/// </summary>
internal static class PyJson
{
    private const int MaxDepth = 512;

    public static string Dumps(object? value, JsonStyle style)
    {
        var sb = new StringBuilder();
        Write(sb, value, style, 0);
        return sb.ToString();
    }

    private static void Write(StringBuilder sb, object? v, JsonStyle style, int depth)
    {
        if (depth > MaxDepth) throw TemplateRuntimeError.Value("Circular reference detected");
        switch (v)
        {
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN"
                    : double.IsPositiveInfinity(d) ? "Infinity"
                    : double.IsNegativeInfinity(d) ? "-Infinity"
                    : Py.FloatRepr(d));
                break;
            case string s: WriteString(sb, s, style.EnsureAscii); break;
            case Markup m: WriteString(sb, m.Value, style.EnsureAscii); break;
            case List<object?> list: WriteArray(sb, list, style, depth); break;
            case PyTuple t: WriteArray(sb, t.Items, style, depth); break;
            case PyDict dict: WriteObject(sb, dict, style, depth); break;
            default:
                throw TemplateRuntimeError.Type($"Object of type {Py.TypeName(v)} is not JSON serializable");
        }
    }

    private static void WriteObject(StringBuilder sb, PyDict dict, JsonStyle style, int depth)
    {
        if (dict.Count == 0)
        {
            sb.Append("{}");
            return;
        }
        IEnumerable<KeyValuePair<object, object?>> pairs = dict;
        if (style.SortKeys) pairs = dict.OrderBy(p => p.Key, Comparer<object>.Create((a, b) => Py.Compare(a, b, "<")));
        sb.Append('{');
        bool first = true;
        foreach (var (k, val) in pairs)
        {
            if (!first) sb.Append(style.ItemSeparator);
            first = false;
            NewLine(sb, style.Indent, depth + 1);
            WriteString(sb, KeyString(k), style.EnsureAscii);
            sb.Append(style.KeySeparator);
            Write(sb, val, style, depth + 1);
        }
        NewLine(sb, style.Indent, depth);
        sb.Append('}');
    }

    private static string KeyString(object k) => k switch
    {
        string s => s,
        Markup m => m.Value,
        bool b => b ? "true" : "false",
        long or double => Py.Str(k),
        _ => throw TemplateRuntimeError.Type($"keys must be str, int, float, bool or None, not {Py.TypeName(k)}"),
    };

    private static void WriteArray(StringBuilder sb, IReadOnlyList<object?> items, JsonStyle style, int depth)
    {
        if (items.Count == 0)
        {
            sb.Append("[]");
            return;
        }
        sb.Append('[');
        for (int i = 0; i < items.Count; i++)
        {
            if (i > 0) sb.Append(style.ItemSeparator);
            NewLine(sb, style.Indent, depth + 1);
            Write(sb, items[i], style, depth + 1);
        }
        NewLine(sb, style.Indent, depth);
        sb.Append(']');
    }

    private static void NewLine(StringBuilder sb, string? indent, int depth)
    {
        if (indent is null) return;
        sb.Append('\n');
        for (int i = 0; i < depth; i++) sb.Append(indent);
    }

    private static void WriteString(StringBuilder sb, string s, bool ascii)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ascii && c > 0x7e)) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
