using System.ClientModel;
using System.Text.Json;
using Infer.Runtime.Serving;
using Infer.Tests;
using OpenAI;
using OpenAI.Chat;

namespace Infer.Server.Tests.Http;

/// <summary>
/// response_format through the real server on the llama3 Q8_0 fixture: random weights, so unconstrained output is gibberish
/// and every valid answer comes from the grammar. Answers are checked with the test validator (written from the JSON Schema
/// specification, apart from the converter), through the official OpenAI .NET SDK, streamed and not, on both endpoints.
/// </summary>
public sealed class StructuredOutputTests : IAsyncLifetime
{
    private const int Seeds = 4;
    private TestServer _server = null!;

    public async ValueTask InitializeAsync() => _server = await TestServer.StartAsync("llama3", "q8_0", slots: 2, context: 512);

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    /// <summary>Every string and array bounded, so a random model ends within max_tokens; every keyword kind once.</summary>
    private const string PetSchema = """
        {"type": "object", "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 10},
            "age": {"type": "integer", "minimum": 0, "maximum": 30},
            "vaccinated": {"type": "boolean"},
            "kind": {"enum": ["cat", "dog", "fish"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 3},
            "born": {"type": "string", "format": "date"}},
         "required": ["name", "age", "vaccinated", "kind", "tags", "born"], "additionalProperties": false}
        """;

    private ChatClient Chat() =>
        new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(_server.BaseAddress, "v1") })
            .GetChatClient("test-model");

    private static List<ChatMessage> Messages() => [new UserChatMessage("Describe a pet as JSON.")];

#pragma warning disable OPENAI001 // Seed is marked experimental in the SDK
    private static ChatCompletionOptions Options(ChatResponseFormat format, int seed) =>
        new() { ResponseFormat = format, Temperature = 1, Seed = seed, MaxOutputTokenCount = 300 };
