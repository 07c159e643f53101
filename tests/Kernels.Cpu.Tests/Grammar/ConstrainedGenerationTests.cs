using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Infer.Runtime.Gguf;
using Infer.Runtime.Grammar;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Runtime.Sampling;
using Infer.Runtime.Tokenizers;
using Infer.Tests;

namespace Infer.Kernels.Cpu.Tests.Grammar;

/// <summary>
/// JSON schemas, each enforced on 100 temperature-sampled generations (seeds 0..99) of a random-weight fixture model,
/// which without the grammar writes gibberish. Every generation must end with an end-of-generation token within the
/// cap, parse as JSON and satisfy the schema according to the test validator (written from the specification, apart
/// from the converter). The schemas together use every keyword the converter supports.
/// </summary>
public abstract class ConstrainedGenerationTests(string model, ITestOutputHelper output)
{
    private const int Generations = 100;
    private const int MaxTokens = 192; // the longest of the 2000 generations here took 112

    /// <summary>
    /// Where a schema allows free-form text with no length limit (keys of additional properties, any JSON value), a
    /// random model almost never picks one of the few tokens that close a string, array or object. Those schemas are
    /// sampled with this bonus on tokens that contain a closing character, so they finish within the cap; what they
    /// write is still checked in full.
    /// </summary>
    private const float ClosingBias = 6f;

    public static TheoryData<string, string, bool> Schemas => new()
    {
        {
            "object: properties, required, additionalProperties false, integer bounds, enum, const, boolean, null, array",
            """
            {"type": "object", "properties": {
                "id": {"type": "integer", "minimum": -50, "maximum": 1200},
                "ok": {"type": "boolean"},
                "kind": {"enum": ["a", "b", 3, null]},
                "v": {"const": "v1"},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "minItems": 1, "maxItems": 3},
                "n": {"type": "null"}},
             "required": ["id", "kind", "tags"], "additionalProperties": false}
            """,
            false
        },
        {
            "strings: pattern, minLength, maxLength",
            """
            {"type": "object", "properties": {
                "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{2,3}(x|yz)?$"},
                "word": {"type": "string", "pattern": "^(?:[a-z]+|\\.{1,3}) ?[^\"\\\\]{0,2}$"},
                "name": {"type": "string", "minLength": 2, "maxLength": 6},
                "short": {"type": "string", "maxLength": 1}},
             "required": ["code", "word", "name", "short"], "additionalProperties": false}
            """,
            false
        },
        {
            "string formats: date, time, date-time, uuid",
            """
            {"type": "array", "items": {"anyOf": [
                {"type": "string", "format": "date"}, {"type": "string", "format": "time"},
                {"type": "string", "format": "date-time"}, {"type": "string", "format": "uuid"}]}, "minItems": 1, "maxItems": 2}
            """,
            false
        },
        {
            "numbers: number, integer, minimum, maximum, exclusiveMinimum, exclusiveMaximum",
            """
            {"type": "object", "properties": {
                "x": {"type": "number", "minimum": -3, "exclusiveMaximum": 5},
                "y": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "z": {"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 100},
                "w": {"type": "number"},
                "i": {"type": "integer"}},
             "required": ["x", "y", "z", "w", "i"], "additionalProperties": false}
            """,
            false
        },
        {
            "$ref to $defs and definitions, oneOf, anyOf, type lists",
            """
            {"$defs": {"point": {"type": "object", "properties": {"x": {"$ref": "#/definitions/small"}, "y": {"$ref": "#/definitions/small"}},
                                 "required": ["x", "y"], "additionalProperties": false}},
             "definitions": {"small": {"type": ["integer", "null"], "minimum": 0, "maximum": 9}},
             "oneOf": [{"$ref": "#/$defs/point"}, {"type": "array", "items": {"$ref": "#/$defs/point"}, "maxItems": 2},
                       {"anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["none"]}]}]}
            """,
            false
        },
        {
            "additionalProperties: a schema, required names not declared",
            """
            {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}},
             "required": ["a", "b"], "additionalProperties": {"type": "boolean"}}
            """,
            true
        },
        {
            "additionalProperties: true, and the default",
            """{"type": "object", "properties": {"k": {"type": "string", "maxLength": 3}}, "required": ["k"]}""",
            true
        },
        { "{} (any JSON value)", "{}", true },
        { "true (any JSON value)", "true", true },
    };

