using System.Globalization;

namespace Infer.Cli;

/// <summary>
/// A small parser for llama.cpp-style arguments: options with one or two dashes (including multi-letter single-dash
/// names such as <c>-hf</c> and <c>-sys</c>, which CommandLineParser cannot express), values as the next argument or after '='.
/// Every option a command reads is declared by reading it; whatever is left unread is reported as unknown.
/// </summary>
public sealed class Args
{
    private readonly Dictionary<string, List<string?>> _options = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);
    private readonly List<string> _positional = [];
    private readonly HashSet<string> _flags;

    /// <param name="args">the arguments after the command name.</param>
    /// <param name="flags">options that take no value (all spellings).</param>
    public Args(IEnumerable<string> args, IEnumerable<string> flags)
    {
        _flags = new HashSet<string>(flags, StringComparer.Ordinal) { "--offline", "--no-repack" };
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            string a = list[i];
            if (a == "--")
            {
                _positional.AddRange(list.Skip(i + 1));
                break;
            }
            if (a.Length > 1 && a[0] == '-' && !IsNumber(a))
            {
                string name = a;
                string? value = null;
                int eq = a.IndexOf('=');
                if (eq > 0) { name = a[..eq]; value = a[(eq + 1)..]; }
                else if (!_flags.Contains(name))
                {
                    if (i + 1 >= list.Count) throw new UsageException($"option {name} needs a value");
                    value = list[++i];
                }
                if (!_options.TryGetValue(name, out var values)) _options[name] = values = [];
                values.Add(value);
            }
            else
            {
                _positional.Add(a);
            }
        }
    }

    private static bool IsNumber(string s) => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out _);

    public IReadOnlyList<string> Positional => _positional;

    public bool Flag(params string[] names)
    {
        foreach (var n in names)
        {
            _used.Add(n);
            if (_options.ContainsKey(n)) return true;
        }
        return false;
    }

    public string? String(params string[] names)
    {
        string? result = null;
        foreach (var n in names)
        {
            _used.Add(n);
            if (_options.TryGetValue(n, out var v)) result = v[^1];
        }
        return result;
    }

    public string Required(string what, params string[] names) =>
        String(names) ?? throw new UsageException($"missing {names[0]} {what}");

    public int Int(int fallback, params string[] names)
    {
        var s = String(names);
        if (s is null) return fallback;
        return int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v
            : throw new UsageException($"{names[0]} expects an integer, got '{s}'");
    }

    public float Float(float fallback, params string[] names)
    {
        var s = String(names);
        if (s is null) return fallback;
        return float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out float v) && float.IsFinite(v) ? v
            : throw new UsageException($"{names[0]} expects a number, got '{s}'");
    }

    /// <summary>Fails on options nobody asked for.</summary>
    public void EnsureAllUsed()
    {
        foreach (var k in _options.Keys)
            if (!_used.Contains(k)) throw new UsageException($"unknown option {k}");
    }

    public static int[] ParseIds(string s, string option)
    {
        var parts = s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out ids[i]) || ids[i] < 0)
                throw new UsageException($"{option} expects comma-separated token ids, got '{parts[i]}'");
        return ids;
    }
}
