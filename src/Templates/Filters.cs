using System.Globalization;
using System.Text;

namespace Infer.Templates;

internal delegate object? FilterFunction(Context ctx, object? value, CallArgs args);

internal delegate bool TestFunction(Context ctx, object? value, CallArgs args);

internal static partial class Builtins
{
    public static Dictionary<string, FilterFunction> Filters => FilterLibrary.Table;

    public static Dictionary<string, TestFunction> Tests => TestLibrary.Table;
}

/// <summary>Jinja2 3.1's built-in filters (the ones chat templates use), plus transformers' tojson.</summary>
internal static class FilterLibrary
{
    public static readonly Dictionary<string, FilterFunction> Table = new(StringComparer.Ordinal)
    {
        ["default"] = Default,
        ["d"] = Default,
        ["length"] = (_, v, _) => Py.Length(v),
        ["count"] = (_, v, _) => Py.Length(v),
        ["string"] = (_, v, _) => Py.Str(v),
        ["safe"] = (_, v, _) => v as Markup ?? new Markup(Py.Str(v)),
        ["trim"] = (_, v, a) => Methods.Strip(Py.Str(v), a.Get(0, "chars") as string, true, true),
        ["upper"] = (_, v, _) => Py.Str(v).ToUpperInvariant(),
        ["lower"] = (_, v, _) => Py.Str(v).ToLowerInvariant(),
        ["capitalize"] = (_, v, _) => Methods.Capitalize(Py.Str(v)),
        ["title"] = (_, v, _) => JinjaTitle(Py.Str(v)),
        ["replace"] = (_, v, a) => Methods.Replace(Py.Str(v), Py.Str(a.Get(0, "old")), Py.Str(a.Get(1, "new")),
            a.Get(2, "count") is null ? -1 : Py.ToLong(a.Get(2, "count"))),
        ["tojson"] = ToJson,
        ["items"] = Items,
        ["dictsort"] = DictSort,
        ["join"] = Join,
        ["first"] = First,
        ["last"] = Last,
        ["list"] = (_, v, _) => Py.Iterate(v),
        ["map"] = Map,
        ["select"] = (ctx, v, a) => SelectOrReject(ctx, v, a, lookupAttr: false, keep: true),
        ["reject"] = (ctx, v, a) => SelectOrReject(ctx, v, a, lookupAttr: false, keep: false),
        ["selectattr"] = (ctx, v, a) => SelectOrReject(ctx, v, a, lookupAttr: true, keep: true),
        ["rejectattr"] = (ctx, v, a) => SelectOrReject(ctx, v, a, lookupAttr: true, keep: false),
        ["sort"] = (_, v, a) => SortValues(Py.Iterate(v), Py.Truthy(a.Get(0, "reverse", false)),
            Py.Truthy(a.Get(1, "case_sensitive", false)), a.Get(2, "attribute") as string),
        ["unique"] = Unique,
        ["reverse"] = Reverse,
        ["indent"] = Indent,
        ["escape"] = (_, v, _) => v as Markup ?? new Markup(Markup.Escape(Py.Str(v))),
        ["e"] = (_, v, _) => v as Markup ?? new Markup(Markup.Escape(Py.Str(v))),
        ["forceescape"] = (_, v, _) => new Markup(Markup.Escape(Py.Str(v))),
        ["int"] = ToInt,
        ["float"] = ToFloat,
        ["abs"] = (_, v, _) => v switch
        {
            long l => l == long.MinValue
                ? throw new TemplateRuntimeError("OverflowError", "integer result does not fit in 64 bits")
                : (object)Math.Abs(l),
            double d => (object)Math.Abs(d),
            bool b => (object)(b ? 1L : 0L),
            _ => throw TemplateRuntimeError.Type($"bad operand type for abs(): '{Py.TypeName(v)}'"),
        },
        ["round"] = Round,
        ["format"] = (_, v, a) => Operators.PercentFormat(Py.Str(v), a.Count == 1 ? a.Positional[0] : new PyTuple(a.Positional.ToArray())),
        ["attr"] = (_, v, a) => Builtins.GetAttr(v, Py.Str(a.Get(0, "name"))),
        ["sum"] = Sum,
        ["min"] = (_, v, a) => MinMax(v, a, max: false),
        ["max"] = (_, v, a) => MinMax(v, a, max: true),
        ["wordcount"] = (_, v, _) => (long)Py.Str(v).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length,
        ["center"] = (_, v, a) =>
        {
            var s = Py.Str(v);
            int width = (int)Math.Min(Py.ToLong(a.Get(0, "width", 80L)), 1 << 20);
            if (width <= s.Length) return s;
            int total = width - s.Length;
            int left = total / 2 + (total & width & 1);
            return new string(' ', left) + s + new string(' ', total - left);
        },
    };

