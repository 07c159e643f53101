using System.Collections.Concurrent;
using System.Text.Json;
using Infer.Server.Tests.Serving;
using Infer.Templates;
using Infer.Tests;
using Microsoft.Extensions.Logging;

namespace Infer.Server.Tests.Http;

/// <summary>Tools and tool messages reach the chat template; every request leaves one log line.</summary>
public sealed class TemplateAndLogTests
{
    private sealed class ListLogger(ConcurrentQueue<string> lines) : ILoggerProvider, ILogger
    {
        public ILogger CreateLogger(string categoryName) => this;
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue($"{logLevel}: {formatter(state, exception)}");

        public void Dispose()
        {
        }
    }

    [Fact]
    public async Task ToolsAndToolMessagesAreRenderedByTheTemplateAndEachRequestIsLogged()
    {
        var lines = new ConcurrentQueue<string>();
        using var m = new TestModel("llama3", "q8_0", 1, context: 512);
        var template = ChatTemplate.Parse(File.ReadAllText(Fixtures.File("chat-templates", "templates", "Qwen-Qwen2.5-7B-Instruct.jinja")));
        var served = new ServedModel(m.Model, m.Tokenizer, template, "tools");
        await using var server = InferServer.Create(new ServerOptions { Port = 0, Logging = b => b.AddProvider(new ListLogger(lines)) }, served);
        await server.StartAsync();
        await server.Ready;
        using var http = new HttpClient { BaseAddress = server.BaseAddress };

        const string tools = """[{"type":"function","function":{"name":"get_weather","description":"Weather in a city", """ +
            """ "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]""";
        const string messages = """[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","content":null, """ +
            """ "tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},""" +
            """{"role":"tool","tool_call_id":"c1","content":"sunny"}]""";
        var body = $$"""{"messages": {{messages}}, "tools": {{tools}}, "max_tokens": 2, "temperature": 0}""";
        var res = await http.PostAsync("v1/chat/completions", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        var json = JsonDocument.Parse(await res.Content.ReadAsStringAsync()).RootElement;
        Assert.True(res.IsSuccessStatusCode, json.ToString());

        // What the server evaluated, decoded back to text (special tokens kept).
        var prompt = RequestParser.Chat(JsonDocument.Parse(body).RootElement, served, new ServerOptions()).Generation.Prompt;
        string rendered = m.Tokenizer.Decode(prompt);
        Assert.Contains("get_weather", rendered);
        Assert.Contains("<tool_response>\nsunny\n</tool_response>", rendered);
        Assert.Contains("{\"city\": \"Paris\"}", rendered); // the arguments' JSON text became an object for tojson
        Assert.Equal(prompt.Length, json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        string id = json.GetProperty("id").GetString()!;
        await Task.Delay(100); // the line is written after the response completes
        var line = Assert.Single(lines, l => l.Contains(id, StringComparison.Ordinal));
        Assert.Matches($"Information: {id} POST /v1/chat/completions 200 prompt=\\d+ cached=\\d+ generated=2 " +
            "ttft=\\d+\\.\\d{3}s total=\\d+\\.\\d{3}s length", line);
    }
}
