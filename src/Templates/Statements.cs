using System.Runtime.CompilerServices;
using System.Text;

namespace Infer.Templates;

internal enum Flow
{
    Normal,
    Break,
    Continue,
}

internal abstract class Stmt
{
    protected Stmt(int line) => Line = line;

    public int Line { get; }

    /// <summary>Names the construct in error messages: "for", "set", "print", ...</summary>
    public abstract string Construct { get; }

    public Flow Exec(Context ctx, StringBuilder output)
    {
        RuntimeHelpers.EnsureSufficientExecutionStack();
        try
        {
            return ExecCore(ctx, output);
        }
        catch (TemplateRuntimeError e)
        {
            throw new TemplateException(e.Kind, e.Message, Line, Construct);
        }
    }

    protected abstract Flow ExecCore(Context ctx, StringBuilder output);

    /// <summary>Runs a body in its own frame (filter and set blocks): what it assigns stays inside.</summary>
    public static Flow ExecInChildScope(List<Stmt> body, Context ctx, StringBuilder output, HashSet<string> stores)
    {
        var saved = ctx.Current;
        ctx.Current = new Scope(saved, stores: stores);
        try
        {
            return ExecBody(body, ctx, output);
        }
        finally
        {
            ctx.Current = saved;
        }
    }

    public static Flow ExecBody(List<Stmt> body, Context ctx, StringBuilder output)
    {
        foreach (var s in body)
        {
            var flow = s.Exec(ctx, output);
            if (flow != Flow.Normal) return flow;
        }
        if (output.Length > Context.MaxOutputChars)
            throw new TemplateRuntimeError("TemplateRuntimeError", $"output exceeds {Context.MaxOutputChars} characters");
        return Flow.Normal;
    }
}

internal sealed class TextStmt(int line, string text) : Stmt(line)
{
    public override string Construct => "text";

    protected override Flow ExecCore(Context ctx, StringBuilder output)
    {
        output.Append(text);
        return Flow.Normal;
    }
}

internal sealed class OutputStmt(int line, Expr expr) : Stmt(line)
{
    public override string Construct => "{{ ... }}";

    protected override Flow ExecCore(Context ctx, StringBuilder output)
    {
        Py.AppendStr(output, expr.Eval(ctx));
        return Flow.Normal;
    }
}

internal sealed class IfStmt(int line, List<(Expr Test, List<Stmt> Body)> branches, List<Stmt>? otherwise) : Stmt(line)
{
    public override string Construct => "if";

    protected override Flow ExecCore(Context ctx, StringBuilder output)
    {
        foreach (var (test, body) in branches)
        {
            if (Py.Truthy(test.Eval(ctx))) return ExecBody(body, ctx, output);
        }
        return otherwise is null ? Flow.Normal : ExecBody(otherwise, ctx, output);
    }
}

/// <summary>An assignment target: a name, <c>ns.attr</c>, or a tuple of names.</summary>
internal abstract class Target
{
    public abstract void Assign(Context ctx, Scope scope, object? value);

    public static void Unpack(Target[] items, Context ctx, Scope scope, object? value)
    {
        if (value is null or bool or long or double or Namespace or MacroValue or BuiltinFunction or BoundMethod or LoopContext)
            throw TemplateRuntimeError.Type($"cannot unpack non-iterable {Py.TypeName(value)} object");
        var values = Py.Iterate(value);
        if (values.Count != items.Length)
        {
            throw values.Count < items.Length
                ? TemplateRuntimeError.Value($"not enough values to unpack (expected {items.Length}, got {values.Count})")
                : TemplateRuntimeError.Value($"too many values to unpack (expected {items.Length})");
        }
        for (int i = 0; i < items.Length; i++) items[i].Assign(ctx, scope, values[i]);
    }
}

internal sealed class NameTarget(string name) : Target
{
    public string Name { get; } = name;

    public override void Assign(Context ctx, Scope scope, object? value) => scope.Set(Name, value);
}

internal sealed class AttrTarget(string name, string attribute) : Target
{
    public override void Assign(Context ctx, Scope scope, object? value)
    {
        if (ctx.Lookup(name) is not Namespace ns)
            throw TemplateRuntimeError.Runtime("cannot assign attribute on non-namespace object");
        ns.Attributes[attribute] = value;
    }
}

internal sealed class TupleTarget(Target[] items) : Target
{
    public Target[] Items { get; } = items;

    public override void Assign(Context ctx, Scope scope, object? value) => Unpack(Items, ctx, scope, value);
}

