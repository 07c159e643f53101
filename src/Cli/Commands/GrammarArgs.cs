using Infer.Runtime.Grammar;
using Infer.Runtime.Sampling;
using Infer.Runtime.Tokenizers;

namespace Infer.Cli.Commands;

/// <summary>
/// llama.cpp's grammar options, in one place: <c>--grammar GBNF</c>, <c>--grammar-file FILE</c>, <c>-j/--json-schema JSON</c>,
/// <c>--json-schema-file FILE</c> (at most one). The grammar is parsed before the model loads, so a mistake costs no
/// load; a grammar error is a usage error naming the option, the line and the column.
/// </summary>
internal static class GrammarArgs
{
    public static GbnfGrammar? Parse(Args a)
    {
        var given = new (string Option, string? Value)[]
        {
            ("--grammar", a.String("--grammar")),
            ("--grammar-file", a.String("--grammar-file")),
            ("--json-schema", a.String("-j", "--json-schema")),
            ("--json-schema-file", a.String("--json-schema-file")),
        }.Where(x => x.Value is not null).ToList();
        if (given.Count == 0) return null;
        if (given.Count > 1) throw new UsageException($"{given[0].Option} and {given[1].Option} cannot be used together");
        var (option, value) = given[0];
        string what = option.EndsWith("-file", StringComparison.Ordinal) ? $"{option} {value}" : option;
        string text = option.EndsWith("-file", StringComparison.Ordinal)
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