    private static object? Default(Context ctx, object? v, CallArgs a)
    {
        var fallback = a.Get(0, "default_value", "");
        bool boolean = Py.Truthy(a.Get(1, "boolean", false));
        if (v is Undefined || (boolean && !Py.Truthy(v))) return fallback;
        return v;
    }

    private static object? ToJson(Context ctx, object? v, CallArgs a)
    {
        var indentV = a.Get(0, "indent");
        string? indent = indentV switch
        {
            null => null,
            long n => new string(' ', (int)Math.Clamp(n, 0, 64)),
            string s => s,
            _ => throw TemplateRuntimeError.Type($"tojson indent must be an int or str, not {Py.TypeName(indentV)}"),
        };
        var style = JsonStyle.Python(indent, Py.Truthy(a.Get(-1, "sort_keys", false)), Py.Truthy(a.Get(-1, "ensure_ascii", false)));
        switch (a.Get(-1, "separators"))
        {
            case null:
                break;
            case PyTuple or List<object?> when Py.Iterate(a.Get(-1, "separators")) is [string item, string key]:
                style = style with { ItemSeparator = item, KeySeparator = key };
                break;
            default:
                throw TemplateRuntimeError.Value("tojson separators must be a pair of strings");
        }
        return PyJson.Dumps(v, style);
    }

    private static object? Items(Context ctx, object? v, CallArgs a)
    {
        if (v is Undefined) return new List<object?>();
        if (v is not PyDict d) throw TemplateRuntimeError.Type("Can only get item pairs from a mapping.");
        var list = new List<object?>(d.Count);
        foreach (var (k, x) in d) list.Add(new PyTuple([k, x]));
        return list;
    }

    private static object? DictSort(Context ctx, object? v, CallArgs a)
    {
        if (v is not PyDict d) throw TemplateRuntimeError.Type($"dictsort expects a mapping, got {Py.TypeName(v)}");
        bool caseSensitive = Py.Truthy(a.Get(0, "case_sensitive", false));
        var by = Py.Str(a.Get(1, "by", "key"));
        bool reverse = Py.Truthy(a.Get(2, "reverse", false));
        int pos = by switch
        {
            "key" => 0,
            "value" => 1,
            _ => throw new TemplateRuntimeError("FilterArgumentError", "You can only sort by either \"key\" or \"value\""),
        };
        var items = d.Select(p => (object?)new PyTuple([p.Key, p.Value])).ToList();
        return SortBy(items, x => MaybeLower(((PyTuple)x!).Items[pos], caseSensitive), reverse);
    }

    private static object? MaybeLower(object? v, bool caseSensitive) =>
        !caseSensitive && v is string s ? s.ToLowerInvariant() : v;

    /// <summary>Python's sorted(items, key=key, reverse=reverse): stable, TypeError on mixed types.</summary>
    private static List<object?> SortBy(List<object?> items, Func<object?, object?> key, bool reverse)
    {
        var keyed = items.Select((x, i) => (Key: key(x), Item: x, Index: i)).ToList();
        var cmp = Comparer<(object? Key, object? Item, int Index)>.Create((p, q) =>
        {
            int c = Py.Compare(p.Key, q.Key, "<");
            if (reverse) c = -c;
            return c != 0 ? c : p.Index.CompareTo(q.Index);
        });
        try
        {
            keyed.Sort(cmp);
        }
        catch (InvalidOperationException e) when (e.InnerException is TemplateRuntimeError inner)
        {
            // List.Sort wraps what the comparer throws; report the template's TypeError itself.
            throw inner;
        }
        return keyed.Select(p => p.Item).ToList();
    }

    public static List<object?> SortValues(List<object?> items, bool reverse, bool caseSensitive, string? attribute)
    {
        var getter = attribute is null ? (Func<object?, object?>)(x => x) : AttrGetter(attribute, null);
        return SortBy(items, x => MaybeLower(getter(x), caseSensitive), reverse);
    }