internal sealed class SetStmt(int line, Target target, Expr value) : Stmt(line)
{
    public override string Construct => "set";

    protected override Flow ExecCore(Context ctx, StringBuilder output)
    {
        target.Assign(ctx, ctx.Current, value.Eval(ctx));
        return Flow.Normal;
    }
}

/// <summary><c>{% set name %}...{% endset %}</c>, optionally piped through filters.</summary>
internal sealed class SetBlockStmt(int line, Target target, List<FilterExpr> filters, List<Stmt> body, HashSet<string> stores) : Stmt(line)
{
    public override string Construct => "set";

    protected override Flow ExecCore(Context ctx, StringBuilder output)
    {
        var sb = new StringBuilder();
        ExecInChildScope(body, ctx, sb, stores);
        object? value = sb.ToString();
        foreach (var f in filters) value = f.Apply(ctx, value);
        target.Assign(ctx, ctx.Current, value);
        return Flow.Normal;
    }
}

internal sealed class FilterBlockStmt(int line, List<FilterExpr> filters, List<Stmt> body, HashSet<string> stores) : Stmt(line)
{
    public override string Construct => "filter";

    protected override Flow ExecCore(Context ctx, StringBuilder output)
    {
        var sb = new StringBuilder();
        var flow = ExecInChildScope(body, ctx, sb, stores);
        object? value = sb.ToString();
        foreach (var f in filters) value = f.Apply(ctx, value);
        Py.AppendStr(output, value);
        return flow;
    }
}

/// <summary><c>{% with a = x, b = y %}...{% endwith %}</c>: values evaluated outside, names visible only inside.</summary>
internal sealed class WithStmt(int line, List<(Target Target, Expr Value)> targets, List<Stmt> body, HashSet<string> stores) : Stmt(line)
{
    public override string Construct => "with";

    protected override Flow ExecCore(Context ctx, StringBuilder output)
    {
        var values = targets.Select(t => t.Value.Eval(ctx)).ToList();
        var saved = ctx.Current;
        var scope = new Scope(saved, stores: stores);
        for (int i = 0; i < values.Count; i++) targets[i].Target.Assign(ctx, scope, values[i]);
        ctx.Current = scope;
        try
        {
            return ExecBody(body, ctx, output);
        }
        finally
        {
            ctx.Current = saved;
        }
    }
}

internal sealed class BreakStmt(int line) : Stmt(line)
{
    public override string Construct => "break";

    protected override Flow ExecCore(Context ctx, StringBuilder output) => Flow.Break;
}

internal sealed class ContinueStmt(int line) : Stmt(line)
{
    public override string Construct => "continue";

    protected override Flow ExecCore(Context ctx, StringBuilder output) => Flow.Continue;
}

internal sealed class ForStmt(
    int line, Target target, Expr iterable, Expr? filter, List<Stmt> body, List<Stmt>? otherwise, HashSet<string> stores) : Stmt(line)
{
    public override string Construct => "for";

    protected override Flow ExecCore(Context ctx, StringBuilder output)
    {
        var source = iterable.Eval(ctx);
        var items = Py.Iterate(source);
        var outer = ctx.Current;
        try
        {
            if (filter is not null)
            {
                var kept = new List<object?>(items.Count);
                var probe = new Scope(outer, stores: stores);
                foreach (var item in items)
                {
                    ctx.CountIteration();
                    probe.Clear();
                    ctx.Current = probe;
                    target.Assign(ctx, probe, item);
                    if (Py.Truthy(filter.Eval(ctx))) kept.Add(item);
                }
                items = kept;
            }
            if (items.Count == 0)
            {
                if (otherwise is null) return Flow.Normal;
                ctx.Current = new Scope(outer, stores: stores);
                return ExecBody(otherwise, ctx, output);
            }
            var loop = new LoopContext(items);
            var scope = new Scope(outer, stores: stores);
            for (int i = 0; i < items.Count; i++)
            {
                ctx.CountIteration();
                loop.Index0 = i;
                scope.Clear();
                ctx.Current = scope;
                target.Assign(ctx, scope, items[i]);
                scope.Set("loop", loop);
                if (ExecBody(body, ctx, output) == Flow.Break) break;
            }
            return Flow.Normal;
        }
        finally
        {
            ctx.Current = outer;
        }
    }
}

internal sealed class MacroStmt(int line, Macro macro) : Stmt(line)
{
    public override string Construct => "macro";

    protected override Flow ExecCore(Context ctx, StringBuilder output)
    {
        ctx.Current.Set(macro.Name, new MacroValue(macro, ctx.Current));
        return Flow.Normal;
    }
}

