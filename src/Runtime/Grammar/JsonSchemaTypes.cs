using System.Numerics;
using System.Text;
using System.Text.Json;

namespace Infer.Runtime.Grammar;

/// <summary>The per-type rules of the converter: objects, arrays, strings, integers and numbers.</summary>
internal sealed partial class JsonSchemaConverter
{
    private static readonly HashSet<string> Annotations = new(StringComparer.Ordinal)
    {
        "$schema", "$id", "$comment", "$anchor", "$defs", "definitions", "title", "description", "default", "examples",
        "deprecated", "readOnly", "writeOnly",
    };

    private static readonly HashSet<string> Structural = new(StringComparer.Ordinal)
        { "$ref", "anyOf", "oneOf", "allOf", "const", "enum", "type", "not", "if", "then", "else" };

    private static readonly HashSet<string> ObjectKeywords = new(StringComparer.Ordinal)
    {
        "properties", "required", "additionalProperties", "minProperties", "maxProperties", "patternProperties",
        "propertyNames", "dependentRequired", "dependentSchemas", "dependencies", "unevaluatedProperties",
    };

    private static readonly HashSet<string> ArrayKeywords = new(StringComparer.Ordinal)
    {
        "items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains", "minContains", "maxContains", "additionalItems",
        "unevaluatedItems",
    };

    private static readonly HashSet<string> StringKeywords = new(StringComparer.Ordinal)
        { "minLength", "maxLength", "pattern", "format", "contentEncoding", "contentMediaType", "contentSchema" };

    private static readonly HashSet<string> NumberKeywords = new(StringComparer.Ordinal)
        { "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf" };

    /// <summary>Every keyword must be known; those no type can honour are errors wherever they appear.</summary>
    private static void CheckKeywords(JsonElement schema, string path)
    {
        foreach (var p in schema.EnumerateObject())
        {
            string k = p.Name;
            if (k is "not" or "if" or "then" or "else")
                throw Error(k, path, "conditional and negated schemas are not supported");
            if (!Annotations.Contains(k) && !Structural.Contains(k) && !ObjectKeywords.Contains(k) && !ArrayKeywords.Contains(k)
                && !StringKeywords.Contains(k) && !NumberKeywords.Contains(k))
                throw Error(k, path, "unknown or unsupported keyword");
        }
    }

    private static void OnlyAnnotationsBeside(JsonElement schema, string keyword, string path)
    {
        foreach (var p in schema.EnumerateObject())
            if (p.Name != keyword && !Annotations.Contains(p.Name))
                throw Error(p.Name, path, $"cannot be combined with '{keyword}' (the grammar cannot intersect schemas)");
    }

    private static void Unsupported(JsonElement schema, string path, params string[] keywords)
    {
        foreach (var k in keywords)
            if (schema.TryGetProperty(k, out _)) throw Error(k, path, "not supported");
    }

