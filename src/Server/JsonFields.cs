using System.Text.Json;

namespace Infer.Server;

/// <summary>Typed reads of a request's JSON fields; a field of the wrong type or out of range is a 400 that names it.</summary>
internal readonly struct JsonFields(JsonElement obj, string prefix = "")
{
    public JsonElement Element => obj;

    private string Name(string field) => prefix + field;

    /// <summary>The field, or null when absent or JSON null.</summary>
    public JsonElement? Get(string field) =>
        obj.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public string? String(string field)
    {
        if (Get(field) is not { } v) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw Wrong(field, "a string");
    }

    public bool? Bool(string field)
    {
        if (Get(field) is not { } v) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Wrong(field, "a boolean"),
        };
    }

    public long? Integer(string field, long min = long.MinValue, long max = long.MaxValue)
    {
        if (Get(field) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long x))
        {
            // 3.0 is an integer too, as Python's json gives it
            if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && d == Math.Floor(d) && Math.Abs(d) < 1e15) x = (long)d;
            else throw Wrong(field, "an integer");
        }
        if (x < min || x > max) throw OutOfRange(field, x.ToString(System.Globalization.CultureInfo.InvariantCulture), min, max);
        return x;
    }

    public float? Number(string field, double min = double.MinValue, double max = double.MaxValue)
    {
        if (Get(field) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double x) || !double.IsFinite(x)) throw Wrong(field, "a number");
        if (x < min || x > max) throw OutOfRange(field, x.ToString(System.Globalization.CultureInfo.InvariantCulture), min, max);
        return (float)x;
    }

    public ApiException Wrong(string field, string what) => ApiException.BadRequest($"'{Name(field)}' must be {what}", Name(field), "invalid_type");

    private ApiException OutOfRange(string field, string value, double min, double max)
    {
        string range = (min, max) switch
        {
            (double.MinValue or long.MinValue, _) => $"at most {max}",
            (_, double.MaxValue or long.MaxValue) => $"at least {min}",
            _ => $"between {min} and {max}",
        };
        return ApiException.BadRequest($"'{Name(field)}' must be {range}, got {value}", Name(field), "invalid_value");
    }
}