#pragma warning restore OPENAI001

    private static void AssertValid(string text, string schema, string context)
    {
        using var doc = JsonDocument.Parse(text);
        using var s = JsonDocument.Parse(schema);
        var errors = JsonSchemaValidator.Validate(doc.RootElement, s.RootElement);
        Assert.True(errors.Count == 0, $"{context}: {string.Join("; ", errors)}: {text}");
    }

    [Fact]
    public async Task JsonSchemaAnswersThroughTheOpenAiSdkValidate()
    {
        var chat = Chat();
        var format = ChatResponseFormat.CreateJsonSchemaFormat("pet", BinaryData.FromString(PetSchema), jsonSchemaIsStrict: true);
        for (int seed = 0; seed < Seeds; seed++)
        {
            ChatCompletion reply = await chat.CompleteChatAsync(Messages(), Options(format, seed));
            Assert.Equal(ChatFinishReason.Stop, reply.FinishReason);
            AssertValid(reply.Content[0].Text, PetSchema, $"seed {seed}");
        }
        // the same request without the format: the model alone writes no JSON at all
        ChatCompletion free = await chat.CompleteChatAsync(Messages(), Options(ChatResponseFormat.CreateTextFormat(), 0));
        Assert.ThrowsAny<JsonException>(() => JsonDocument.Parse(free.Content[0].Text));
        // one constraint served every request with this schema
        Assert.Equal(1, GrammarCache.For(_server.Model.Tokenizer).Count);
    }

    [Fact]
    public async Task StreamedJsonSchemaAnswersEqualTheWholeOnes()
    {
        var chat = Chat();
        var format = ChatResponseFormat.CreateJsonSchemaFormat("pet", BinaryData.FromString(PetSchema), jsonSchemaIsStrict: true);
        for (int seed = 10; seed < 10 + Seeds; seed++)
        {
            var streamed = new System.Text.StringBuilder();
            ChatFinishReason? finish = null;
            await foreach (var update in chat.CompleteChatStreamingAsync(Messages(), Options(format, seed)))
            {
                foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
                finish ??= update.FinishReason;
            }
            Assert.Equal(ChatFinishReason.Stop, finish);
            AssertValid(streamed.ToString(), PetSchema, $"seed {seed}");
            ChatCompletion whole = await chat.CompleteChatAsync(Messages(), Options(format, seed));
            Assert.Equal(whole.Content[0].Text, streamed.ToString());
        }
    }

    [Fact]
    public async Task JsonObjectAnswersAreObjects()
    {
        var chat = Chat();
        // Any object allows strings of any length, and a random model rarely picks one of the few tokens that close one: as the
        // grammar generation tests do, tokens with a closing character get a bias (OpenAI's logit_bias) so answers end in time.
        var tok = _server.Model.Tokenizer;
        var closing = Enumerable.Range(0, tok.VocabSize).Where(t => tok.TokenBytes(t).Any(b => b is (byte)'"' or (byte)']' or (byte)'}'));
        for (int seed = 0; seed < Seeds; seed++)
        {
            var options = Options(ChatResponseFormat.CreateJsonObjectFormat(), seed);
            foreach (int t in closing) options.LogitBiases[t] = 6;
            ChatCompletion reply = await chat.CompleteChatAsync(Messages(), options);
            Assert.Equal(ChatFinishReason.Stop, reply.FinishReason);
            using var doc = JsonDocument.Parse(reply.Content[0].Text);
            Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
        }
    }

    [Fact]
    public async Task CompletionsTakeResponseFormatAndLlamaCppsFields()
    {
        const string Small = """
            {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 99}}, "required": ["n"],
             "additionalProperties": false}
            """;
        var bodies = new Dictionary<string, string>
        {
            ["response_format"] = """{"type": "json_schema", "json_schema": {"name": "n", "schema": """ + Small + "}}",
            ["json_schema"] = Small,
        };
        foreach (var (field, value) in bodies)
        {
            foreach (bool stream in new[] { false, true })
            {
                string body = $$$"""
                    {"prompt": "JSON:", "max_tokens": 60, "temperature": 1, "seed": 3, "stream": {{{(stream ? "true" : "false")}}},
                     "{{{field}}}": {{{value}}}}
                    """;
                string text = stream ? await StreamedTextAsync("v1/completions", body) : await TextAsync("v1/completions", body);
                AssertValid(text, Small, $"{field}, stream {stream}");
            }
        }
        string yesNo = await TextAsync("v1/completions",
            JsonSerializer.Serialize(new { prompt = "Answer:", max_tokens = 8, temperature = 1, grammar = "root ::= \"yes\" | \"no\"" }));
        Assert.Contains(yesNo, new[] { "yes", "no" });
        var messages = new[] { new { role = "user", content = "Hi" } };
        string chat = await TextAsync("v1/chat/completions",
            JsonSerializer.Serialize(new { messages, max_tokens = 8, grammar = "root ::= [0-9] [0-9]" }), "message");
        Assert.Matches("^[0-9]{2}$", chat);
    }

    private async Task<string> TextAsync(string path, string body, string? chatField = null)
    {
        var (status, json, _) = await _server.PostAsync(path, body);
        Assert.True(status == 200, json.RootElement.GetRawText());
        var choice = json.RootElement.GetProperty("choices")[0];
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
        return chatField is null ? choice.GetProperty("text").GetString()! : choice.GetProperty(chatField).GetProperty("content").GetString()!;
    }

    private async Task<string> StreamedTextAsync(string path, string body)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, path)
        {
            Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json"),
        };
        using var res = await _server.Http.SendAsync(req);
        Assert.Equal(200, (int)res.StatusCode);
        var text = new System.Text.StringBuilder();
        string? finish = null;
        foreach (var line in (await res.Content.ReadAsStringAsync()).Split('\n'))
        {
            if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;
            using var chunk = JsonDocument.Parse(line["data: ".Length..]);
            var choice = chunk.RootElement.GetProperty("choices")[0];
            text.Append(choice.GetProperty("text").GetString());
            if (choice.TryGetProperty("finish_reason", out var f) && f.ValueKind == JsonValueKind.String) finish = f.GetString();
        }
        Assert.Equal("stop", finish);
        return text.ToString();
    }

    [Fact]
    public async Task SchemasTheGrammarCannotExpressAre400sNamingTheKeyword()
    {
        var cases = new[]
        {
            ("""{"type": "array", "uniqueItems": true}""", "true", "uniqueItems"),
            ("""{"type": "object", "properties": {"mail": {"type": "string", "format": "email"}}}""", "true", "format"),
            ("""{"type": "object", "properties": {"a": {"type": "number", "multipleOf": 0.5}}}""", "false", "multipleOf"),
        };
        foreach (var (schema, strict, keyword) in cases)
        {
            string body = """{"messages": [{"role": "user", "content": "Hi"}], "response_format": {"type": "json_schema", """
                + $$"""
                "json_schema": {"name": "x", "strict": {{strict}}, "schema": {{schema}}
                """ + "}}}";
            var (status, json, _) = await _server.PostAsync("v1/chat/completions", body);
            Assert.Equal(400, status);
            var error = json.RootElement.GetProperty("error");
            Assert.Equal("response_format", error.GetProperty("param").GetString());
            Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
            Assert.Contains($"'{keyword}'", error.GetProperty("message").GetString());
        }
        // without strict, a format the grammar cannot enforce is a plain string
        string lenient = """
            {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 60, "temperature": 1, "seed": 1,
             "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema":
               {"type": "object", "properties": {"mail": {"type": "string", "format": "email", "maxLength": 6}}, "required": ["mail"]}}}}
            """;
        string text = await TextAsync("v1/chat/completions", lenient, "message");
        using var doc = JsonDocument.Parse(text);
        Assert.InRange(doc.RootElement.GetProperty("mail").GetString()!.EnumerateRunes().Count(), 0, 6);
    }

    [Fact]
    public async Task LogitBiasMovesTheChoice()
    {
        var tok = _server.Model.Tokenizer;
        int cat = tok.Encode(" cat", addSpecial: false)[0];
        string body = $$"""{"prompt": "Hello", "max_tokens": 3, "temperature": 0, "logit_bias": {"{{cat}}": 100} }""";
        Assert.Equal(string.Concat(Enumerable.Repeat(tok.Decode([cat]), 3)), await LengthTextAsync(body));
        // -100 removes the greedy token: the first token differs
        string free = await LengthTextAsync("""{"prompt": "Hello", "max_tokens": 1, "temperature": 0}""");
        int greedy = tok.Encode(free, addSpecial: false)[0];
        string banned = await LengthTextAsync($$"""{"prompt": "Hello", "max_tokens": 1, "temperature": 0, "logit_bias": {"{{greedy}}": -100} }""");
        Assert.NotEqual(free, banned);
    }

    private async Task<string> LengthTextAsync(string body)
    {
        var (status, json, _) = await _server.PostAsync("v1/completions", body);
        Assert.True(status == 200, json.RootElement.GetRawText());
        return json.RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }
}
