using System.Text.Json;
using Infer.Runtime.Grammar;
using Infer.Runtime.Serving;

namespace Infer.Server;

/// <summary>
/// The grammar a request constrains its output with: OpenAI's <c>response_format</c> (<c>text</c>, <c>json_object</c>,
/// <c>json_schema</c>), or llama.cpp server's <c>json_schema</c> (a schema) and <c>grammar</c> (GBNF) fields; at most one
/// of them. Constraints come from the model's <see cref="GrammarCache"/>, so requests with the same schema share one
/// (and its computed token masks). A schema the grammar cannot express is a 400 naming the keyword and where it is.
/// </summary>
internal static class StructuredOutput
{
    public static GrammarConstraint? Grammar(JsonFields f, GrammarCache cache)
    {
        GrammarConstraint? grammar = null;
        string? from = null;
        void Take(string field, GrammarConstraint? g)
        {
            if (g is null) return;
            if (from is not null)
                throw ApiException.BadRequest($"'{from}' and '{field}' both constrain the output; send one of them", field, "invalid_value");
            (grammar, from) = (g, field);
        }

        if (f.Get("response_format") is { } format) Take("response_format", ResponseFormat(format, cache));
        if (f.Get("json_schema") is { } schema) Take("json_schema", Schema(schema, cache, "json_schema", strict: false));
        if (f.String("grammar") is { Length: > 0 } gbnf)
        {
            try
            {
                Take("grammar", cache.Gbnf(gbnf));
            }
            catch (GrammarException e)
            {
                throw ApiException.BadRequest($"'grammar' is not a valid GBNF grammar: {e.Message}", "grammar", "invalid_grammar");
            }
        }
        return grammar;
    }

    private static GrammarConstraint? ResponseFormat(JsonElement format, GrammarCache cache)
    {
        const string Field = "response_format";
        if (format.ValueKind != JsonValueKind.Object)
            throw ApiException.BadRequest($"'{Field}' must be an object with a 'type'", Field, "invalid_type");
        var rf = new JsonFields(format, Field + ".");
        string type = rf.String("type") ?? throw ApiException.BadRequest($"'{Field}.type' is required", Field + ".type", "missing_field");
        switch (type)
        {
            case "text":
                return null;
            case "json_object":
                // llama.cpp's server takes a schema here too
                return rf.Get("schema") is { } s ? Schema(s, cache, Field, strict: false) : cache.JsonObject();
            case "json_schema":
                if (rf.Get("json_schema") is not { } js)
                    throw ApiException.BadRequest($"'{Field}.json_schema' is required with type \"json_schema\"", Field + ".json_schema",
                        "missing_field");
                if (js.ValueKind != JsonValueKind.Object) throw rf.Wrong("json_schema", "an object with 'name' and 'schema'");
                var jf = new JsonFields(js, Field + ".json_schema.");
                jf.String("name"); // checked for its type only: the name does not change the output
                jf.String("description");
                bool strict = jf.Bool("strict") ?? false;
                // OpenAI makes the schema optional; without one, any JSON value (as llama.cpp)
                return jf.Get("schema") is { } schema ? Schema(schema, cache, Field, strict) : cache.Gbnf(JsonSchemaGrammar.AnyValue);
            default:
                throw ApiException.BadRequest($"'{Field}.type' is \"{type}\"; expected \"text\", \"json_object\" or \"json_schema\"",
                    Field + ".type", "invalid_value");
        }
    }

    /// <param name="schema">the schema a request gave.</param>
    /// <param name="cache">the model's compiled grammars.</param>
    /// <param name="field">the request field that held the schema, named in a 400.</param>
    /// <param name="strict">
    /// OpenAI's <c>strict</c>: every keyword must be enforced. Without it, a <c>format</c> the grammar cannot enforce (email,
    /// uri, ...) is a plain string, as JSON Schema treats format by default.
    /// </param>
    private static GrammarConstraint Schema(JsonElement schema, GrammarCache cache, string field, bool strict)
    {
        if (schema.ValueKind is not (JsonValueKind.Object or JsonValueKind.True))
            throw ApiException.BadRequest($"the JSON schema in '{field}' must be an object", field, "invalid_type");
        try
        {
            return cache.JsonSchema(schema, unknownFormatsAsStrings: !strict);
        }
        catch (JsonSchemaException e)
        {
            string hint = strict && e.Keyword == "format" ? " (with \"strict\": false such a format is a plain string)" : "";
            throw ApiException.BadRequest($"the JSON schema in '{field}' cannot be enforced: {e.Message}{hint}", field, "unsupported_schema");
        }
        catch (GrammarException e)
        {
            throw ApiException.BadRequest($"the JSON schema in '{field}' cannot be enforced: {e.Message}", field, "unsupported_schema");
        }
    }
}
