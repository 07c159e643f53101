using System.Text;

namespace Infer.Templates;

/// <summary>Attribute, item and call semantics, plus the global functions templates use.</summary>
internal static partial class Builtins
{
    private const long MaxRangeLength = 1_000_000;

    private static readonly HashSet<string> DictMethods = ["get", "items", "keys", "values", "copy"];

    private static readonly HashSet<string> ListMethods = ["index", "count", "copy"];

    // transformers renders in Jinja2's ImmutableSandboxedEnvironment: methods that modify a list or dict are unsafe.
    private static readonly HashSet<string> DictMutators = ["pop", "update", "setdefault", "clear", "popitem"];

    private static readonly HashSet<string> ListMutators = ["append", "pop", "insert", "extend", "remove", "reverse", "sort", "clear"];

    private static readonly HashSet<string> StringMethods =
    [
        "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "replace",
        "upper", "lower", "title", "capitalize", "swapcase", "find", "rfind", "index", "rindex", "count", "join",
        "isdigit", "isalpha", "isalnum", "isspace", "isupper", "islower", "isnumeric", "isdecimal", "istitle",
        "center", "ljust", "rjust", "zfill", "format", "partition", "rpartition", "removeprefix", "removesuffix",
        "expandtabs", "casefold",
    ];

    public static readonly Dictionary<string, object?> Globals = new(StringComparer.Ordinal)
    {
        ["range"] = new BuiltinFunction("range", (_, a) => Range(a)),
        ["namespace"] = new BuiltinFunction("namespace", (_, a) => MakeNamespace(a)),
        ["dict"] = new BuiltinFunction("dict", (_, a) => MakeDict(a)),
        ["raise_exception"] = new BuiltinFunction("raise_exception", (_, a) =>
            throw new TemplateRaiseSignal(a.Count > 0 ? Py.Str(a.Positional[0]) : "")),
        ["strftime_now"] = new BuiltinFunction("strftime_now", (ctx, a) =>
            Strftime.Format((ctx.Options.Clock ?? (() => DateTime.Now))(), a.Count > 0 ? Py.Str(a.Positional[0]) : "")),
        ["joiner"] = new BuiltinFunction("joiner", (_, a) => MakeJoiner(a.Count > 0 ? Py.Str(a.Positional[0]) : Py.Str(a.Get(-1, "sep", ", ")))),
        ["lipsum"] = new BuiltinFunction("lipsum", (_, _) => throw TemplateRuntimeError.Runtime("lipsum is not supported")),
    };

    /// <summary>Jinja2's object_type_repr, used in undefined hints: "None", "dict object", ...</summary>
    private static string ObjectTypeRepr(object? obj) => obj switch
    {
        null => "None",
        Namespace => "jinja2.utils.Namespace object",
        LoopContext => "jinja2.runtime.LoopContext object",
        Markup => "markupsafe.Markup object",
        _ => Py.TypeName(obj) + " object",
    };

    private static Undefined NoAttribute(object? obj, string name) => new($"'{ObjectTypeRepr(obj)}' has no attribute '{name}'");

    private static Undefined NoElement(object? obj, object? key) => new($"{ObjectTypeRepr(obj)} has no element {Py.Repr(key)}");

    public static object? GetAttr(object? obj, string name)
    {
        if (obj is Markup m) return StringMethods.Contains(name) ? new BoundMethod(m.Value, name) : NoAttribute(m, name);
        switch (obj)
        {
            case PyDict d:
                if (DictMethods.Contains(name)) return new BoundMethod(d, name);
                if (DictMutators.Contains(name)) return Unsafe(name, "dict");
                return d.TryGetValue(name, out var v) ? v : NoAttribute(d, name);
            case Namespace ns:
                return ns.Attributes.TryGetValue(name, out var nv) ? nv : NoAttribute(ns, name);
            case LoopContext loop: return loop.GetAttribute(name);
            case string s:
                return StringMethods.Contains(name) ? new BoundMethod(s, name) : NoAttribute(s, name);
            case List<object?> l:
                if (ListMutators.Contains(name)) return Unsafe(name, "list");
                return ListMethods.Contains(name) ? new BoundMethod(l, name) : NoAttribute(l, name);
            case Undefined u: throw u.Fail();
            default: return NoAttribute(obj, name);
        }
    }

