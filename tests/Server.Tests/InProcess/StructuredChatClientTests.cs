using System.ComponentModel.DataAnnotations;
using System.Text.Json;
using Infer.Engine;
using Infer.Runtime.Grammar;
using Infer.Server.Tests.Serving;
using Infer.Tests;
using Microsoft.Extensions.AI;
using ChatTemplate = Infer.Templates.ChatTemplate;

namespace Infer.Server.Tests.InProcess;

public enum Species
{
    Cat,
    Dog,
    Fish,
}

/// <summary>A record as a .NET program would declare it; the attributes bound what a random model can write (see the tests).</summary>
public sealed record Pet(
    [property: MinLength(1), MaxLength(12)] string Name,
    [property: Range(0, 30)] int Age,
    bool Vaccinated,
    Species Kind,
    [property: MaxLength(3)] List<Species> Friends);

/// <summary>
/// Structured output through the in-process IChatClient on the llama3 Q8_0 fixture (random weights: without a grammar it
/// writes no JSON). Microsoft.Extensions.AI's <c>GetResponseAsync&lt;T&gt;</c> generates the schema from the record and
/// deserializes the answer; the answer is also checked against that schema by the test validator.
/// </summary>
public sealed class StructuredChatClientTests : IDisposable
{
    private readonly TestModel _m = new("llama3", "q8_0", sequences: 2, context: 512);
    private readonly LocalChatClient _chat;

    public StructuredChatClientTests()
    {
        string? template = _m.File.TryGetString("tokenizer.chat_template");
        _chat = new LocalChatClient(_m.Model, _m.Tokenizer, template is null ? null : ChatTemplate.Parse(template), "local");
    }

    public void Dispose()
    {
        _chat.Dispose();
        _m.Dispose();
    }

    private static ChatOptions Sampled(int seed) => new() { Temperature = 1, Seed = seed, MaxOutputTokens = 300 };

    [Fact]
    public async Task GetResponseAsyncOfTReturnsAFilledRecord()
    {
        var schema = ChatResponseFormat.ForJsonSchema<Pet>().Schema!.Value;
        for (int seed = 0; seed < 5; seed++)
        {
            ChatResponse<Pet> response = await _chat.GetResponseAsync<Pet>("Describe a pet.", options: Sampled(seed));
            Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
            using (var doc = JsonDocument.Parse(response.Text))
            {
                var errors = JsonSchemaValidator.Validate(doc.RootElement, schema);
                Assert.True(errors.Count == 0, $"seed {seed}: {string.Join("; ", errors)}: {response.Text}");
            }
            Assert.True(response.TryGetResult(out var pet), $"seed {seed}: {response.Text}");
            Assert.InRange(pet.Name.Length, 1, 24); // 1..12 code points
            Assert.InRange(pet.Age, 0, 30);
            Assert.True(Enum.IsDefined(pet.Kind));
            Assert.InRange(pet.Friends.Count, 0, 3);
            Assert.All(pet.Friends, f => Assert.True(Enum.IsDefined(f)));
        }
        // the same request without a response format: gibberish, no Pet
        var free = await _chat.GetResponseAsync("Describe a pet.", Sampled(0));
        Assert.ThrowsAny<JsonException>(() => JsonDocument.Parse(free.Text));
    }

    [Fact]
    public async Task StreamingWithASchemaGivesTheSameValidText()
    {
        var format = ChatResponseFormat.ForJsonSchema<Pet>();
        var options = Sampled(21);
        options.ResponseFormat = format;
        var whole = await _chat.GetResponseAsync("Describe a pet.", options);
        var streamed = new System.Text.StringBuilder();
        await foreach (var u in _chat.GetStreamingResponseAsync("Describe a pet.", options)) streamed.Append(u.Text);
        Assert.Equal(whole.Text, streamed.ToString());
        var pet = JsonSerializer.Deserialize<Pet>(streamed.ToString(), AIJsonUtilities.DefaultOptions);
        Assert.NotNull(pet);
        Assert.InRange(pet.Age, 0, 30);
    }

    [Fact]
    public async Task SchemaFormatsAndErrors()
    {
        // a .NET Uri is format "uri", which the grammar cannot enforce: a plain string here (bounded to end in time)
        var uriSchema = JsonDocument.Parse("""
            {"type": "object", "properties": {"link": {"type": "string", "format": "uri", "maxLength": 8}}, "required": ["link"],
             "additionalProperties": false}
            """).RootElement;
        var options = Sampled(5);
        options.ResponseFormat = ChatResponseFormat.ForJsonSchema(uriSchema, "link");
        var r = await _chat.GetResponseAsync("A link.", options);
        using (var doc = JsonDocument.Parse(r.Text))
            Assert.InRange(doc.RootElement.GetProperty("link").GetString()!.EnumerateRunes().Count(), 0, 8);

        // what the grammar cannot express at all is a typed error naming the keyword
        options.ResponseFormat = ChatResponseFormat.ForJsonSchema(JsonDocument.Parse("""{"type": "array", "uniqueItems": true}""").RootElement);
        var e = await Assert.ThrowsAsync<JsonSchemaException>(() => _chat.GetResponseAsync("A list.", options));
        Assert.Equal("uniqueItems", e.Keyword);
    }
}