    /// <summary>Jinja2's make_attrgetter: dotted path, integer parts index, optional default for undefined.</summary>
    private static Func<object?, object?> AttrGetter(string attribute, object? fallback)
    {
        var parts = attribute.Split('.')
            .Select(p => long.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out long n) ? (object)n : p)
            .ToArray();
        return item =>
        {
            foreach (var part in parts) item = Builtins.GetItem(item, part);
            if (fallback is not null && item is Undefined) return fallback;
            return item;
        };
    }

    private static object? Join(Context ctx, object? v, CallArgs a)
    {
        var sep = Py.Str(a.Get(0, "d", ""));
        var attribute = a.Get(1, "attribute") as string;
        var items = Py.Iterate(v);
        var getter = attribute is null ? null : AttrGetter(attribute, null);
        var sb = new StringBuilder();
        for (int i = 0; i < items.Count; i++)
        {
            if (i > 0) sb.Append(sep);
            Py.AppendStr(sb, getter is null ? items[i] : getter(items[i]));
        }
        return sb.ToString();
    }

    private static object? First(Context ctx, object? v, CallArgs a)
    {
        var items = Py.Iterate(v);
        return items.Count > 0 ? items[0] : new Undefined("No first item, sequence was empty.");
    }

    private static object? Last(Context ctx, object? v, CallArgs a)
    {
        if (v is PyDict) throw TemplateRuntimeError.Type("'dict' object is not reversible");
        var items = Py.Iterate(v);
        return items.Count > 0 ? items[^1] : new Undefined("No last item, sequence was empty.");
    }

    private static object? Map(Context ctx, object? v, CallArgs a)
    {
        // Jinja2 maps (and selects) only over a truthy value: none|map(...) is empty.
        if (!Py.Truthy(v)) return new List<object?>();
        var items = Py.Iterate(v);
        Func<object?, object?> func;
        if (a.Count == 0 && a.Keywords is not null && a.Keywords.TryGetValue("attribute", out var attr))
        {
            a.Keywords.TryGetValue("default", out var fallback);
            func = AttrGetter(Py.Str(attr), fallback);
        }
        else
        {
            if (a.Count == 0) throw new TemplateRuntimeError("FilterArgumentError", "map requires a filter argument");
            var name = Py.Str(a.Positional[0]);
            if (!Table.TryGetValue(name, out var filter)) throw new TemplateRuntimeError("TemplateRuntimeError", $"No filter named '{name}' found.");
            var rest = new CallArgs(a.Positional.Skip(1).ToList(), a.Keywords);
            func = x => filter(ctx, x, rest);
        }
        return items.Select(func).ToList();
    }

    private static object? SelectOrReject(Context ctx, object? v, CallArgs a, bool lookupAttr, bool keep)
    {
        if (!Py.Truthy(v)) return new List<object?>();
        var items = Py.Iterate(v);
        int off = 0;
        Func<object?, object?> trans = x => x;
        if (lookupAttr)
        {
            if (a.Count == 0) throw new TemplateRuntimeError("FilterArgumentError", "Missing parameter for attribute name");
            trans = AttrGetter(Py.Str(a.Positional[0]), null);
            off = 1;
        }
        Func<object?, bool> test;
        if (a.Count > off)
        {
            var name = Py.Str(a.Positional[off]);
            if (!TestLibrary.Table.TryGetValue(name, out var t))
                throw new TemplateRuntimeError("TemplateRuntimeError", $"No test named '{name}' found.");
            var rest = new CallArgs(a.Positional.Skip(off + 1).ToList(), a.Keywords);
            test = x => t(ctx, x, rest);
        }
        else
        {
            test = Py.Truthy;
        }
        return items.Where(x => test(trans(x)) == keep).ToList();
    }

    private static object? Unique(Context ctx, object? v, CallArgs a)
    {
        bool caseSensitive = Py.Truthy(a.Get(0, "case_sensitive", false));
        var attribute = a.Get(1, "attribute") as string;
        var getter = attribute is null ? (Func<object?, object?>)(x => x) : AttrGetter(attribute, null);
        var seen = new List<object?>();
        var result = new List<object?>();
        foreach (var item in Py.Iterate(v))
        {
            var key = MaybeLower(getter(item), caseSensitive);
            if (seen.Any(s => Py.Equal(s, key))) continue;
            seen.Add(key);
            result.Add(item);
        }
        return result;
    }

    private static object? Reverse(Context ctx, object? v, CallArgs a)
    {
        if (v is string s)
        {
            var chars = Py.Iterate(s);
            chars.Reverse();
            return string.Concat(chars.Cast<string>());
        }
        var items = Py.Iterate(v);
        items.Reverse();
        return items;
    }

    /// <summary>Python's str.splitlines: \n, \r\n, \r, \v, \f, \x1c-\x1e, \x85, \u2028, \u2029.</summary>
    public static List<string> SplitLines(string s, bool keepEnds)
    {
        var lines = new List<string>();
        int start = 0;
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c is not ('\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029')) continue;
            int end = i;
            if (c == '\r' && i + 1 < s.Length && s[i + 1] == '\n') i++;
            lines.Add(keepEnds ? s[start..(i + 1)] : s[start..end]);
            start = i + 1;
        }
        if (start < s.Length) lines.Add(s[start..]);
        return lines;
    }

    private static object? Indent(Context ctx, object? v, CallArgs a)
    {
        var widthV = a.Get(0, "width", 4L);
        string indention = widthV is string ws ? ws : new string(' ', (int)Math.Clamp(Py.ToLong(widthV), 0, 1024));
        bool first = Py.Truthy(a.Get(1, "first", false));
        bool blank = Py.Truthy(a.Get(2, "blank", false));
        var s = Py.Str(v) + "\n";
        var lines = SplitLines(s, keepEnds: false);
        string rv;
        if (blank)
        {
            rv = string.Join("\n" + indention, lines);
        }
        else
        {
            var sb = new StringBuilder(lines.Count > 0 ? lines[0] : "");
            for (int i = 1; i < lines.Count; i++)
            {
                sb.Append('\n');
                if (lines[i].Length > 0) sb.Append(indention);
                sb.Append(lines[i]);
            }
            rv = sb.ToString();
        }
        return first ? indention + rv : rv;
    }

    private static object? ToInt(Context ctx, object? v, CallArgs a)
    {
        var fallback = a.Get(0, "default", 0L);
        long numBase = Py.ToLong(a.Get(1, "base", 10L));
        switch (v)
        {
            case long or bool: return Py.ToLong(v);
            case double d: return double.IsFinite(d) ? (long)Math.Truncate(d) : fallback;
            case string s:
                {
                    var t = s.Trim().Replace("_", "");
                    try
                    {
                        if (numBase == 10 && long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l)) return l;
                        if (numBase != 10 && t.Length > 0) return Convert.ToInt64(t, (int)numBase);
                    }
                    catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
                    {
                        return fallback;
                    }
                    if (double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double f) && double.IsFinite(f))
                        return (long)Math.Truncate(f);
                    return fallback;
                }
            default: return fallback;
        }
    }

    private static object? ToFloat(Context ctx, object? v, CallArgs a)
    {
        var fallback = a.Get(0, "default", 0.0);
        return v switch
        {
            long or bool or double => Py.ToDouble(v),
            string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => d,
            _ => fallback,
        };
    }

    private static object? Round(Context ctx, object? v, CallArgs a)
    {
        int precision = (int)Math.Clamp(Py.ToLong(a.Get(0, "precision", 0L)), 0, 15);
        var method = Py.Str(a.Get(1, "method", "common"));
        double x = Py.ToDouble(v);
        double scale = Math.Pow(10, precision);
        return method switch
        {
            "common" => Math.Round(x, precision, MidpointRounding.ToEven),
            "ceil" => Math.Ceiling(x * scale) / scale,
            "floor" => Math.Floor(x * scale) / scale,
            _ => throw new TemplateRuntimeError("FilterArgumentError", "method must be common, ceil or floor"),
        };
    }

    private static object? Sum(Context ctx, object? v, CallArgs a)
    {
        var attribute = a.Get(0, "attribute") as string;
        object? total = a.Get(1, "start", 0L);
        var getter = attribute is null ? null : AttrGetter(attribute, null);
        foreach (var item in Py.Iterate(v)) total = Operators.Binary("+", total, getter is null ? item : getter(item));
        return total;
    }

    private static object? MinMax(object? v, CallArgs a, bool max)
    {
        bool caseSensitive = Py.Truthy(a.Get(0, "case_sensitive", false));
        var attribute = a.Get(1, "attribute") as string;
        var getter = attribute is null ? (Func<object?, object?>)(x => x) : AttrGetter(attribute, null);
        var items = Py.Iterate(v);
        if (items.Count == 0) return new Undefined($"No aggregated item, sequence was empty.");
        var best = items[0];
        foreach (var item in items.Skip(1))
        {
            int c = Py.Compare(MaybeLower(getter(item), caseSensitive), MaybeLower(getter(best), caseSensitive), "<");
            if (max ? c > 0 : c < 0) best = item;
        }
        return best;
    }

    /// <summary>Jinja2's title filter: upper-cases the first letter of each word, words split at whitespace and -({[&lt;.</summary>
    private static string JinjaTitle(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool wordStart = true;
        foreach (char c in s)
        {
            bool sep = char.IsWhiteSpace(c) || c is '-' or '(' or '{' or '[' or '<';
            if (sep)
            {
                sb.Append(c);
                wordStart = true;
            }
            else
            {
                sb.Append(wordStart ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
                wordStart = false;
            }
        }
        return sb.ToString();
    }
}

