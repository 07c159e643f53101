using System.Text;

namespace Infer.Templates;

/// <summary>Jinja2's default Undefined: prints empty, is falsy, iterates as empty; most other uses fail.</summary>
internal sealed class Undefined
{
    public Undefined(string hint, string kind = "UndefinedError")
    {
        Hint = hint;
        Kind = kind;
    }

    /// <summary>The error a use raises: UndefinedError, or SecurityError for a sandbox-blocked attribute.</summary>
    public string Kind { get; }

    /// <summary>What Jinja2 says when the value is used: "'x' is undefined" or "'dict object' has no attribute 'y'".</summary>
    public string Hint { get; }

    public static Undefined ForName(string name) => new($"'{name}' is undefined");

    public TemplateRuntimeError Fail() => new(Kind, Hint);
}

/// <summary>The object <c>namespace()</c> returns: the one object <c>set ns.attr = ...</c> may change.</summary>
internal sealed class Namespace
{
    public Dictionary<string, object?> Attributes { get; } = new(StringComparer.Ordinal);
}

/// <summary>A Python dict: insertion-ordered, keys compared the Python way (1 == 1.0 == True).</summary>
internal sealed class PyDict : OrderedDictionary<object, object?>
{
    public PyDict() : base(PyKeyComparer.Instance) { }

    public PyDict(int capacity) : base(capacity, PyKeyComparer.Instance) { }
}

/// <summary>
/// markupsafe's Markup: text marked safe (the <c>safe</c> and <c>escape</c> filters return it). Otherwise a str, except
/// that <c>+</c> with a plain str HTML-escapes the plain side, as functionary's template relies on.
/// </summary>
internal sealed class Markup
{
    public Markup(string value) => Value = value;

    public string Value { get; }

    public override string ToString() => Value;

    public static string Escape(string s)
    {
        if (s.AsSpan().IndexOfAny("&<>\"'") < 0) return s;
        var sb = new StringBuilder(s.Length + 16);
        foreach (char c in s)
        {
            switch (c)
            {
                case '&': sb.Append("&amp;"); break;
                case '<': sb.Append("&lt;"); break;
                case '>': sb.Append("&gt;"); break;
                case '"': sb.Append("&#34;"); break;
                case '\'': sb.Append("&#39;"); break;
                default: sb.Append(c); break;
            }
        }
        return sb.ToString();
    }
}

/// <summary>What dict.keys(), dict.values() and dict.items() return: iterable and sized, but not indexable.</summary>
internal sealed class PyDictView(PyDict dict, PyDictView.ViewKind kind)
{
    public enum ViewKind
    {
        Keys,
        Values,
        Items,
    }

    public PyDict Dict { get; } = dict;

    public ViewKind Kind { get; } = kind;

    public string TypeName => Kind switch
    {
        ViewKind.Keys => "dict_keys",
        ViewKind.Values => "dict_values",
        _ => "dict_items",
    };

    public List<object?> Snapshot()
    {
        var list = new List<object?>(Dict.Count);
        foreach (var (k, v) in Dict)
            list.Add(Kind switch { ViewKind.Keys => k, ViewKind.Values => v, _ => new PyTuple([k, v]) });
        return list;
    }
}

/// <summary>A Python tuple (immutable list).</summary>
internal sealed class PyTuple
{
    public PyTuple(object?[] items) => Items = items;

    public object?[] Items { get; }
}

internal sealed class PyKeyComparer : IEqualityComparer<object>
{
    public static readonly PyKeyComparer Instance = new();

    public new bool Equals(object? x, object? y) => Py.Equal(x, y);

    public int GetHashCode(object obj) => obj switch
    {
        bool b => b ? 1 : 0,
        long l => l.GetHashCode(),
        double d when d == Math.Floor(d) && Math.Abs(d) < 9e18 => ((long)d).GetHashCode(),
        string s => StringComparer.Ordinal.GetHashCode(s),
        Markup m => StringComparer.Ordinal.GetHashCode(m.Value),
        _ => obj.GetHashCode(),
    };
}

/// <summary>A method looked up on a value (<c>s.strip</c>), called later.</summary>
internal sealed class BoundMethod
{
    public BoundMethod(object target, string name)
    {
        Target = target;
        Name = name;
    }

    public object Target { get; }

    public string Name { get; }
}

/// <summary>A global function such as <c>range</c> or <c>raise_exception</c>.</summary>
internal sealed class BuiltinFunction
{
    public BuiltinFunction(string name, Func<Context, CallArgs, object?> invoke)
    {
        Name = name;
        Invoke = invoke;
    }

    public string Name { get; }

    public Func<Context, CallArgs, object?> Invoke { get; }
}

/// <summary>Evaluated call arguments: positional then keyword.</summary>
internal sealed class CallArgs
{
    public static readonly CallArgs Empty = new([], null);

    public CallArgs(List<object?> positional, Dictionary<string, object?>? keywords)
    {
        Positional = positional;
        Keywords = keywords;
    }

    public List<object?> Positional { get; }

    public Dictionary<string, object?>? Keywords { get; }

    public int Count => Positional.Count;

    /// <summary>Argument by position, or by keyword name, or the fallback.</summary>
    public object? Get(int index, string name, object? fallback = null)
    {
        if (index >= 0 && index < Positional.Count) return Positional[index];
        if (Keywords is not null && Keywords.TryGetValue(name, out var v)) return v;
        return fallback;
    }

    public bool Has(int index, string name) =>
        (index >= 0 && index < Positional.Count) || (Keywords is not null && Keywords.ContainsKey(name));
}

/// <summary>The <c>loop</c> variable inside a for loop.</summary>
internal sealed class LoopContext
{
    public LoopContext(List<object?> items) => Items = items;

    public List<object?> Items { get; }

    public int Index0 { get; set; }

    public int Depth0 { get; init; }

    public object? GetAttribute(string name) => name switch
    {
        "index" => (long)(Index0 + 1),
        "index0" => (long)Index0,
        "revindex" => (long)(Items.Count - Index0),
        "revindex0" => (long)(Items.Count - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == Items.Count - 1,
        "length" => (long)Items.Count,
        "depth" => (long)(Depth0 + 1),
        "depth0" => (long)Depth0,
        "previtem" => Index0 > 0 ? Items[Index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => Index0 + 1 < Items.Count ? Items[Index0 + 1] : new Undefined("there is no next item"),
        "cycle" => new BuiltinFunction("cycle", (_, a) =>
            a.Count == 0 ? throw TemplateRuntimeError.Type("no items for cycling given") : a.Positional[Index0 % a.Count]),
        _ => new Undefined($"'jinja2.runtime.LoopContext object' has no attribute '{name}'"),
    };
}
