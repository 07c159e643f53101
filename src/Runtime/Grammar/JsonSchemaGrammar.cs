using System.Text;
using System.Text.Json;

namespace Infer.Runtime.Grammar;

/// <summary>
/// JSON schema to GBNF, for the subset llama.cpp's json_schema_to_grammar handles: objects (<c>properties</c>,
/// <c>required</c>, <c>additionalProperties</c>), arrays (<c>items</c>, <c>minItems</c>, <c>maxItems</c>), strings
/// (<c>minLength</c>, <c>maxLength</c>, <c>pattern</c>, <c>format</c> date / time / date-time / uuid), integers with
/// exact bounds, numbers with integer bounds, booleans, null, <c>enum</c>, <c>const</c>, <c>anyOf</c> / <c>oneOf</c>,
/// <c>$ref</c> within the document (<c>#/$defs/...</c>, <c>#/definitions/...</c>), <c>type</c> lists, and <c>{}</c> /
/// <c>true</c> for any value. Properties come in the order the schema declares them; optional ones may be left out.
/// A keyword the grammar cannot express is a <see cref="JsonSchemaException"/> naming it, never silently dropped.
/// Annotations (title, description, default, examples, ...) are ignored. A <c>format</c> other than those four is an
/// error too, unless the caller asks for <c>unknownFormatsAsStrings</c>: then, as JSON Schema 2020-12 treats
/// <c>format</c> by default (an annotation) and as llama.cpp does, it is a plain string (its lengths still apply).
/// </summary>
public static class JsonSchemaGrammar
{
    /// <summary>GBNF for any JSON object (OpenAI's <c>response_format: {"type": "json_object"}</c>).</summary>
    public static string AnyObject { get; } = BuiltIn("object");

    /// <summary>GBNF for any JSON value.</summary>
    public static string AnyValue { get; } = BuiltIn("value");

    private static string BuiltIn(string name)
    {
        var c = new JsonSchemaConverter(default, false);
        return c.Format(c.BuiltIn(name));
    }

    /// <summary>Converts a JSON schema (text) to GBNF.</summary>
    /// <param name="schemaJson">the schema as JSON text (nested at most 256 deep).</param>
    /// <param name="unknownFormatsAsStrings">a <c>format</c> the grammar cannot enforce is a plain string, not an error.</param>
    /// <exception cref="JsonSchemaException">a keyword cannot be expressed (the message names it and where it is).</exception>
    /// <exception cref="GrammarException">the text is not JSON.</exception>
    public static string Convert(string schemaJson, bool unknownFormatsAsStrings = false)
    {
        ArgumentNullException.ThrowIfNull(schemaJson);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(schemaJson, new JsonDocumentOptions { MaxDepth = 256 }); }
        catch (JsonException e) { throw new GrammarException($"the JSON schema is not valid JSON: {e.Message}"); }
        using (doc) return Convert(doc.RootElement, unknownFormatsAsStrings);
    }

    /// <summary>Converts a JSON schema to GBNF.</summary>
    /// <param name="schema">the schema's root; <c>$ref</c>s resolve against it.</param>
    /// <param name="unknownFormatsAsStrings">a <c>format</c> the grammar cannot enforce is a plain string, not an error.</param>
    /// <exception cref="JsonSchemaException">a keyword cannot be expressed (the message names it and where it is).</exception>
    public static string Convert(JsonElement schema, bool unknownFormatsAsStrings = false)
    {
        var c = new JsonSchemaConverter(schema, unknownFormatsAsStrings);
        return c.Format(c.Visit(schema, "root", "#"));
    }
}

/// <summary>The conversion itself: one visit per schema object, each returning the name of a rule matching its values.</summary>
internal sealed partial class JsonSchemaConverter(JsonElement root, bool unknownFormatsAsStrings)
{
    private readonly List<string> _order = [];
    private readonly Dictionary<string, string?> _rules = new(StringComparer.Ordinal); // null: reserved, body pending
    private readonly HashSet<string> _builtIns = [];
    private readonly Dictionary<string, string> _refRules = new(StringComparer.Ordinal);
    private int _depth;

    /// <summary>Deepest nesting of schemas, references included (the visit recurses; a hostile schema must not overflow the stack).</summary>
    private const int MaxDepth = 300;

    public string Format(string rootRule)
    {
        if (rootRule != "root") _rules["root"] = rootRule;
        var sb = new StringBuilder();
        sb.Append("root ::= ").Append(_rules["root"]).Append('\n');
        foreach (var name in _order)
            if (name != "root") sb.Append(name).Append(" ::= ").Append(_rules[name]).Append('\n');
        return sb.ToString();
    }

