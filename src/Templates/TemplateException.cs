namespace Infer.Templates;

/// <summary>
/// A chat template failed to parse or to render. <see cref="Kind"/> is the Jinja2 exception class the same
/// failure raises in Python (TemplateSyntaxError, UndefinedError, TypeError, TemplateRuntimeError, ...),
/// <see cref="Detail"/> is Jinja2's message, and <see cref="Line"/> the 1-based template line (0 if unknown).
/// </summary>
public class TemplateException : Exception
{
    public TemplateException(string kind, string detail, int line, string? construct = null)
        : base(FormatMessage(kind, detail, line, construct))
    {
        Kind = kind;
        Detail = detail;
        Line = line;
        Construct = construct;
    }

    public string Kind { get; }

    public string Detail { get; }

    public int Line { get; }

    /// <summary>The statement or expression being evaluated, e.g. "set", "for", "filter 'tojson'".</summary>
    public string? Construct { get; }

    /// <summary>"Kind: Detail", the way Python prints the exception.</summary>
    public string PythonMessage => $"{Kind}: {Detail}";

    private static string FormatMessage(string kind, string detail, int line, string? construct)
    {
        var where = line > 0 ? $"template line {line}" : "template";
        if (!string.IsNullOrEmpty(construct)) where += $", in '{construct}'";
        return $"{where}: {kind}: {detail}";
    }
}

/// <summary>The template itself called <c>raise_exception(message)</c>.</summary>
public sealed class TemplateRaiseException : TemplateException
{
    public TemplateRaiseException(string message, int line)
        : base("TemplateError", message, line, "raise_exception")
    {
        TemplateMessage = message;
    }

    /// <summary>The message the template passed to raise_exception.</summary>
    public string TemplateMessage { get; }
}

/// <summary>An error raised while evaluating, before the line and construct are known.</summary>
internal sealed class TemplateRuntimeError : Exception
{
    public TemplateRuntimeError(string kind, string detail) : base(detail)
    {
        Kind = kind;
    }

    public string Kind { get; }

    public static TemplateRuntimeError Type(string detail) => new("TypeError", detail);

    public static TemplateRuntimeError Runtime(string detail) => new("TemplateRuntimeError", detail);

    public static TemplateRuntimeError Value(string detail) => new("ValueError", detail);
}
