using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Infer.Tests;

/// <summary>
/// A small JSON schema validator for tests, written from the JSON Schema specification and independent of the
/// grammar converter: it checks a parsed value against a schema and returns what is wrong (empty when valid).
/// Keywords it does not know throw, so a test schema cannot silently go unchecked. Patterns run on .NET's regex engine
/// (unanchored search, as the specification says); lengths count code points.
/// </summary>
internal static class JsonSchemaValidator
{
    private static readonly HashSet<string> Ignored =
        ["$schema", "$id", "$comment", "$defs", "definitions", "title", "description", "default", "examples"];

    public static List<string> Validate(JsonElement value, JsonElement schema)
    {
        var errors = new List<string>();
        Check(value, schema, schema, "$", errors);
        return errors;
    }

    private static void Check(JsonElement v, JsonElement s, JsonElement root, string at, List<string> errors)
    {
        if (s.ValueKind == JsonValueKind.True) return;
        if (s.ValueKind == JsonValueKind.False) { errors.Add($"{at}: the schema is false"); return; }
        foreach (var p in s.EnumerateObject())
        {
            var k = p.Value;
            switch (p.Name)
            {
                case "type":
                    var types = k.ValueKind == JsonValueKind.Array ? k.EnumerateArray().Select(x => x.GetString()!).ToList() : [k.GetString()!];
                    if (!types.Any(t => HasType(v, t))) errors.Add($"{at}: {v.ValueKind} is not {string.Join("/", types)}");
                    break;
                case "enum":
                    if (!k.EnumerateArray().Any(e => JsonEquals(e, v))) errors.Add($"{at}: {v.GetRawText()} is not in the enum");
                    break;
                case "const":
                    if (!JsonEquals(k, v)) errors.Add($"{at}: {v.GetRawText()} is not the const");
                    break;
                case "properties":
                    if (v.ValueKind != JsonValueKind.Object) break;
                    foreach (var prop in k.EnumerateObject())
                        foreach (var member in v.EnumerateObject().Where(m => m.Name == prop.Name))
                            Check(member.Value, prop.Value, root, $"{at}.{prop.Name}", errors);
                    break;
                case "required":
                    if (v.ValueKind != JsonValueKind.Object) break;
                    foreach (var name in k.EnumerateArray().Select(x => x.GetString()!))
                        if (!v.TryGetProperty(name, out _)) errors.Add($"{at}: required '{name}' is missing");
                    break;
                case "additionalProperties":
                    if (v.ValueKind != JsonValueKind.Object) break;
                    var declared = s.TryGetProperty("properties", out var ps) ? ps.EnumerateObject().Select(x => x.Name).ToHashSet() : [];
                    foreach (var member in v.EnumerateObject().Where(m => !declared.Contains(m.Name)))
                        Check(member.Value, k, root, $"{at}.{member.Name}", errors);
                    break;
                case "items":
                    if (v.ValueKind != JsonValueKind.Array) break;
                    int i = 0;
                    foreach (var item in v.EnumerateArray()) Check(item, k, root, $"{at}[{i++}]", errors);
                    break;
                case "minItems":
                    if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() < k.GetInt32()) errors.Add($"{at}: fewer than {k} items");
                    break;
                case "maxItems":
                    if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > k.GetInt32()) errors.Add($"{at}: more than {k} items");
                    break;
                case "minLength":
                    if (v.ValueKind == JsonValueKind.String && CodePoints(v) < k.GetInt32()) errors.Add($"{at}: shorter than {k}");
                    break;
                case "maxLength":
                    if (v.ValueKind == JsonValueKind.String && CodePoints(v) > k.GetInt32()) errors.Add($"{at}: longer than {k}");
                    break;
                case "pattern":
                    if (v.ValueKind == JsonValueKind.String && !Regex.IsMatch(v.GetString()!, k.GetString()!))
                        errors.Add($"{at}: {v.GetRawText()} does not match /{k.GetString()}/");
                    break;
                case "format":
                    if (v.ValueKind == JsonValueKind.String && !FormatOk(k.GetString()!, v.GetString()!))
                        errors.Add($"{at}: {v.GetRawText()} is not a {k.GetString()}");
                    break;
                case "minimum" or "maximum" or "exclusiveMinimum" or "exclusiveMaximum":
                    if (v.ValueKind != JsonValueKind.Number) break;
                    double x = v.GetDouble(), bound = k.GetDouble();
                    bool ok = p.Name switch
                    {
                        "minimum" => x >= bound,
                        "maximum" => x <= bound,
                        "exclusiveMinimum" => x > bound,
                        _ => x < bound,
                    };
                    if (!ok) errors.Add($"{at}: {v.GetRawText()} violates {p.Name} {bound}");
                    break;
                case "anyOf":
                    if (!k.EnumerateArray().Any(alt => Validates(v, alt, root))) errors.Add($"{at}: matches no anyOf alternative");
                    break;
                case "oneOf":
                    int matches = k.EnumerateArray().Count(alt => Validates(v, alt, root));
                    if (matches != 1) errors.Add($"{at}: matches {matches} oneOf alternatives");
                    break;
                case "allOf":
                    foreach (var sub in k.EnumerateArray()) Check(v, sub, root, at, errors);
                    break;
                case "$ref":
                    Check(v, Resolve(root, k.GetString()!), root, at, errors);
                    break;
                default:
                    if (!Ignored.Contains(p.Name)) throw new NotSupportedException($"the test validator does not know '{p.Name}'");
                    break;
            }
        }
    }

    private static bool Validates(JsonElement v, JsonElement s, JsonElement root)
    {
        var errors = new List<string>();
        Check(v, s, root, "$", errors);
        return errors.Count == 0;
    }

    private static JsonElement Resolve(JsonElement root, string reference)
    {
        var node = root;
        if (reference == "#") return root;
        foreach (var segment in reference[2..].Split('/')) node = node.GetProperty(segment.Replace("~1", "/").Replace("~0", "~"));
        return node;
    }

    private static int CodePoints(JsonElement v) => v.GetString()!.EnumerateRunes().Count();

    private static bool HasType(JsonElement v, string type) => type switch
    {
        "object" => v.ValueKind == JsonValueKind.Object,
        "array" => v.ValueKind == JsonValueKind.Array,
        "string" => v.ValueKind == JsonValueKind.String,
        "number" => v.ValueKind == JsonValueKind.Number,
        "integer" => v.ValueKind == JsonValueKind.Number && IsIntegral(v.GetRawText()),
        "boolean" => v.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => v.ValueKind == JsonValueKind.Null,
        _ => throw new NotSupportedException(type),
    };

    private static bool IsIntegral(string raw) =>
        decimal.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d == decimal.Truncate(d)
            : double.Parse(raw, CultureInfo.InvariantCulture) is var x && x == Math.Floor(x);

    private static bool JsonEquals(JsonElement a, JsonElement b)
    {
        if (a.ValueKind == JsonValueKind.Number && b.ValueKind == JsonValueKind.Number) return a.GetDouble() == b.GetDouble();
        if (a.ValueKind != b.ValueKind) return false;
        return a.ValueKind switch
        {
            JsonValueKind.String => a.GetString() == b.GetString(),
            JsonValueKind.Array => a.GetArrayLength() == b.GetArrayLength()
                && a.EnumerateArray().Zip(b.EnumerateArray()).All(p => JsonEquals(p.First, p.Second)),
            JsonValueKind.Object => a.EnumerateObject().Count() == b.EnumerateObject().Count()
                && a.EnumerateObject().All(p => b.TryGetProperty(p.Name, out var q) && JsonEquals(p.Value, q)),
            _ => true,
        };
    }

    private const string Time = @"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])";

    private static bool FormatOk(string format, string s) => format switch
    {
        "date" => DateOnly.TryParseExact(s, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out _),
        "time" => Regex.IsMatch(s, $@"^{Time}\z"),
        "date-time" => s.Length > 11 && s[10] is 'T' or 't' && FormatOk("date", s[..10]) && FormatOk("time", s[11..]),
        "uuid" => Regex.IsMatch(s, @"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\z"),
        _ => throw new NotSupportedException($"format {format}"),
    };
}