    private static JsonSchemaException Error(string keyword, string path, string message) => new(message, keyword, path);

    public string BuiltIn(string name)
    {
        JsonGrammarRules.AddWithDependencies(name, (n, body) =>
        {
            _rules[n] = body;
            _order.Add(n);
        }, _builtIns);
        return name;
    }

    private static string Sanitize(string name)
    {
        var sb = new StringBuilder(name.Length);
        foreach (char c in name) sb.Append(char.IsAsciiLetterOrDigit(c) || c == '-' ? c : '-');
        return sb.Length == 0 ? "x" : sb.ToString();
    }

    private bool Taken(string name) => _rules.ContainsKey(name) || JsonGrammarRules.IsBuiltIn(name) || name == "root";

    /// <summary>Adds a rule (a rule with the same name and body is shared); returns its name.</summary>
    private string AddRule(string name, string body)
    {
        name = Sanitize(name);
        if (name == "root" && !_rules.ContainsKey("root")) return Set(Reserve(name, exact: true), body);
        if (_rules.TryGetValue(name, out var existing) && existing == body) return name;
        if (!Taken(name)) return Set(Reserve(name, exact: true), body);
        for (int i = 1; ; i++)
        {
            string candidate = name + i;
            if (_rules.TryGetValue(candidate, out existing) && existing == body) return candidate;
            if (!Taken(candidate)) return Set(Reserve(candidate, exact: true), body);
        }
    }

    private string Reserve(string name, bool exact = false)
    {
        if (!exact)
        {
            name = Sanitize(name);
            string baseName = name;
            for (int i = 1; Taken(name); i++) name = baseName + i;
        }
        _rules[name] = null;
        _order.Add(name);
        return name;
    }

    private string Set(string name, string body)
    {
        _rules[name] = body;
        return name;
    }

    /// <summary>A rule matching the values <paramref name="schema"/> accepts, each followed by optional whitespace.</summary>
    public string Visit(JsonElement schema, string name, string path)
    {
        if (++_depth > MaxDepth) throw Error("$ref", path, $"schemas are nested more than {MaxDepth} deep");
        try { return VisitSchema(schema, name, path); }
        finally { _depth--; }
    }

    private string VisitSchema(JsonElement schema, string name, string path)
    {
        if (schema.ValueKind == JsonValueKind.True) return BuiltIn("value");
        if (schema.ValueKind == JsonValueKind.False) throw Error("false", path, "the schema false accepts no value");
        if (schema.ValueKind != JsonValueKind.Object) throw Error("schema", path, $"a schema must be an object or a boolean, not {schema.ValueKind}");
        CheckKeywords(schema, path);

        if (schema.TryGetProperty("$ref", out var reference))
        {
            OnlyAnnotationsBeside(schema, "$ref", path);
            return Ref(reference, path);
        }
        foreach (var key in new[] { "anyOf", "oneOf" })
        {
            if (!schema.TryGetProperty(key, out var alternatives)) continue;
            OnlyAnnotationsBeside(schema, key, path);
            if (alternatives.ValueKind != JsonValueKind.Array || alternatives.GetArrayLength() == 0)
                throw Error(key, path, "expected a non-empty array of schemas");
            // oneOf is treated as anyOf: the grammar cannot forbid a value that matches two alternatives
            var rules = alternatives.EnumerateArray().Select((alt, i) => Visit(alt, $"{name}-{i}", $"{path}/{key}/{i}"));
            return AddRule(name, string.Join(" | ", rules));
        }
        if (schema.TryGetProperty("allOf", out var all))
        {
            OnlyAnnotationsBeside(schema, "allOf", path);
            if (all.ValueKind != JsonValueKind.Array || all.GetArrayLength() != 1)
                throw Error("allOf", path, "only allOf with exactly one schema is supported");
            return Visit(all[0], name, path + "/allOf/0");
        }
        var types = Types(schema, path);
        if (schema.TryGetProperty("const", out var constant)) return Constants(schema, [constant], types, name, path, "const");
        if (schema.TryGetProperty("enum", out var values))
        {
            if (values.ValueKind != JsonValueKind.Array || values.GetArrayLength() == 0) throw Error("enum", path, "expected a non-empty array");
            return Constants(schema, [.. values.EnumerateArray()], types, name, path, "enum");
        }
        if (types.Count == 0) return BuiltIn("value");
        if (types.Count == 1) return VisitType(schema, types[0], name, path);
        return AddRule(name, string.Join(" | ", types.Select(t => VisitType(schema, t, $"{name}-{t}", path))));
    }