/// <summary>Jinja2 3.1's built-in tests.</summary>
internal static class TestLibrary
{
    public static readonly Dictionary<string, TestFunction> Table = new(StringComparer.Ordinal)
    {
        ["defined"] = (_, v, _) => v is not Undefined,
        ["undefined"] = (_, v, _) => v is Undefined,
        ["none"] = (_, v, _) => v is null,
        ["boolean"] = (_, v, _) => v is bool,
        ["true"] = (_, v, _) => v is true,
        ["false"] = (_, v, _) => v is false,
        ["integer"] = (_, v, _) => v is long,
        ["float"] = (_, v, _) => v is double,
        ["number"] = (_, v, _) => Py.IsNumber(v),
        ["string"] = (_, v, _) => v is string or Markup,
        ["mapping"] = (_, v, _) => v is PyDict,
        ["sequence"] = (_, v, _) => v is string or Markup or List<object?> or PyTuple or PyDict or Undefined,
        ["iterable"] = (_, v, _) => v is string or Markup or List<object?> or PyTuple or PyDict or PyDictView or Undefined,
        ["callable"] = (_, v, _) => v is MacroValue or BuiltinFunction or BoundMethod,
        ["odd"] = (_, v, _) => Py.ToLong(v) % 2 != 0,
        ["even"] = (_, v, _) => Py.ToLong(v) % 2 == 0,
        ["divisibleby"] = (_, v, a) => Py.ToLong(v) % Py.ToLong(a.Get(0, "num")) == 0,
        ["lower"] = (_, v, _) => Py.Str(v) is var s && s.Any(char.IsLetter) && !s.Any(char.IsUpper),
        ["upper"] = (_, v, _) => Py.Str(v) is var s && s.Any(char.IsLetter) && !s.Any(char.IsLower),
        ["sameas"] = (_, v, a) => SameAs(v, a.Get(0, "other")),
        ["escaped"] = (_, v, _) => v is Markup,
        ["in"] = (_, v, a) => Py.Contains(a.Get(0, "seq"), v),
        ["filter"] = (_, v, _) => v is string s && FilterLibrary.Table.ContainsKey(s),
        ["test"] = (_, v, _) => v is string s && Table!.ContainsKey(s),
        ["=="] = Eq,
        ["eq"] = Eq,
        ["equalto"] = Eq,
        ["!="] = (_, v, a) => !Py.Equal(v, a.Get(0, "other")),
        ["ne"] = (_, v, a) => !Py.Equal(v, a.Get(0, "other")),
        [">"] = (_, v, a) => Py.Compare(v, a.Get(0, "other"), ">") > 0,
        ["gt"] = (_, v, a) => Py.Compare(v, a.Get(0, "other"), ">") > 0,
        ["greaterthan"] = (_, v, a) => Py.Compare(v, a.Get(0, "other"), ">") > 0,
        [">="] = (_, v, a) => Py.Compare(v, a.Get(0, "other"), ">=") >= 0,
        ["ge"] = (_, v, a) => Py.Compare(v, a.Get(0, "other"), ">=") >= 0,
        ["<"] = (_, v, a) => Py.Compare(v, a.Get(0, "other"), "<") < 0,
        ["lt"] = (_, v, a) => Py.Compare(v, a.Get(0, "other"), "<") < 0,
        ["lessthan"] = (_, v, a) => Py.Compare(v, a.Get(0, "other"), "<") < 0,
        ["<="] = (_, v, a) => Py.Compare(v, a.Get(0, "other"), "<=") <= 0,
        ["le"] = (_, v, a) => Py.Compare(v, a.Get(0, "other"), "<=") <= 0,
    };

    private static bool Eq(Context ctx, object? v, CallArgs a) => Py.Equal(v, a.Get(0, "other"));

    private static bool SameAs(object? a, object? b) => a switch
    {
        null => b is null,
        bool x => b is bool y && x == y,
        _ => ReferenceEquals(a, b) || (a is long or string && Py.Equal(a, b) && a.GetType() == b?.GetType()),
    };
}
