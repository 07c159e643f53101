using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Infer.Runtime.Templates;

/// <summary>
/// Python's json.dumps(value, ensure_ascii=False, indent=..., sort_keys=...) as transformers' tojson filter
/// calls it: separators ", " and ": " without indent, "," and ": " with it; non-ASCII kept as is.
/// </summary>
internal static class PyJson
{
    private const int MaxDepth = 512;

    public static string Dumps(object? value, string? indent, bool sortKeys, bool ensureAscii = false)
    {
        var sb = new StringBuilder();
        Write(sb, value, indent, sortKeys, ensureAscii, 0);
        return sb.ToString();
    }

    private static void Write(StringBuilder sb, object? v, string? indent, bool sortKeys, bool ascii, int depth)
    {
        if (depth > MaxDepth) throw TemplateRuntimeError.Value("Circular reference detected");
        switch (v)
        {
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : Py.FloatRepr(d));
                break;
            case string s: WriteString(sb, s, ascii); break;
            case Markup m: WriteString(sb, m.Value, ascii); break;
            case List<object?> list: WriteArray(sb, list, indent, sortKeys, ascii, depth); break;
            case PyTuple t: WriteArray(sb, t.Items, indent, sortKeys, ascii, depth); break;
            case PyDict dict:
                {
                    if (dict.Count == 0)
                    {
                        sb.Append("{}");
                        break;
                    }
                    IEnumerable<KeyValuePair<object, object?>> pairs = dict;
                    if (sortKeys) pairs = dict.OrderBy(p => p.Key, Comparer<object>.Create((a, b) => Py.Compare(a, b, "<")));
                    sb.Append('{');
                    bool first = true;
                    foreach (var (k, val) in pairs)
                    {
                        if (!first) sb.Append(indent is null ? ", " : ",");
                        first = false;
                        NewLine(sb, indent, depth + 1);
                        WriteString(sb, KeyString(k), ascii);
                        sb.Append(": ");
                        Write(sb, val, indent, sortKeys, ascii, depth + 1);
                    }
                    NewLine(sb, indent, depth);
                    sb.Append('}');
                    break;
                }
            case Namespace:
            case Undefined:
            default:
                throw TemplateRuntimeError.Type($"Object of type {Py.TypeName(v)} is not JSON serializable");
        }
    }

    private static string KeyString(object k) => k switch
    {
        string s => s,
        Markup m => m.Value,
        bool b => b ? "true" : "false",
        long or double => Py.Str(k),
        _ => throw TemplateRuntimeError.Type($"keys must be str, int, float, bool or None, not {Py.TypeName(k)}"),
    };

    private static void WriteArray(StringBuilder sb, IReadOnlyList<object?> items, string? indent, bool sortKeys, bool ascii, int depth)
    {
        if (items.Count == 0)
        {
            sb.Append("[]");
            return;
        }
        sb.Append('[');
        for (int i = 0; i < items.Count; i++)
        {
            if (i > 0) sb.Append(indent is null ? ", " : ",");
            NewLine(sb, indent, depth + 1);
            Write(sb, items[i], indent, sortKeys, ascii, depth + 1);
        }
        NewLine(sb, indent, depth);
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

/// <summary>Turns .NET and JSON values into the values templates see.</summary>
public static class TemplateValues
{
    /// <summary>A JSON object as template variables: key order kept, integers as int, other numbers as float.</summary>
    public static Dictionary<string, object?> FromJson(JsonElement obj)
    {
        if (obj.ValueKind != JsonValueKind.Object)
            throw new ArgumentException($"template context must be a JSON object, not {obj.ValueKind}", nameof(obj));
        var d = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var p in obj.EnumerateObject()) d[p.Name] = FromElement(p.Value);
        return d;
    }

    /// <summary>Parses a JSON object text into template variables.</summary>
    public static Dictionary<string, object?> FromJson(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return FromJson(doc.RootElement);
    }

    internal static object? FromElement(JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                {
                    var d = new PyDict();
                    foreach (var p in e.EnumerateObject()) d[p.Name] = FromElement(p.Value);
                    return d;
                }
            case JsonValueKind.Array:
                {
                    var l = new List<object?>(e.GetArrayLength());
                    foreach (var x in e.EnumerateArray()) l.Add(FromElement(x));
                    return l;
                }
            case JsonValueKind.String: return e.GetString();
            case JsonValueKind.True: return true;
            case JsonValueKind.False: return false;
            case JsonValueKind.Null: return null;
            case JsonValueKind.Number:
                {
                    var raw = e.GetRawText();
                    bool isInt = raw.IndexOfAny(['.', 'e', 'E']) < 0;
                    if (isInt && e.TryGetInt64(out long l)) return l;
                    return e.GetDouble();
                }
            default: return null;
        }
    }

    /// <summary>
    /// Converts a caller's value into a template value (deep copy): dictionaries become ordered dicts,
    /// sequences become lists, integers become int, floating types become float, JSON becomes its values.
    /// </summary>
    internal static object? Normalize(object? v, int depth = 0)
    {
        if (depth > 256) throw new ArgumentException("template variables nest deeper than 256 levels");
        switch (v)
        {
            case null or string or bool or long or double: return v;
            case int i: return (long)i;
            case short s: return (long)s;
            case byte b: return (long)b;
            case sbyte sb: return (long)sb;
            case uint ui: return (long)ui;
            case ushort us: return (long)us;
            case ulong ul: return ul <= long.MaxValue ? (long)ul : (double)ul;
            case float f: return (double)f;
            case decimal m: return (double)m;
            case char c: return c.ToString();
            case Undefined or Namespace or MacroValue or BuiltinFunction: return v;
            case JsonElement je: return FromElement(je);
            case JsonNode node: return FromElement(JsonSerializer.SerializeToElement(node));
            case ChatMessage msg:
                {
                    var d = new PyDict(2);
                    d["role"] = msg.Role;
                    d["content"] = msg.Content;
                    return d;
                }
            case PyDict pd:
                {
                    var d = new PyDict(pd.Count);
                    foreach (var (k, x) in pd) d[k] = Normalize(x, depth + 1);
                    return d;
                }
            case PyTuple t: return new PyTuple(t.Items.Select(x => Normalize(x, depth + 1)).ToArray());
            case System.Collections.IDictionary dict:
                {
                    var d = new PyDict(dict.Count);
                    foreach (System.Collections.DictionaryEntry entry in dict)
                        d[Normalize(entry.Key, depth + 1) ?? throw new ArgumentException("null dictionary key")] = Normalize(entry.Value, depth + 1);
                    return d;
                }
            case IEnumerable<KeyValuePair<string, object?>> pairs:
                {
                    var d = new PyDict();
                    foreach (var (k, x) in pairs) d[k] = Normalize(x, depth + 1);
                    return d;
                }
            case System.Collections.IEnumerable seq:
                {
                    var l = new List<object?>();
                    foreach (var x in seq) l.Add(Normalize(x, depth + 1));
                    return l;
                }
            default: return v;
        }
    }
}