    private sealed class Loaded : IDisposable
    {
        public required GgufFile File { get; init; }
        public required LlamaModel Model { get; init; }
        public required Tokenizer Tokenizer { get; init; }

        public void Dispose()
        {
            Model.Dispose();
            File.Dispose();
        }
    }

    private static Loaded Load(string model)
    {
        var file = GgufFile.Open(Fixtures.Model(model, "q8_0"));
        var m = LlamaModel.Load(file, new CpuBackend(1, 8), new ModelOptions(ContextLength: 256, BatchSize: 8));
        return new Loaded { File = file, Model = m, Tokenizer = Tokenizer.FromGguf(file) };
    }

    protected void Run(string schema, bool closingBias, string? grammarText = null)
    {
        using var loaded = Load(model);
        var tok = loaded.Tokenizer;
        var grammar = GbnfGrammar.Parse(grammarText ?? JsonSchemaGrammar.Convert(schema));
        var constraint = GrammarConstraint.Create(grammar, tok);
        int[] closing = closingBias
            ? Enumerable.Range(0, tok.VocabSize).Where(t => tok.TokenBytes(t).Any(b => b is (byte)'"' or (byte)']' or (byte)'}')).ToArray()
            : [];
        using var schemaDoc = JsonDocument.Parse(schema);
        int[] prompt = tok.Encode("JSON:", addSpecial: true);
        var session = new Session(loaded.Model);
        var text = new List<byte>();
        long tokens = 0;
        int longest = 0;
        var sw = Stopwatch.StartNew();
        for (int seed = 0; seed < Generations; seed++)
        {
            var sampler = new Sampler(tok.VocabSize, new SamplerOptions { Seed = (ulong)seed, Grammar = constraint });
            session.Sync(prompt);
            text.Clear();
            bool ended = false;
            for (int n = 1; n <= MaxTokens; n++)
            {
                longest = Math.Max(longest, n);
                var logits = session.Logits;
                foreach (int t in closing) logits[t] += ClosingBias;
                int next = sampler.Sample(logits);
                tokens++;
                if (tok.IsEndOfGeneration(next)) { ended = true; break; }
                text.AddRange(tok.TokenBytes(next));
                session.Append(next);
            }
            string shown = Encoding.UTF8.GetString([.. text]);
            Assert.True(ended, $"{model} seed {seed}: no end within {MaxTokens} tokens: {shown}");
            JsonDocument doc;
            try { doc = JsonDocument.Parse(text.ToArray()); }
            catch (JsonException e) { throw new Xunit.Sdk.XunitException($"{model} seed {seed}: not JSON ({e.Message}): {shown}"); }
            using (doc)
            {
                var errors = JsonSchemaValidator.Validate(doc.RootElement, schemaDoc.RootElement);
                Assert.True(errors.Count == 0, $"{model} seed {seed}: {string.Join("; ", errors)}: {shown}");
            }
            if (seed < 3) output.WriteLine($"seed {seed}: {shown}");
        }
        var (masks, states) = constraint.CacheStatistics;
        output.WriteLine($"{model}: {Generations} generations, {tokens} tokens (longest {longest}) in {sw.Elapsed.TotalSeconds:F1} s; "
            + $"{masks} cached masks, {states} states");
    }

    [Theory]
    [MemberData(nameof(Schemas))]
    public void EveryGenerationIsValidJsonForTheSchema(string keywords, string schema, bool closingBias)
    {
        Assert.NotEmpty(keywords);
        Run(schema, closingBias);
    }

    [Fact]
    public void TheJsonObjectGrammarGivesObjects() =>
        Run("""{"type": "object"}""", closingBias: true, grammarText: JsonSchemaGrammar.AnyObject);
}

/// <summary>Byte-level BPE, 128256 tokens with multi-character and byte tokens.</summary>
public sealed class Llama3ConstrainedGenerationTests(ITestOutputHelper output) : ConstrainedGenerationTests("llama3", output);

/// <summary>SentencePiece, 32000 tokens with ▁ for spaces and &lt;0xNN&gt; byte tokens.</summary>
public sealed class Llama2SpmConstrainedGenerationTests(ITestOutputHelper output) : ConstrainedGenerationTests("llama2-spm", output);
