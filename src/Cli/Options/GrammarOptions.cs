using System.CommandLine;
using Infer.Runtime.Grammar;
using Infer.Runtime.Sampling;
using Infer.Runtime.Tokenizers;

namespace Infer.Cli.Options;

/// <summary>
/// llama.cpp's grammar options, in one place: <c>--grammar GBNF</c>, <c>--grammar-file FILE</c>, <c>-j/--json-schema JSON</c>,
/// <c>--json-schema-file FILE</c> (at most one). The grammar is parsed before the model loads, so a mistake costs no
/// load; a grammar error is a usage error naming the option, the line and the column.
/// </summary>
internal sealed class GrammarOptions
{
    public Option<string?> Grammar { get; } = new("--grammar") { Description = "constrain the output to a GBNF grammar", HelpName = "GBNF" };

    public Option<string?> GrammarFile { get; } = new("--grammar-file") { Description = "the GBNF grammar in a file", HelpName = "FILE" };

    public Option<string?> JsonSchema { get; } = new("--json-schema", "-j")
    {
        Description = "constrain the output to JSON that follows this schema", HelpName = "JSON",
    };

    public Option<string?> JsonSchemaFile { get; } = new("--json-schema-file") { Description = "the JSON schema in a file", HelpName = "FILE" };

    public void AddTo(Command command)
    {
        foreach (var o in new[] { Grammar, GrammarFile, JsonSchema, JsonSchemaFile }) command.Options.Add(o);
    }

    /// <exception cref="UsageException">more than one given, or the grammar or schema does not parse.</exception>
    /// <exception cref="FileNotFoundException">a grammar or schema file is missing.</exception>
    public GbnfGrammar? Read(ParseResult r)
    {
        var given = new (string Option, string? Value)[]
        {
            ("--grammar", r.GetValue(Grammar)),
            ("--grammar-file", r.GetValue(GrammarFile)),
            ("--json-schema", r.GetValue(JsonSchema)),
            ("--json-schema-file", r.GetValue(JsonSchemaFile)),
        }.Where(x => x.Value is not null).ToList();
        if (given.Count == 0) return null;
        if (given.Count > 1) throw new UsageException($"{given[0].Option} and {given[1].Option} cannot be used together");
        var (option, value) = given[0];
        bool file = option.EndsWith("-file", StringComparison.Ordinal);
        string what = file ? $"{option} {value}" : option;
        string text = file
            ? File.Exists(value) ? File.ReadAllText(value!) : throw new FileNotFoundException($"{value}: file not found")
            : value!;
        try
        {
            if (option.StartsWith("--json-schema", StringComparison.Ordinal)) text = JsonSchemaGrammar.Convert(text);
            return GbnfGrammar.Parse(text);
        }
        catch (GrammarException e)
        {
            throw new UsageException($"{what}: {e.Message}");
        }
    }

    /// <summary>The sampling options with the grammar bound to the model's vocabulary.</summary>
    public static SamplerOptions Bind(SamplerOptions options, GbnfGrammar? grammar, Tokenizer tokenizer) =>
        grammar is null ? options : options with { Grammar = GrammarConstraint.Create(grammar, tokenizer) };
}
