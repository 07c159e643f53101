using System.Text;

namespace Infer.Templates;

internal abstract class Expr
{
    protected Expr(int line) => Line = line;

    public int Line { get; }

    public abstract object? Eval(Context ctx);
}

internal sealed class ConstExpr(int line, object? value) : Expr(line)
{
    public object? Value { get; } = value;

    public override object? Eval(Context ctx) => Value;
}

internal sealed class NameExpr(int line, string name) : Expr(line)
{
    public string Name { get; } = name;

    public override object? Eval(Context ctx) => ctx.Lookup(Name);
}

internal sealed class ListExpr(int line, List<Expr> items) : Expr(line)
{
    public List<Expr> Items { get; } = items;

    public override object? Eval(Context ctx)
    {
        var list = new List<object?>(Items.Count);
        foreach (var e in Items) list.Add(e.Eval(ctx));
        return list;
    }
}

internal sealed class TupleExpr(int line, List<Expr> items) : Expr(line)
{
    public List<Expr> Items { get; } = items;

    public override object? Eval(Context ctx)
    {
        var arr = new object?[Items.Count];
        for (int i = 0; i < arr.Length; i++) arr[i] = Items[i].Eval(ctx);
        return new PyTuple(arr);
    }
}

internal sealed class DictExpr(int line, List<(Expr Key, Expr Value)> pairs) : Expr(line)
{
    public override object? Eval(Context ctx)
    {
        var d = new PyDict(pairs.Count);
        foreach (var (k, v) in pairs)
        {
            var key = k.Eval(ctx);
            if (key is null or List<object?> or PyDict or Undefined)
                throw TemplateRuntimeError.Type($"unhashable dict key of type '{Py.TypeName(key)}'");
            d[key] = v.Eval(ctx);
        }
        return d;
    }
}

internal sealed class GetAttrExpr(int line, Expr target, string name) : Expr(line)
{
    public Expr Target { get; } = target;

    public string Name { get; } = name;

    public override object? Eval(Context ctx) => Builtins.GetAttr(Target.Eval(ctx), Name);
}

internal sealed class GetItemExpr(int line, Expr target, Expr index) : Expr(line)
{
    public override object? Eval(Context ctx) => Builtins.GetItem(target.Eval(ctx), index.Eval(ctx));
}

internal sealed class SliceExpr(int line, Expr target, Expr? start, Expr? stop, Expr? step) : Expr(line)
{
    public override object? Eval(Context ctx)
    {
        var obj = target.Eval(ctx);
        return Builtins.Slice(obj, start?.Eval(ctx), stop?.Eval(ctx), step?.Eval(ctx));
    }
}

/// <summary>Call arguments as written: positional expressions and name=expression pairs.</summary>
internal sealed class ArgList
{
    public static readonly ArgList None = new([], []);

    public ArgList(List<Expr> positional, List<(string Name, Expr Value)> keywords)
    {
        Positional = positional;
        Keywords = keywords;
    }

    public List<Expr> Positional { get; }

    public List<(string Name, Expr Value)> Keywords { get; }

    public CallArgs Eval(Context ctx, object? first = null, bool hasFirst = false)
    {
        if (Positional.Count == 0 && Keywords.Count == 0 && !hasFirst) return CallArgs.Empty;
        var pos = new List<object?>(Positional.Count + 1);
        if (hasFirst) pos.Add(first);
        foreach (var e in Positional) pos.Add(e.Eval(ctx));
        Dictionary<string, object?>? kw = null;
        if (Keywords.Count > 0)
        {
            kw = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (var (n, e) in Keywords) kw[n] = e.Eval(ctx);
        }
        return new CallArgs(pos, kw);
    }
}

internal sealed class CallExpr(int line, Expr callee, ArgList args) : Expr(line)
{
    public override object? Eval(Context ctx)
    {
        var fn = callee.Eval(ctx);
        return Builtins.Call(ctx, fn, args.Eval(ctx), Line);
    }
}

internal sealed class FilterExpr(int line, Expr? value, string name, ArgList args) : Expr(line)
{
    public string Name { get; } = name;

    public override object? Eval(Context ctx) => Apply(ctx, value!.Eval(ctx));

    public object? Apply(Context ctx, object? input)
    {
        if (!Builtins.Filters.TryGetValue(Name, out var filter))
            throw TemplateRuntimeError.Runtime($"No filter named '{Name}' found.");
        return filter(ctx, input, args.Eval(ctx));
    }
}

internal sealed class TestExpr(int line, Expr value, string name, ArgList args) : Expr(line)
{
    public override object? Eval(Context ctx)
    {
        if (!Builtins.Tests.TryGetValue(name, out var test))
            throw TemplateRuntimeError.Runtime($"No test named '{name}' found.");
        return test(ctx, value.Eval(ctx), args.Eval(ctx));
    }
}

internal sealed class NotExpr(int line, Expr operand) : Expr(line)
{
    public override object? Eval(Context ctx) => !Py.Truthy(operand.Eval(ctx));
}

internal sealed class AndExpr(int line, Expr left, Expr right) : Expr(line)
{
    public override object? Eval(Context ctx)
    {
        var l = left.Eval(ctx);
        return Py.Truthy(l) ? right.Eval(ctx) : l;
    }
}

internal sealed class OrExpr(int line, Expr left, Expr right) : Expr(line)
{
    public override object? Eval(Context ctx)
    {
        var l = left.Eval(ctx);
        return Py.Truthy(l) ? l : right.Eval(ctx);
    }
}

internal sealed class CondExpr(int line, Expr test, Expr then, Expr? otherwise) : Expr(line)
{
    public override object? Eval(Context ctx)
    {
        if (Py.Truthy(test.Eval(ctx))) return then.Eval(ctx);
        return otherwise is null
            ? new Undefined("the inline if-expression on line " + Line + " evaluated to false and no else section was defined.")
            : otherwise.Eval(ctx);
    }
}

internal sealed class UnaryExpr(int line, string op, Expr operand) : Expr(line)
{
    public override object? Eval(Context ctx) => Operators.Unary(op, operand.Eval(ctx));
}

internal sealed class BinaryExpr(int line, string op, Expr left, Expr right) : Expr(line)
{
    public override object? Eval(Context ctx) => Operators.Binary(op, left.Eval(ctx), right.Eval(ctx));
}

/// <summary>A chain such as <c>a &lt; b &lt;= c</c> or <c>x not in y</c>.</summary>
internal sealed class CompareExpr(int line, Expr first, List<(string Op, Expr Operand)> rest) : Expr(line)
{
    public override object? Eval(Context ctx)
    {
        var left = first.Eval(ctx);
        foreach (var (op, e) in rest)
        {
            var right = e.Eval(ctx);
            if (!Operators.Compare(op, left, right)) return false;
            left = right;
        }
        return true;
    }
}

internal sealed class ConcatExpr(int line, List<Expr> parts) : Expr(line)
{
    public override object? Eval(Context ctx)
    {
        var sb = new StringBuilder();
        foreach (var p in parts) Py.AppendStr(sb, p.Eval(ctx));
        return sb.ToString();
    }
}