    private static Undefined Unsafe(string name, string type) =>
        new($"access to attribute '{name}' of '{type}' object is unsafe.", "SecurityError");

    public static object? GetItem(object? obj, object? key)
    {
        if (key is Markup mk) key = mk.Value;
        if (obj is Markup m)
        {
            if (key is string attr) return GetAttr(m, attr);
            var item = GetItem(m.Value, key);
            return item is string c ? new Markup(c) : NoElement(m, key);
        }
        switch (obj)
        {
            case PyDict d:
                if (key is not null and not List<object?> and not PyDict and not Undefined && d.TryGetValue(key, out var v)) return v;
                if (key is string ks && (DictMethods.Contains(ks) || DictMutators.Contains(ks))) return GetAttr(d, ks);
                return key is string missing ? NoAttribute(d, missing) : NoElement(d, key);
            case List<object?> l when key is long or bool:
                {
                    long i = Py.ToLong(key);
                    if (i < 0) i += l.Count;
                    return i >= 0 && i < l.Count ? l[(int)i] : NoElement(obj, key);
                }
            case PyTuple t when key is long or bool:
                {
                    long i = Py.ToLong(key);
                    if (i < 0) i += t.Items.Length;
                    return i >= 0 && i < t.Items.Length ? t.Items[(int)i] : NoElement(obj, key);
                }
            case string s when key is long or bool:
                {
                    // Python indexes code points; only text with surrogate pairs needs the slow path.
                    long i = Py.ToLong(key);
                    if (Py.HasSurrogates(s))
                    {
                        var chars = Py.Iterate(s);
                        if (i < 0) i += chars.Count;
                        return i >= 0 && i < chars.Count ? chars[(int)i] : NoElement(obj, key);
                    }
                    if (i < 0) i += s.Length;
                    return i >= 0 && i < s.Length ? s[(int)i].ToString() : NoElement(obj, key);
                }
            case Undefined u: throw u.Fail();
        }
        if (key is string name) return GetAttr(obj, name);
        return NoElement(obj, key);
    }

    /// <summary>Python's obj[start:stop:step] on lists, tuples and strings.</summary>
    public static object? Slice(object? obj, object? start, object? stop, object? step)
    {
        if (obj is Markup m) return new Markup((string)Slice(m.Value, start, stop, step)!);
        if (obj is Undefined u) throw u.Fail();
        if (obj is string text && Py.HasSurrogates(text))
            return string.Concat(((List<object?>)Slice(Py.Iterate(text), start, stop, step)!).Cast<string>());
        int length = obj switch
        {
            List<object?> l => l.Count,
            PyTuple t => t.Items.Length,
            string s => s.Length,
            _ => throw TemplateRuntimeError.Type($"'{Py.TypeName(obj)}' object is not subscriptable"),
        };
        var indices = SliceIndices(length, start, stop, step);
        switch (obj)
        {
            case List<object?> list:
                {
                    var r = new List<object?>(indices.Count);
                    foreach (int i in indices) r.Add(list[i]);
                    return r;
                }
            case PyTuple tuple: return new PyTuple(indices.Select(i => tuple.Items[i]).ToArray());
            default:
                {
                    var s = (string)obj!;
                    var sb = new StringBuilder(indices.Count);
                    foreach (int i in indices) sb.Append(s[i]);
                    return sb.ToString();
                }
        }
    }