/// <summary><c>{% call m(args) %}body{% endcall %}</c>: calls the macro with <c>caller()</c> rendering the body.</summary>
internal sealed class CallBlockStmt(int line, CallExpr call, List<Stmt> body, HashSet<string> stores) : Stmt(line)
{
    public override string Construct => "call";

    protected override Flow ExecCore(Context ctx, StringBuilder output)
    {
        var scope = ctx.Current;
        var caller = new BuiltinFunction("caller", (c, _) =>
        {
            var saved = c.Current;
            c.Current = new Scope(scope, stores: stores);
            try
            {
                var sb = new StringBuilder();
                ExecBody(body, c, sb);
                return sb.ToString();
            }
            finally
            {
                c.Current = saved;
            }
        });
        var inner = new Scope(scope);
        inner.Set("caller", caller);
        var saved = ctx.Current;
        ctx.Current = inner;
        try
        {
            Py.AppendStr(output, call.Eval(ctx));
        }
        finally
        {
            ctx.Current = saved;
        }
        return Flow.Normal;
    }
}

/// <summary>A macro as a value: its definition and the scope it was defined in (its closure).</summary>
internal sealed class MacroValue(Macro macro, Scope closure)
{
    public Macro Macro { get; } = macro;

    public Scope Closure { get; } = closure;
}

/// <summary>A macro defined with <c>{% macro name(a, b=default) %}</c>.</summary>
internal sealed class Macro
{
    public Macro(string name, List<(string Name, Expr? Default)> parameters, List<Stmt> body, int line, HashSet<string> stores)
    {
        Name = name;
        Parameters = parameters;
        Body = body;
        Line = line;
        Stores = stores;
    }

    public HashSet<string> Stores { get; }

    public string Name { get; }

    public List<(string Name, Expr? Default)> Parameters { get; }

    public List<Stmt> Body { get; }

    public int Line { get; }

    public string Invoke(Context ctx, CallArgs args, Scope closure)
    {
        if (ctx.CallDepth >= Context.MaxCallDepth)
        {
            throw new TemplateRuntimeError("RecursionError",
                $"maximum recursion depth exceeded: macro '{Name}' nested deeper than {Context.MaxCallDepth} calls");
        }
        var scope = new Scope(closure, stores: Stores);
        // The caller of a call block stays visible inside the macro.
        if (ctx.Current.TryGet("caller", out var caller) && caller is BuiltinFunction) scope.Set("caller", caller);
        var saved = ctx.Current;
        ctx.Current = scope;
        ctx.CallDepth++;
        try
        {
            var extra = new List<object?>();
            for (int i = 0; i < args.Positional.Count; i++)
            {
                if (i < Parameters.Count) scope.Set(Parameters[i].Name, args.Positional[i]);
                else extra.Add(args.Positional[i]);
            }
            var kwargs = new PyDict();
            if (args.Keywords is not null)
            {
                foreach (var (k, v) in args.Keywords)
                {
                    int idx = Parameters.FindIndex(p => p.Name == k);
                    if (idx < 0) kwargs[k] = v;
                    else if (idx < args.Positional.Count)
                        throw TemplateRuntimeError.Type($"macro '{Name}' got multiple values for argument '{k}'");
                    else scope.Set(k, v);
                }
            }
            for (int i = args.Positional.Count; i < Parameters.Count; i++)
            {
                var (pname, def) = Parameters[i];
                if (args.Keywords is not null && args.Keywords.ContainsKey(pname)) continue;
                scope.Set(pname, def is null ? new Undefined($"parameter '{pname}' was not provided") : def.Eval(ctx));
            }
            if (extra.Count > 0 && !UsesName("varargs"))
                throw TemplateRuntimeError.Type($"macro '{Name}' takes not more than {Parameters.Count} argument(s)");
            if (kwargs.Count > 0 && !UsesName("kwargs"))
                throw TemplateRuntimeError.Type($"macro '{Name}' takes no keyword argument '{kwargs.Keys.First()}'");
            scope.Set("varargs", new PyTuple(extra.ToArray()));
            scope.Set("kwargs", kwargs);
            var sb = new StringBuilder();
            Stmt.ExecBody(Body, ctx, sb);
            return sb.ToString();
        }
        finally
        {
            ctx.CallDepth--;
            ctx.Current = saved;
        }
    }

    public bool ReferencesVarargs { get; init; }

    public bool ReferencesKwargs { get; init; }

    private bool UsesName(string name) => name == "varargs" ? ReferencesVarargs : ReferencesKwargs;
}
