namespace Infer.Templates;

/// <summary>One level of variables: the template top level, a loop iteration, a macro call.</summary>
internal sealed class Scope
{
    private Dictionary<string, object?>? _vars;

    private static readonly HashSet<string> NoStores = [];

    public Scope(Scope? parent, Dictionary<string, object?>? vars = null, HashSet<string>? stores = null)
    {
        Parent = parent;
        _vars = vars;
        Stores = stores ?? NoStores;
    }

    public Scope? Parent { get; }

    /// <summary>
    /// Names this frame assigns directly (outside if blocks), found by the parser. As in Jinja2, a nested frame
    /// that reads such a name before the frame has assigned it gets undefined rather than the caller's value.
    /// </summary>
    public HashSet<string> Stores { get; }

    public void Set(string name, object? value) => (_vars ??= new Dictionary<string, object?>(StringComparer.Ordinal))[name] = value;

    /// <summary>Forgets this scope's own variables (a loop reuses one scope, fresh for each iteration).</summary>
    public void Clear() => _vars?.Clear();

    public bool TryGet(string name, out object? value)
    {
        if (_vars is not null && _vars.TryGetValue(name, out value)) return true;
        for (var s = Parent; s is not null; s = s.Parent)
        {
            if (s._vars is not null && s._vars.TryGetValue(name, out value)) return true;
            if (s.Stores.Contains(name))
            {
                value = Undefined.ForName(name);
                return true;
            }
        }
        value = null;
        return false;
    }
}

/// <summary>The state of one render: the variables, the options, and the limits that keep bad templates finite.</summary>
internal sealed class Context
{
    public const int MaxCallDepth = 256;
    public const long MaxOutputChars = 64L * 1024 * 1024;

    public Context(Scope root, TemplateOptions options)
    {
        Current = root;
        Options = options;
    }

    public Scope Current { get; set; }

    public TemplateOptions Options { get; }

    public int CallDepth { get; set; }

    private long _iterations;

    /// <summary>Counts one loop iteration against <see cref="TemplateOptions.MaxLoopIterations"/>.</summary>
    public void CountIteration()
    {
        if (++_iterations > Options.MaxLoopIterations)
            throw TemplateRuntimeError.Runtime($"template ran more than {Options.MaxLoopIterations} loop iterations");
    }

    public object? Lookup(string name)
    {
        if (Current.TryGet(name, out var v)) return v;
        if (Builtins.Globals.TryGetValue(name, out var g)) return g;
        return Undefined.ForName(name);
    }
}