    private static List<int> SliceIndices(int length, object? startV, object? stopV, object? stepV)
    {
        long step = stepV is null ? 1 : SliceIndex(stepV);
        if (step == 0) throw TemplateRuntimeError.Value("slice step cannot be zero");
        long lower = step > 0 ? 0 : -1;
        long upper = step > 0 ? length : length - 1;
        long Clamp(object? v, long fallback)
        {
            if (v is null) return fallback;
            long x = SliceIndex(v);
            if (x < 0)
            {
                x += length;
                if (x < lower) x = lower;
            }
            else if (x > upper) x = upper;
            return x;
        }
        long start = Clamp(startV, step > 0 ? lower : upper);
        long stop = Clamp(stopV, step > 0 ? upper : lower);
        var result = new List<int>();
        if (step > 0) for (long i = start; i < stop; i += step) result.Add((int)i);
        else for (long i = start; i > stop; i += step) result.Add((int)i);
        return result;
    }

    private static long SliceIndex(object? v) => v is long or bool
        ? Py.ToLong(v)
        : throw TemplateRuntimeError.Type("slice indices must be integers or None or have an __index__ method");

    public static object? Call(Context ctx, object? fn, CallArgs args, int line)
    {
        switch (fn)
        {
            case MacroValue m: return m.Macro.Invoke(ctx, args, m.Closure);
            case BuiltinFunction b:
                try
                {
                    return b.Invoke(ctx, args);
                }
                catch (TemplateRaiseSignal raise)
                {
                    throw new TemplateRaiseException(raise.Message, line);
                }
            case BoundMethod bm: return Methods.Call(bm.Target, bm.Name, args);
            case Undefined u: throw u.Fail();
            default: throw TemplateRuntimeError.Type($"'{Py.TypeName(fn)}' object is not callable");
        }
    }

    private static List<object?> Range(CallArgs a)
    {
        long start = 0, stop, step = 1;
        if (a.Count == 1) stop = Py.ToLong(a.Positional[0]);
        else if (a.Count >= 2)
        {
            start = Py.ToLong(a.Positional[0]);
            stop = Py.ToLong(a.Positional[1]);
            if (a.Count >= 3) step = Py.ToLong(a.Positional[2]);
        }
        else throw TemplateRuntimeError.Type("range expected at least 1 argument, got 0");
        if (step == 0) throw TemplateRuntimeError.Value("range() arg 3 must not be zero");
        long count = step > 0 ? (stop - start + step - 1) / step : (start - stop - step - 1) / -step;
        if (count > MaxRangeLength) throw new TemplateRuntimeError("OverflowError", $"range too big, maximum length is {MaxRangeLength}");
        var list = new List<object?>((int)Math.Max(0, count));
        for (long i = 0; i < count; i++) list.Add(start + i * step);
        return list;
    }

    private static Namespace MakeNamespace(CallArgs a)
    {
        var ns = new Namespace();
        foreach (var p in a.Positional)
        {
            if (p is not PyDict d) throw TemplateRuntimeError.Type("namespace() positional argument must be a dict");
            foreach (var (k, v) in d) ns.Attributes[Py.Str(k)] = v;
        }
        if (a.Keywords is not null)
            foreach (var (k, v) in a.Keywords) ns.Attributes[k] = v;
        return ns;
    }

    /// <summary>Jinja2's joiner(sep): a callable that returns "" the first time and sep after.</summary>
    private static BuiltinFunction MakeJoiner(string separator)
    {
        bool used = false;
        return new BuiltinFunction("joiner", (_, _) =>
        {
            if (used) return separator;
            used = true;
            return "";
        });
    }

    private static PyDict MakeDict(CallArgs a)
    {
        var d = new PyDict();
        foreach (var p in a.Positional)
        {
            if (p is PyDict src) foreach (var (k, v) in src) d[k] = v;
            else throw TemplateRuntimeError.Type("dict() positional argument must be a dict");
        }
        if (a.Keywords is not null) foreach (var (k, v) in a.Keywords) d[k] = v;
        return d;
    }
}

/// <summary>Thrown by raise_exception inside a builtin; turned into <see cref="TemplateRaiseException"/> with the line.</summary>
internal sealed class TemplateRaiseSignal(string message) : Exception(message);
