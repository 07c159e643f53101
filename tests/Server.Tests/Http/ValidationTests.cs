using System.Text.Json;

namespace Infer.Server.Tests.Http;

/// <summary>Every refusal is a 4xx with OpenAI's error object naming the field; the server keeps serving afterwards.</summary>
public sealed class ValidationTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async ValueTask InitializeAsync() =>
        _server = await TestServer.StartAsync("llama3", "q8_0", slots: 2, context: 256, o => o with { MaxBodyBytes = 64 * 1024, MaxTokensCap = 200 });

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    private const string Msgs = """[{"role":"user","content":"Hi"}]""";

    public static TheoryData<string, string, int, string?, string?> Cases() => new()
    {
        // path, body, status, param, code
        { "chat", "{\"messages\": ", 400, null, "invalid_json" },
        { "chat", "", 400, null, "invalid_json" },
        { "chat", "[1, 2]", 400, null, "invalid_type" },
        { "chat", "{}", 400, "messages", "missing_field" },
        { "chat", """{"messages": "hello"}""", 400, "messages", "invalid_type" },
        { "chat", """{"messages": []}""", 400, "messages", "invalid_value" },
        { "chat", """{"messages": [{"role":"wizard","content":"hi"}]}""", 400, "messages[0].role", "invalid_value" },
        { "chat", """{"messages": [{"role":"user"}]}""", 400, "messages[0].content", "missing_field" },
        { "chat", """{"messages": [{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""",
            400, "messages[0].content[0].type", "unsupported_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "temperature": "hot"}""", 400, "temperature", "invalid_type" },
        { "chat", $$"""{"messages": {{Msgs}}, "top_p": 1.5}""", 400, "top_p", "invalid_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "top_k": 2.5}""", 400, "top_k", "invalid_type" },
        { "chat", $$"""{"messages": {{Msgs}}, "stream": "yes"}""", 400, "stream", "invalid_type" },
        { "chat", $$"""{"messages": {{Msgs}}, "max_tokens": 0}""", 400, "max_tokens", "invalid_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "max_tokens": -3}""", 400, "max_tokens", "invalid_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "max_completion_tokens": 0}""", 400, "max_completion_tokens", "invalid_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "max_tokens": 201}""", 400, "max_tokens", "invalid_value" },
        { "chat", $$"""{"messages": [{"role":"user","content":"{{string.Concat(Enumerable.Repeat("hello ", 80))}}"}], "max_tokens": 190}""",
            400, "max_tokens", "context_length_exceeded" },
        { "chat", $$"""{"messages": [{"role":"user","content":"{{string.Concat(Enumerable.Repeat("hello ", 400))}}"}]}""",
            400, "messages", "context_length_exceeded" },
        { "chat", $$"""{"messages": {{Msgs}}, "temperature": -0.5}""", 400, "temperature", "invalid_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "seed": "x"}""", 400, "seed", "invalid_type" },
        { "chat", """{"messages": [{"role":"user","content":"Hi"}], "stream_options": {"include_usage": 1} }""",
            400, "stream_options.include_usage", "invalid_type" },
        { "chat", $$"""{"messages": {{Msgs}}, "n": 2}""", 400, "n", "unsupported_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "response_format": "json"}""", 400, "response_format", "invalid_type" },
        { "chat", $$"""{"messages": {{Msgs}}, "response_format": {"type": "xml"} }""", 400, "response_format.type", "invalid_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "response_format": {"type": "json_schema"} }""", 400, "response_format.json_schema", "missing_field" },
        { "chat", """{"messages": [{"role":"user","content":"Hi"}], "response_format": {"type": "json_schema", "json_schema": {"strict": "yes"}}}""",
            400, "response_format.json_schema.strict", "invalid_type" },
        { "chat", """{"messages": [{"role":"user","content":"Hi"}], "response_format": {"type": "json_schema", "json_schema": {"schema": 3}}}""",
            400, "response_format", "invalid_type" },
        { "chat", """{"messages": [{"role":"user","content":"Hi"}], "response_format": {"type": "json_object", "schema": {"not": {}}}}""",
            400, "response_format", "unsupported_schema" },
        { "chat", $$"""{"messages": {{Msgs}}, "grammar": "root ::= ("}""", 400, "grammar", "invalid_grammar" },
        { "chat", $$"""{"messages": {{Msgs}}, "grammar": 5}""", 400, "grammar", "invalid_type" },
        { "chat", $$"""{"messages": {{Msgs}}, "json_schema": {"type": "object"}, "grammar": "root ::= [a]"}""", 400, "grammar", "invalid_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "response_format": {"type": "json_object"}, "json_schema": {} }""",
            400, "json_schema", "invalid_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "logit_bias": [1]}""", 400, "logit_bias", "invalid_type" },
        { "chat", $$"""{"messages": {{Msgs}}, "logit_bias": {"x": 1} }""", 400, "logit_bias", "invalid_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "logit_bias": {"999999999": 1} }""", 400, "logit_bias", "invalid_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "logit_bias": {"5": 101} }""", 400, "logit_bias", "invalid_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "stop": 5}""", 400, "stop", "invalid_type" },
        { "chat", $$"""{"messages": {{Msgs}}, "top_logprobs": 2}""", 400, "top_logprobs", "invalid_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "logprobs": true, "top_logprobs": 21}""", 400, "top_logprobs", "invalid_value" },
        { "chat", $$"""{"messages": {{Msgs}}, "tool_choice": "required"}""", 400, "tool_choice", "unsupported_value" },
        { "completions", "{}", 400, "prompt", "missing_field" },
        { "completions", """{"prompt": 12}""", 400, "prompt", "invalid_type" },
        { "completions", """{"prompt": ["a", "b"]}""", 400, "prompt", "unsupported_value" },
        { "completions", """{"prompt": [1, 2, 999999999]}""", 400, "prompt[2]", "invalid_value" },
        { "completions", """{"prompt": []}""", 400, "prompt", "invalid_value" },
        { "completions", $$"""{"prompt": [{{string.Join(",", Enumerable.Repeat(100, 300))}}]}""", 400, "prompt", "context_length_exceeded" },
        { "completions", $$"""{"prompt": "{{string.Concat(Enumerable.Repeat("hello ", 400))}}"}""", 400, "prompt", "context_length_exceeded" },
        { "completions", """{"prompt": "hi", "echo": true}""", 400, "echo", "unsupported_value" },
        { "completions", """{"prompt": "hi", "logprobs": 50}""", 400, "logprobs", "invalid_value" },
        { "completions", """{"prompt": "hi", "json_schema": {"type": "array", "uniqueItems": true}}""", 400, "json_schema", "unsupported_schema" },
    };

    private static void AssertError(JsonDocument body, string? param, string? code)
    {
        var e = body.RootElement.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(e.GetProperty("message").GetString()));
        Assert.Equal(JsonValueKind.String, e.GetProperty("type").ValueKind);
        Assert.Equal(param, e.GetProperty("param").ValueKind == JsonValueKind.Null ? null : e.GetProperty("param").GetString());
        Assert.Equal(code, e.GetProperty("code").ValueKind == JsonValueKind.Null ? null : e.GetProperty("code").GetString());
        if (param is not null) Assert.Contains(param, e.GetProperty("message").GetString());
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task BadRequestsGetAnOpenAiErrorNamingTheField(string endpoint, string body, int status, string? param, string? code)
    {
        var (s, json, _) = await _server.PostAsync($"v1/{(endpoint == "chat" ? "chat/completions" : "completions")}", body);
        Assert.Equal(status, s);
        AssertError(json, param, code);
        Assert.Equal("invalid_request_error", json.RootElement.GetProperty("error").GetProperty("type").GetString());
    }

    [Fact]
    public async Task AnOversizedBodyIs413()
    {
        string big = $$"""{"prompt": "{{new string('a', 70 * 1024)}}"}""";
        var (s, json, _) = await _server.PostAsync("v1/completions", big);
        Assert.Equal(413, s);
        AssertError(json, null, "body_too_large");
    }

    [Fact]
    public async Task UnknownPathsAre404WithAnErrorObject()
    {
        var res = await _server.Http.GetAsync("v1/engines");
        Assert.Equal(404, (int)res.StatusCode);
        AssertError(JsonDocument.Parse(await res.Content.ReadAsStringAsync()), null, "not_found");
    }

    [Fact]
    public async Task AfterBadRequestsTheServerStillAnswers()
    {
        var bad = new[] { ("v1/chat/completions", "{"), ("v1/completions", "[]"), ("v1/completions", "{\"prompt\":\"x\",\"max_tokens\":-1}") };
        foreach (var (path, body) in bad)
            Assert.Equal(400, (await _server.PostAsync(path, body)).Status);
        var (s, json, _) = await _server.PostAsync("v1/completions", """{"prompt": "Hello", "max_tokens": 3, "temperature": 0}""");
        Assert.Equal(200, s);
        Assert.Equal(3, json.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }
}
