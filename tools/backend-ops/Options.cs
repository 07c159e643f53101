using System.Globalization;

namespace Infer.BackendOps;

/// <summary>A usage error: one line, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// <c>--name value</c> / <c>--name=value</c> options and flags; every option a command reads is declared by reading it, and
/// <see cref="EnsureAllUsed"/> rejects the rest.
/// </summary>
internal sealed class Options
{
    private static readonly HashSet<string> Flags = ["--quick", "--list", "--no-assemble"];
    private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public Options(IEnumerable<string> args)
    {
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            string a = list[i];
            if (a.Length < 2 || a[0] != '-') throw new UsageException($"unexpected argument '{a}'");
            int eq = a.IndexOf('=');
            if (eq > 0) _values[a[..eq]] = a[(eq + 1)..];
            else if (Flags.Contains(a)) _values[a] = null;
            else if (i + 1 < list.Count) _values[a] = list[++i];
            else throw new UsageException($"option {a} needs a value");
        }
    }

    public bool Flag(string name)
    {
        _used.Add(name);
        return _values.ContainsKey(name);
    }

    public string? Value(params string[] names)
    {
        string? r = null;
        foreach (var n in names)
        {
            _used.Add(n);
            if (_values.TryGetValue(n, out var v)) r = v;
        }
        return r;
    }

    public string Required(string name) => Value(name) ?? throw new UsageException($"missing {name}");

    public int Int(string name, int fallback)
    {
        string? s = Value(name);
        if (s is null) return fallback;
        return int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= 0 ? v
            : throw new UsageException($"{name} expects a non-negative integer, got '{s}'");
    }

    public double Double(string name, double fallback)
    {
        string? s = Value(name);
        if (s is null) return fallback;
        return double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v) && v >= 0 ? v
            : throw new UsageException($"{name} expects a non-negative number, got '{s}'");
    }

    /// <summary>Comma-separated values of an option (empty when absent).</summary>
    public IReadOnlyList<string> List(params string[] names) =>
        Value(names) is { } s ? s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : [];

    public void EnsureAllUsed()
    {
        foreach (var k in _values.Keys)
            if (!_used.Contains(k)) throw new UsageException($"unknown option {k}");
    }
}
