namespace Infer.Runtime.Grammar;

/// <summary>
/// A grammar that cannot be used: a GBNF syntax error (with its 1-based <see cref="Line"/> and <see cref="Column"/>),
/// an undefined or left-recursive rule, or a constraint that no token can satisfy.
/// </summary>
public class GrammarException : Exception
{
    public GrammarException(string message) : base(message) => Reason = message;

    public GrammarException(string message, int line, int column) : base($"line {line}, column {column}: {message}")
    {
        Line = line;
        Column = column;
        Reason = message;
    }

    /// <summary>1-based line of the error in the grammar text; 0 when the error has no position.</summary>
    public int Line { get; }

    /// <summary>1-based column (in UTF-16 chars) of the error; 0 when the error has no position.</summary>
    public int Column { get; }

    /// <summary>The message without its position.</summary>
    public string Reason { get; }
}

/// <summary>A JSON schema the converter cannot express as a grammar; <see cref="Keyword"/> names the keyword.</summary>
public sealed class JsonSchemaException(string message, string keyword, string path)
    : GrammarException($"{path}: '{keyword}': {message}")
{
    /// <summary>The schema keyword that could not be converted (for example "format", "uniqueItems").</summary>
    public string Keyword { get; } = keyword;

    /// <summary>A JSON pointer to the schema object that holds the keyword ("#" is the root).</summary>
    public string SchemaPath { get; } = path;
}