    private string VisitType(JsonElement schema, string type, string name, string path) => type switch
    {
        "object" => ObjectRule(schema, name, path),
        "array" => ArrayRule(schema, name, path),
        "string" => StringRule(schema, name, path),
        "integer" => IntegerRule(schema, name, path),
        "number" => NumberRule(schema, name, path),
        "boolean" => BuiltIn("boolean"),
        "null" => BuiltIn("null"),
        _ => throw Error("type", path, $"unknown type '{type}' (known: object, array, string, integer, number, boolean, null)"),
    };

    /// <summary>The types a schema allows: its <c>type</c>, or the kinds its keywords constrain (none: any value).</summary>
    private static List<string> Types(JsonElement schema, string path)
    {
        if (schema.TryGetProperty("type", out var t))
        {
            if (t.ValueKind == JsonValueKind.String) return [t.GetString()!];
            if (t.ValueKind == JsonValueKind.Array && t.GetArrayLength() > 0 && t.EnumerateArray().All(x => x.ValueKind == JsonValueKind.String))
                return t.EnumerateArray().Select(x => x.GetString()!).Distinct().ToList();
            throw Error("type", path, "expected a type name or a non-empty array of type names");
        }
        var kinds = new List<string>();
        foreach (var p in schema.EnumerateObject())
        {
            string? kind = ObjectKeywords.Contains(p.Name) ? "object" : ArrayKeywords.Contains(p.Name) ? "array"
                : StringKeywords.Contains(p.Name) ? "string" : NumberKeywords.Contains(p.Name) ? "number" : null;
            if (kind is not null && !kinds.Contains(kind)) kinds.Add(kind);
        }
        return kinds;
    }

    private string Constants(JsonElement schema, List<JsonElement> values, List<string> types, string name, string path, string keyword)
    {
        foreach (var p in schema.EnumerateObject())
            if (p.Name != keyword && p.Name != "type" && !Annotations.Contains(p.Name))
                throw Error(p.Name, path, $"cannot be combined with '{keyword}'");
        var kept = values.Where(v => types.Count == 0 || types.Any(t => HasType(v, t))).ToList();
        if (kept.Count == 0) throw Error(keyword, path, "no value has the schema's type");
        var literals = kept.Select(v => GbnfText.Literal(GbnfText.CompactJson(v))).Distinct();
        BuiltIn("space");
        return AddRule(name, "(" + string.Join(" | ", literals) + ") space");
    }

    private static bool HasType(JsonElement v, string type) => type switch
    {
        "object" => v.ValueKind == JsonValueKind.Object,
        "array" => v.ValueKind == JsonValueKind.Array,
        "string" => v.ValueKind == JsonValueKind.String,
        "number" => v.ValueKind == JsonValueKind.Number,
        "integer" => v.ValueKind == JsonValueKind.Number && v.TryGetDecimal(out var d) && d == decimal.Truncate(d),
        "boolean" => v.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => v.ValueKind == JsonValueKind.Null,
        _ => false,
    };

    private string Ref(JsonElement reference, string path)
    {
        if (reference.ValueKind != JsonValueKind.String) throw Error("$ref", path, "expected a string");
        string target = reference.GetString()!;
        if (_refRules.TryGetValue(target, out var known)) return known;
        if (target == "#") return "root";
        if (!target.StartsWith("#/", StringComparison.Ordinal))
            throw Error("$ref", path, $"'{target}': only references within the schema (#/$defs/NAME, #/definitions/NAME) are supported");
        var node = root;
        foreach (var raw in target[2..].Split('/'))
        {
            string segment = Uri.UnescapeDataString(raw).Replace("~1", "/").Replace("~0", "~");
            if (node.ValueKind == JsonValueKind.Object && node.TryGetProperty(segment, out var child)) node = child;
            else if (node.ValueKind == JsonValueKind.Array && int.TryParse(segment, out int i) && i >= 0 && i < node.GetArrayLength()) node = node[i];
            else throw Error("$ref", path, $"'{target}' does not point into the schema ('{segment}' not found)");
        }
        string name = Reserve(target[(target.LastIndexOf('/') + 1)..]);
        _refRules[target] = name;
        Set(name, Visit(node, name + "-value", target));
        return name;
    }
}