    private static int? Count(JsonElement schema, string keyword, string path)
    {
        if (!schema.TryGetProperty(keyword, out var v)) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int n) || n < 0)
            throw Error(keyword, path, "expected a non-negative integer");
        return n;
    }

    private static string Prefix(string name) => name == "root" ? "" : name + "-";

    private static string Pointer(string path, string key, string name) =>
        $"{path}/{key}/{name.Replace("~", "~0").Replace("/", "~1")}";

    private string ObjectRule(JsonElement schema, string name, string path)
    {
        Unsupported(schema, path, "maxProperties", "patternProperties", "propertyNames", "dependentRequired", "dependentSchemas",
            "dependencies", "unevaluatedProperties");
        BuiltIn("space");
        var props = new List<(string Name, JsonElement Schema)>();
        if (schema.TryGetProperty("properties", out var properties))
        {
            if (properties.ValueKind != JsonValueKind.Object) throw Error("properties", path, "expected an object");
            foreach (var p in properties.EnumerateObject()) props.Add((p.Name, p.Value));
        }
        var required = new List<string>();
        if (schema.TryGetProperty("required", out var req))
        {
            if (req.ValueKind != JsonValueKind.Array || req.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.String))
                throw Error("required", path, "expected an array of property names");
            required.AddRange(req.EnumerateArray().Select(x => x.GetString()!).Distinct());
        }
        JsonElement? additional = schema.TryGetProperty("additionalProperties", out var ap) ? ap : null;
        if (additional is { ValueKind: not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Object) })
            throw Error("additionalProperties", path, "expected a boolean or a schema");
        bool additionalAllowed = additional is not { ValueKind: JsonValueKind.False };

        // required names the schema does not declare take the additionalProperties schema
        foreach (var r in required.Where(r => props.All(p => p.Name != r)).ToList())
        {
            if (!additionalAllowed)
                throw Error("required", path, $"'{r}' is required but not in 'properties', and additionalProperties is false");
            props.Add((r, additional ?? default));
        }
        if (Count(schema, "minProperties", path) is int minProps && minProps > required.Count)
            throw Error("minProperties", path, "only a minProperties that the required properties already satisfy is supported");
        if (props.Count == 0 && additionalAllowed && additional is null or { ValueKind: JsonValueKind.True }) return BuiltIn("object");

        string prefix = Prefix(name);
        var kvs = new List<(string Rule, bool Required)>();
        foreach (var (prop, propSchema) in props)
        {
            string value = propSchema.ValueKind == JsonValueKind.Undefined ? BuiltIn("value")
                : Visit(propSchema, prefix + prop, Pointer(path, "properties", prop));
            string kv = AddRule($"{prefix}{prop}-kv", $"{GbnfText.Literal(GbnfText.JsonString(prop))} space \":\" space {value}");
            kvs.Add((kv, required.Contains(prop)));
        }
        string? extra = null;
        if (additionalAllowed)
        {
            string value = additional is { ValueKind: JsonValueKind.Object } s ? Visit(s, prefix + "additional-value", path + "/additionalProperties")
                : BuiltIn("value");
            string key = AddRule(prefix + "additional-key", NotStrings(props.Select(p => p.Name)));
            extra = AddRule(prefix + "additional-kv", $"{key} \":\" space {value}");
        }
        var rest = new Dictionary<(int, bool), string>();
        string body = Members(kvs, extra, 0, first: true, prefix, rest);
        return AddRule(name, $"\"{{\" space {body} \"}}\" space".Replace("  ", " "));
    }

    /// <summary>
    /// GBNF for the members from index <paramref name="i"/> on, in declared order: required ones always, optional
    /// ones maybe, then any number of additional ones. <paramref name="first"/>: nothing written yet (no comma).
    /// </summary>
    private string Members(List<(string Rule, bool Required)> kvs, string? extra, int i, bool first, string prefix,
        Dictionary<(int, bool), string> rest)
    {
        string comma = first ? "" : "\",\" space ";
        if (i == kvs.Count)
        {
            if (extra is null) return "";
            return first ? $"({extra} (\",\" space {extra})*)?" : $"(\",\" space {extra})*";
        }
        var (kv, required) = kvs[i];
        string taken = $"{comma}{kv} {Members(kvs, extra, i + 1, false, prefix, rest)}".TrimEnd();
        if (required) return taken;
        if (rest.TryGetValue((i, first), out var known)) return known;
        string skipped = Members(kvs, extra, i + 1, first, prefix, rest);
        // (an empty alternative is written as '?': a line ending in '|' would continue on the next line)
        string rule = AddRule($"{prefix}rest-{i}{(first ? "-first" : "")}", skipped.Length == 0 ? $"({taken})?" : $"{taken} | {skipped}");
        rest[(i, first)] = rule;
        return rule;
    }

    /// <summary>A JSON string (with space) whose text is none of <paramref name="names"/>: keys of additional properties.</summary>
    private string NotStrings(IEnumerable<string> names)
    {
        BuiltIn("key-char");
        BuiltIn("space");
        var trie = new Trie();
        foreach (var n in names) trie.Add(n);
        return $"\"\\\"\" {NotIn(trie)} \"\\\"\" space";
    }

    private sealed class Trie
    {
        public readonly SortedDictionary<int, Trie> Children = []; // by code point
        public bool Ends;

        public void Add(string s)
        {
            var node = this;
            foreach (var rune in s.EnumerateRunes())
            {
                if (!node.Children.TryGetValue(rune.Value, out var next)) node.Children[rune.Value] = next = new Trie();
                node = next;
            }
            node.Ends = true;
        }
    }

    /// <summary>Key text that does not spell a name in the trie below <paramref name="node"/>.</summary>
    private static string NotIn(Trie node)
    {
        if (node.Children.Count == 0) return node.Ends ? "key-char+" : "key-char*";
        var parts = new List<string>();
        foreach (var (c, child) in node.Children)
        {
            var sb = new StringBuilder();
            if (c < 0x10000) GbnfText.AppendJsonChar(sb, (char)c);
            else sb.Append(char.ConvertFromUtf32(c));
            parts.Add($"{GbnfText.Literal(sb.ToString())} {Group(NotIn(child))}");
        }
        parts.Add(KeyCharExcept(node.Children.Keys) + " key-char*");
        string alternatives = string.Join(" | ", parts);
        return node.Ends ? $"({alternatives})" : $"({alternatives})?";
    }

    private static string Group(string s) => s.Contains(' ') && !(s.StartsWith('(') && s.EndsWith(')')) ? $"({s})" : s;

    /// <summary>One key character other than <paramref name="excluded"/> (a key-char, in its one spelling).</summary>
    private static string KeyCharExcept(IEnumerable<int> excluded)
    {
        var ex = excluded.ToHashSet();
        var raw = new List<(int, int)> { ('"', '"'), ('\\', '\\'), (0x7F, 0x7F), (0, 0x1F) };
        raw.AddRange(ex.Select(c => (c, c)));
        var parts = new List<string>();
        var set = CharSet.FromRanges(raw, negate: true);
        if (!set.IsEmpty) parts.Add(GbnfText.Class(set.Ranges));
        var escapes = new StringBuilder();
        foreach (var (ch, letter) in new[] { ('"', '"'), ('\\', '\\'), ('\b', 'b'), ('\f', 'f'), ('\n', 'n'), ('\r', 'r'), ('\t', 't') })
            if (!ex.Contains(ch)) escapes.Append(letter == '"' || letter == '\\' ? "\\" + letter : letter.ToString());
        if (escapes.Length > 0) parts.Add($"[\\\\] [{escapes}]");
        return "(" + string.Join(" | ", parts) + ")";
    }

    private string ArrayRule(JsonElement schema, string name, string path)
    {
        Unsupported(schema, path, "prefixItems", "contains", "minContains", "maxContains", "additionalItems", "unevaluatedItems");
        if (schema.TryGetProperty("uniqueItems", out var unique) && unique.ValueKind != JsonValueKind.False)
            throw Error("uniqueItems", path, "not supported (the grammar cannot compare items)");
        int min = Count(schema, "minItems", path) ?? 0;
        int? max = Count(schema, "maxItems", path);
        string? item = null;
        if (schema.TryGetProperty("items", out var items))
        {
            if (items.ValueKind == JsonValueKind.Array) throw Error("items", path, "an array of schemas (a tuple) is not supported");
            if (items.ValueKind == JsonValueKind.False) max = 0;
            else item = Visit(items, Prefix(name) + "item", path + "/items");
        }
        item ??= BuiltIn("value");
        BuiltIn("space");
        if (max < min) throw Error("minItems", path, $"no array has at least {min} and at most {max} items");
        if (max == 0) return AddRule(name, "\"[\" space \"]\" space");
        if (Math.Max(min, max ?? 0) > GbnfParser.MaxRepetition) throw Error(max > min ? "maxItems" : "minItems", path, "too many items to express");
        string more = (Math.Max(min - 1, 0), max - 1) switch
        {
            (0, null) => "*",
            (1, null) => "+",
            (int a, null) => $"{{{a},}}",
            (0, 1) => "?",
            (int a, int b) when a == b => $"{{{a}}}",
            (int a, int b) => $"{{{a},{b}}}",
        };
        string list = max == 1 ? item : $"{item} (\",\" space {item}){more}";
        if (min == 0) list = $"({list})?";
        return AddRule(name, $"\"[\" space {list} \"]\" space");
    }

    private string StringRule(JsonElement schema, string name, string path)
    {
        Unsupported(schema, path, "contentEncoding", "contentMediaType", "contentSchema");
        int? minLength = Count(schema, "minLength", path), maxLength = Count(schema, "maxLength", path);
        bool lengths = minLength is not null || maxLength is not null;
        string? format = null;
        if (schema.TryGetProperty("format", out var formatValue))
        {
            format = formatValue.ValueKind == JsonValueKind.String ? formatValue.GetString()! : "";
            if (format is not ("date" or "time" or "date-time" or "uuid"))
            {
                if (!unknownFormatsAsStrings)
                    throw Error("format", path, $"'{formatValue}' is not supported (supported: date, time, date-time, uuid)");
                format = null; // an annotation: the string rules below apply
            }
        }
        if (schema.TryGetProperty("pattern", out var pattern))
        {
            if (pattern.ValueKind != JsonValueKind.String) throw Error("pattern", path, "expected a string");
            if (lengths) throw Error(minLength is not null ? "minLength" : "maxLength", path, "cannot be combined with 'pattern'");
            if (format is not null) throw Error("format", path, "cannot be combined with 'pattern'");
            BuiltIn("char");
            BuiltIn("space");
            string inner = JsonPattern.Convert(pattern.GetString()!, m => Error("pattern", path, m), AddRule, "char");
            return AddRule(name, $"\"\\\"\" {inner} \"\\\"\" space");
        }
        if (format is not null)
        {
            if (lengths) throw Error(minLength is not null ? "minLength" : "maxLength", path, "cannot be combined with 'format'");
            return BuiltIn(format + "-string");
        }
        if (!lengths) return BuiltIn("string");
        int lo = minLength ?? 0;
        if (maxLength < lo) throw Error("minLength", path, $"no string is at least {lo} and at most {maxLength} characters long");
        if (Math.Max(lo, maxLength ?? 0) > GbnfParser.MaxRepetition)
            throw Error(maxLength > lo ? "maxLength" : "minLength", path, "too long to express");
        BuiltIn("char");
        BuiltIn("space");
        string count = maxLength is int hi ? (hi == lo ? $"{{{lo}}}" : $"{{{lo},{hi}}}") : $"{{{lo},}}";
        return AddRule(name, $"\"\\\"\" char{count} \"\\\"\" space");
    }

    /// <summary>A numeric bound, and whether it is exclusive; draft 4's boolean exclusiveMinimum/Maximum are honoured too.</summary>
    private static (decimal Value, bool Exclusive, string Keyword)? Bound(JsonElement schema, string path, bool lower)
    {
        string inclusiveKey = lower ? "minimum" : "maximum", exclusiveKey = lower ? "exclusiveMinimum" : "exclusiveMaximum";
        (decimal, bool, string)? best = null;
        bool draft4Exclusive = schema.TryGetProperty(exclusiveKey, out var ex) && ex.ValueKind == JsonValueKind.True;
        foreach (var (key, exclusive) in new[] { (inclusiveKey, draft4Exclusive), (exclusiveKey, true) })
        {
            if (!schema.TryGetProperty(key, out var v) || v.ValueKind is JsonValueKind.True or JsonValueKind.False) continue;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetDecimal(out decimal d)) throw Error(key, path, "expected a number within ±7.9e28");
            bool tighter = best is not { } b || (lower ? d > b.Item1 || d == b.Item1 && exclusive : d < b.Item1 || d == b.Item1 && exclusive);
            if (tighter) best = (d, exclusive, key);
        }
        return best;
    }

    private string IntegerRule(JsonElement schema, string name, string path)
    {
        if (schema.TryGetProperty("multipleOf", out var m) && !(m.ValueKind == JsonValueKind.Number && m.TryGetDecimal(out var step) && step == 1))
            throw Error("multipleOf", path, "not supported (except 1 for integers)");
        var lo = Bound(schema, path, lower: true);
        var hi = Bound(schema, path, lower: false);
        if (lo is null && hi is null) return BuiltIn("integer");
        BigInteger? min = lo is { } l ? new BigInteger(l.Exclusive ? decimal.Floor(l.Value) + 1 : decimal.Ceiling(l.Value)) : null;
        BigInteger? max = hi is { } h ? new BigInteger(h.Exclusive ? decimal.Ceiling(h.Value) - 1 : decimal.Floor(h.Value)) : null;
        string expr = JsonNumberRanges.Integer(min, max) ?? throw Error(lo!.Value.Keyword, path, "no integer lies within the bounds");
        BuiltIn("space");
        return AddRule(name, $"({expr}) space");
    }

    private string NumberRule(JsonElement schema, string name, string path)
    {
        Unsupported(schema, path, "multipleOf");
        var lo = Bound(schema, path, lower: true);
        var hi = Bound(schema, path, lower: false);
        if (lo is null && hi is null) return BuiltIn("number");
        foreach (var b in new[] { lo, hi })
            if (b is { } x && x.Value != decimal.Truncate(x.Value))
                throw Error(x.Keyword, path, $"{x.Value}: only integer bounds are supported for numbers (use type integer, or round the bound)");
        BigInteger? min = lo is { } l ? new BigInteger(l.Value) : null;
        BigInteger? max = hi is { } h ? new BigInteger(h.Value) : null;
        string expr = JsonNumberRanges.Number(min, lo?.Exclusive ?? false, max, hi?.Exclusive ?? false)
            ?? throw Error(lo!.Value.Keyword, path, "no number lies within the bounds");
        BuiltIn("space");
        return AddRule(name, $"({expr}) space");
    }
}
