using System.Text.Json;
using System.Text.Json.Nodes;

namespace Infer.Templates;

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
