using System.Globalization;
using System.Text;

namespace Infer.Templates;

/// <summary>Python semantics for the values a template sees: truthiness, str(), repr(), ==, &lt;.</summary>
internal static class Py
{
    public static bool Truthy(object? v) => v switch
    {
        null => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length != 0,
        Markup m => m.Value.Length != 0,
        List<object?> l => l.Count != 0,
        PyDict d => d.Count != 0,
        PyTuple t => t.Items.Length != 0,
        PyDictView view => view.Dict.Count != 0,
        Undefined => false,
        _ => true,
    };

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        Markup => "Markup",
        List<object?> => "list",
        PyDict => "dict",
        PyTuple => "tuple",
        PyDictView view => view.TypeName,
        Undefined => "Undefined",
        Namespace => "Namespace",
        LoopContext => "LoopContext",
        BoundMethod => "builtin_function_or_method",
        BuiltinFunction => "function",
        MacroValue => "Macro",
        _ => v.GetType().Name,
    };

    /// <summary>Python's str(v); Undefined prints as the empty string.</summary>
    public static string Str(object? v)
    {
        switch (v)
        {
            case string s: return s;
            case Markup m: return m.Value;
            case Undefined: return "";
            case long l: return l.ToString(CultureInfo.InvariantCulture);
            default:
                var sb = new StringBuilder();
                AppendStr(sb, v);
                return sb.ToString();
        }
    }

    public static void AppendStr(StringBuilder sb, object? v)
    {
        switch (v)
        {
            case string s: sb.Append(s); break;
            case Markup m: sb.Append(m.Value); break;
            case Undefined: break;
            case List<object?> or PyDict or PyTuple or PyDictView or null or bool or long or double: AppendRepr(sb, v); break;
            case Namespace ns:
                sb.Append("<Namespace ");
                AppendRepr(sb, ToDict(ns.Attributes));
                sb.Append('>');
                break;
            case MacroValue m: sb.Append("<Macro '").Append(m.Macro.Name).Append("'>"); break;
            default: sb.Append(v.ToString()); break;
        }
    }

    private static PyDict ToDict(Dictionary<string, object?> attrs)
    {
        var d = new PyDict();
        foreach (var (k, val) in attrs) d[k] = val;
        return d;
    }

    public static string Repr(object? v)
    {
        var sb = new StringBuilder();
        AppendRepr(sb, v);
        return sb.ToString();
    }

    public static void AppendRepr(StringBuilder sb, object? v)
    {
        switch (v)
        {
            case null: sb.Append("None"); break;
            case bool b: sb.Append(b ? "True" : "False"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: sb.Append(FloatRepr(d)); break;
            case string s: AppendStringRepr(sb, s); break;
            case Markup m:
                sb.Append("Markup(");
                AppendStringRepr(sb, m.Value);
                sb.Append(')');
                break;
            case List<object?> list:
                sb.Append('[');
                for (int i = 0; i < list.Count; i++)
                {
                    if (i > 0) sb.Append(", ");
                    AppendRepr(sb, list[i]);
                }
                sb.Append(']');
                break;
            case PyTuple t:
                sb.Append('(');
                for (int i = 0; i < t.Items.Length; i++)
                {
                    if (i > 0) sb.Append(", ");
                    AppendRepr(sb, t.Items[i]);
                }
                if (t.Items.Length == 1) sb.Append(',');
                sb.Append(')');
                break;
            case PyDict dict:
                sb.Append('{');
                bool first = true;
                foreach (var (k, val) in dict)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    AppendRepr(sb, k);
                    sb.Append(": ");
                    AppendRepr(sb, val);
                }
                sb.Append('}');
                break;
            case PyDictView view:
                sb.Append(view.TypeName).Append('(');
                AppendRepr(sb, view.Snapshot());
                sb.Append(')');
                break;
            case Undefined: sb.Append("Undefined"); break;
            default: AppendStr(sb, v); break;
        }
    }

    /// <summary>Python's repr() of a str: single quotes unless the text holds ' and no ".</summary>
    public static void AppendStringRepr(StringBuilder sb, string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        sb.Append(quote);
        foreach (char c in s)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c == quote) sb.Append('\\').Append(c);
                    else if (c < 0x20 || c == 0x7f) sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append(quote);
    }

    /// <summary>Python's repr() of a float: shortest round-trip digits, exponent form outside 1e-4 .. 1e16.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsPositiveInfinity(d)) return "inf";
        if (double.IsNegativeInfinity(d)) return "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        // "R" gives the shortest round-trip digits; take them apart into sign, digits and exponent.
        var shortest = d.ToString("R", CultureInfo.InvariantCulture);
        bool neg = shortest.StartsWith('-');
        if (neg) shortest = shortest[1..];
        int exp = 0;
        int ePos = shortest.IndexOfAny(['E', 'e']);
        string mant = shortest;
        if (ePos >= 0)
        {
            exp = int.Parse(shortest[(ePos + 1)..], CultureInfo.InvariantCulture);
            mant = shortest[..ePos];
        }
        int dot = mant.IndexOf('.');
        string digits = dot >= 0 ? mant.Remove(dot, 1) : mant;
        int pointPos = (dot >= 0 ? dot : mant.Length) + exp; // digits[0..pointPos] is the integer part
        int lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0') { lead++; pointPos--; }
        digits = digits[lead..].TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        int decExp = pointPos - 1; // exponent of the first digit
        var sb = new StringBuilder();
        if (neg) sb.Append('-');
        if (decExp < -4 || decExp >= 16)
        {
            sb.Append(digits[0]);
            if (digits.Length > 1) sb.Append('.').Append(digits, 1, digits.Length - 1);
            sb.Append('e').Append(decExp < 0 ? '-' : '+').Append(Math.Abs(decExp).ToString("00", CultureInfo.InvariantCulture));
        }
        else if (pointPos <= 0)
        {
            sb.Append("0.").Append('0', -pointPos).Append(digits);
        }
        else if (pointPos >= digits.Length)
        {
            sb.Append(digits).Append('0', pointPos - digits.Length).Append(".0");
        }
        else
        {
            sb.Append(digits, 0, pointPos).Append('.').Append(digits, pointPos, digits.Length - pointPos);
        }
        return sb.ToString();
    }

    public static bool IsNumber(object? v) => v is long or double or bool;

    public static double ToDouble(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw TemplateRuntimeError.Type($"expected a number, got {TypeName(v)}"),
    };

    public static bool Equal(object? a, object? b)
    {
        if (ReferenceEquals(a, b)) return true;
        if (a is Markup ma) a = ma.Value;
        if (b is Markup mb) b = mb.Value;
        switch (a)
        {
            case null: return b is null;
            case string sa: return b is string sb && string.Equals(sa, sb, StringComparison.Ordinal);
            case long or double or bool:
                if (!IsNumber(b)) return false;
                if (a is double || b is double) return ToDouble(a) == ToDouble(b);
                return ToLong(a) == ToLong(b);
            case List<object?> la:
                if (b is not List<object?> lb || la.Count != lb.Count) return false;
                for (int i = 0; i < la.Count; i++) if (!Equal(la[i], lb[i])) return false;
                return true;
            case PyTuple ta:
                if (b is not PyTuple tb || ta.Items.Length != tb.Items.Length) return false;
                for (int i = 0; i < ta.Items.Length; i++) if (!Equal(ta.Items[i], tb.Items[i])) return false;
                return true;
            case PyDict da:
                if (b is not PyDict db || da.Count != db.Count) return false;
                foreach (var (k, v) in da)
                    if (!db.TryGetValue(k!, out var v2) || !Equal(v, v2)) return false;
                return true;
            case Undefined: return b is Undefined;
            default: return a.Equals(b);
        }
    }

    public static long ToLong(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw TemplateRuntimeError.Type($"'{TypeName(v)}' object cannot be interpreted as an integer"),
    };

    /// <summary>Python's ordering (&lt;): numbers, strings, lists and tuples; anything else is a TypeError.</summary>
    public static int Compare(object? a, object? b, string op)
    {
        var (origA, origB) = (a, b);
        if (a is Markup ma) a = ma.Value;
        if (b is Markup mb) b = mb.Value;
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a).CompareTo(ToDouble(b));
            return ToLong(a).CompareTo(ToLong(b));
        }
        if (a is string sa && b is string sb) return string.CompareOrdinal(sa, sb) switch { < 0 => -1, 0 => 0, _ => 1 };
        if ((a is List<object?> && b is List<object?>) || (a is PyTuple && b is PyTuple))
        {
            var la = AsList(a);
            var lb = AsList(b);
            for (int i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                if (Equal(la[i], lb[i])) continue;
                return Compare(la[i], lb[i], op);
            }
            return la.Count.CompareTo(lb.Count);
        }
        if (a is Undefined ua) throw ua.Fail();
        if (b is Undefined ub) throw ub.Fail();
        throw TemplateRuntimeError.Type($"'{op}' not supported between instances of '{TypeName(origA)}' and '{TypeName(origB)}'");
    }

    private static IReadOnlyList<object?> AsList(object? v) => v is PyTuple t ? t.Items : (List<object?>)v!;

    /// <summary>Python's iter(v) as a fresh list: list items, tuple items, dict keys, string characters.</summary>
    public static List<object?> Iterate(object? v) => v switch
    {
        List<object?> l => new List<object?>(l),
        PyTuple t => new List<object?>(t.Items),
        PyDict d => new List<object?>(d.Keys),
        PyDictView view => view.Snapshot(),
        string s => StringChars(s),
        Markup m => StringChars(m.Value),
        Undefined => [],
        Namespace => throw TemplateRuntimeError.Type("'Namespace' object is not iterable"),
        _ => throw TemplateRuntimeError.Type($"'{TypeName(v)}' object is not iterable"),
    };

    private static List<object?> StringChars(string s)
    {
        var list = new List<object?>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                list.Add(s.Substring(i, 2));
                i++;
            }
            else list.Add(s[i].ToString());
        }
        return list;
    }

    /// <summary>True when the text holds characters outside the BMP, where UTF-16 units and Python's code points differ.</summary>
    public static bool HasSurrogates(string s) => s.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') >= 0;

    /// <summary>Python's len(v).</summary>
    public static long Length(object? v) => v switch
    {
        string s => HasSurrogates(s) ? s.EnumerateRunes().Count() : s.Length,
        Markup m => Length(m.Value),
        List<object?> l => l.Count,
        PyDict d => d.Count,
        PyTuple t => t.Items.Length,
        PyDictView view => view.Dict.Count,
        Undefined => 0,
        _ => throw TemplateRuntimeError.Type($"object of type '{TypeName(v)}' has no len()"),
    };

    public static bool Contains(object? container, object? item)
    {
        if (container is Markup mc) container = mc.Value;
        if (item is Markup mi) item = mi.Value;
        switch (container)
        {
            case string s:
                if (item is string sub) return s.Contains(sub, StringComparison.Ordinal);
                throw TemplateRuntimeError.Type($"'in <string>' requires string as left operand, not {TypeName(item)}");
            case List<object?> l:
                foreach (var x in l) if (Equal(x, item)) return true;
                return false;
            case PyTuple t:
                foreach (var x in t.Items) if (Equal(x, item)) return true;
                return false;
            case PyDict d: return item is not null && IsHashable(item) && d.ContainsKey(item);
            case PyDictView view when view.Kind == PyDictView.ViewKind.Keys:
                return item is not null && IsHashable(item) && view.Dict.ContainsKey(item);
            case PyDictView view:
                foreach (var x in view.Snapshot()) if (Equal(x, item)) return true;
                return false;
            case Undefined: return false;
            default: throw TemplateRuntimeError.Type($"argument of type '{TypeName(container)}' is not iterable");
        }
    }

    private static bool IsHashable(object item) => item is not (List<object?> or PyDict);
}
