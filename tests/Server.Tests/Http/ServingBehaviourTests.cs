using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Infer.Server.Tests.Serving;
using Infer.Templates;

namespace Infer.Server.Tests.Http;

/// <summary>Disconnects, the queue bound, the API key, metrics, readiness and shutdown, each on its own small server.</summary>
public sealed class ServingBehaviourTests
{
    // 4000 tokens (the server's cap is 4096) in a long context: still running when a test acts on it, even at 10k tokens/s.
    private const string LongStream = """{"prompt": "Once upon a time", "max_tokens": 4000, "ignore_eos": true, "stream": true}""";

    private static HttpRequestMessage Post(string path, string json, string? key = null)
    {
        var req = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        if (key is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return req;
    }

    /// <summary>Starts a long streamed generation and reads until its first token arrived (it then holds a slot).</summary>
    private static async Task<(HttpResponseMessage Response, StreamReader Reader)> StartLongStreamAsync(TestServer s)
    {
        var res = await s.Http.SendAsync(Post("v1/completions", LongStream), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        var reader = new StreamReader(await res.Content.ReadAsStreamAsync());
        string? line;
        while ((line = await reader.ReadLineAsync()) is not null && !line.StartsWith("data: {", StringComparison.Ordinal)) { }
        Assert.NotNull(line);
        return (res, reader);
    }

    private static async Task WaitUntil(Func<bool> condition, string what)
    {
        for (int i = 0; i < 500 && !condition(); i++) await Task.Delay(10);
        Assert.True(condition(), what);
    }

    private static async Task<string> MetricsAsync(TestServer s) => await s.Http.GetStringAsync("metrics");

    [Fact]
    public async Task EightConcurrentHttpRequestsGetTheirTokensAlone()
    {
        await using var s = await TestServer.StartAsync("llama3", "q8_0", slots: 8);
        var prompts = Serving.SchedulerTests.Prompts.Select(p => s.Model.Tokenizer.Encode(p, addSpecial: true, parseSpecial: true)).ToArray();
        var answers = await Task.WhenAll(prompts.Select(async p =>
        {
            bool stream = p.Length % 2 == 0; // half of them streamed
            string body = JsonSerializer.Serialize(new { prompt = p, max_tokens = 12, temperature = 0, ignore_eos = true, stream });
            using var res = await s.Http.SendAsync(Post("v1/completions", body));
            string text = await res.Content.ReadAsStringAsync();
            if (!stream) return JsonDocument.Parse(text).RootElement.GetProperty("choices")[0].GetProperty("text").GetString();
            return string.Concat(text.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal))
                .Select(l => JsonDocument.Parse(l[6..]).RootElement.GetProperty("choices")).Where(c => c.GetArrayLength() > 0)
                .Select(c => c[0].GetProperty("text").GetString()));
        }));
        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal(s.Model.Tokenizer.Decode(s.Model.GreedyAlone(prompts[i], 12), removeSpecial: true), answers[i]);
    }

    [Fact]
    public async Task AClientThatDisconnectsMidStreamFreesItsSlot()
    {
        await using var s = await TestServer.StartAsync("llama3", "q8_0", slots: 1, context: TestModel.LongContext);
        var (res, reader) = await StartLongStreamAsync(s);
        Assert.Equal(1, s.Server.Scheduler!.BusySlots);
        reader.Dispose();
        res.Dispose();
        await WaitUntil(() => s.Server.Scheduler.BusySlots == 0, "the slot was not freed after the client disconnected");
        Assert.Matches("infer_server_generations_total\\{[^}]*reason=\"cancelled\"[^}]*\\} 1", await MetricsAsync(s));
        var (status, _, _) = await s.PostAsync("v1/completions", """{"prompt": "Hi", "max_tokens": 2}""");
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task AnInternalFaultAnswers500ForThatRequestOnly()
    {
        await using var s = await TestServer.StartAsync("llama3", "q8_0", slots: 2);
        s.Server.Scheduler!.SampleHook = r =>
        {
            if (r.MaxTokens == 7) throw new InvalidOperationException("injected fault");
        };
        var (status, json, _) = await s.PostAsync("v1/completions", """{"prompt": "Hi", "max_tokens": 7}""");
        Assert.Equal(500, status);
        Assert.Equal("server_error", json.RootElement.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains("injected fault", json.RootElement.GetProperty("error").GetProperty("message").GetString());
        using (var res = await s.Http.SendAsync(Post("v1/completions", """{"prompt": "Hi", "max_tokens": 7, "stream": true}""")))
        {
            string events = await res.Content.ReadAsStringAsync();
            Assert.Contains("\"type\":\"server_error\"", events); // the headers had gone: an error event ends the stream
            Assert.DoesNotContain("[DONE]", events);
        }
        Assert.Equal(200, (await s.PostAsync("v1/completions", """{"prompt": "Hi", "max_tokens": 3}""")).Status);
    }

    [Fact]
    public async Task AFullQueueAnswers429WithRetryAfter()
    {
        await using var s = await TestServer.StartAsync("llama3", "q8_0", slots: 1, context: TestModel.LongContext,
            o => o with { QueueCapacity = 0, RetryAfterSeconds = 3 });
        var (res, reader) = await StartLongStreamAsync(s);
        using (res)
        using (reader)
        {
            const string chat = """{"messages": [{"role":"user","content":"Hi"}], "max_tokens": 2}""";
            var (status, json, full) = await s.PostAsync("v1/chat/completions", chat);
            Assert.Equal(429, status);
            Assert.Equal("3", full.Headers.RetryAfter?.ToString());
            var e = json.RootElement.GetProperty("error");
            Assert.Equal("rate_limit_error", e.GetProperty("type").GetString());
            Assert.Equal("rate_limit_exceeded", e.GetProperty("code").GetString());
        }
        await WaitUntil(() => s.Server.Scheduler!.BusySlots == 0, "the slot was not freed");
        Assert.Equal(200, (await s.PostAsync("v1/completions", """{"prompt": "Hi", "max_tokens": 2}""")).Status);
    }

    [Fact]
    public async Task WithAnApiKeyEveryV1CallNeedsIt()
    {
        await using var s = await TestServer.StartAsync("llama3", "q8_0", slots: 1, configure: o => o with { ApiKey = "sekret" });
        const string body = """{"prompt": "Hi", "max_tokens": 1}""";
        foreach (var key in new[] { null, "wrong", "sekretx" })
        {
            var (status, json, _) = await s.PostAsync("v1/completions", body, key);
            Assert.Equal(401, status);
            Assert.Equal("invalid_api_key", json.RootElement.GetProperty("error").GetProperty("code").GetString());
        }
        Assert.Equal(HttpStatusCode.Unauthorized, (await s.Http.GetAsync("v1/models")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await s.Http.GetAsync("health")).StatusCode);
        Assert.Equal(200, (await s.PostAsync("v1/completions", body, "sekret")).Status);
    }

    [Fact]
    public async Task MetricsShowTheInstrumentsAfterTraffic()
    {
        await using var s = await TestServer.StartAsync("llama3", "q8_0", slots: 2);
        for (int i = 0; i < 3; i++)
            Assert.Equal(200, (await s.PostAsync("v1/completions", """{"prompt": "Hello there", "max_tokens": 4, "temperature": 0}""")).Status);
        Assert.Equal(400, (await s.PostAsync("v1/completions", "{")).Status);
        string m = await MetricsAsync(s);
        Assert.Matches("infer_server_requests_total\\{[^}]*endpoint=\"/v1/completions\"[^}]*status=\"200\"[^}]*\\} [3-9]", m);
        Assert.Matches("infer_server_requests_total\\{[^}]*status=\"400\"[^}]*\\} [1-9]", m);
        foreach (var name in new[]
        {
            "infer_server_time_to_first_token_seconds_bucket", "infer_server_time_per_output_token_seconds_bucket",
            "infer_server_request_duration_seconds_bucket", "infer_server_prompt_tokens_total", "infer_server_generated_tokens_total",
            "infer_server_queue_length", "infer_server_busy_slots", "infer_server_kv_cache_usage", "infer_server_kv_cache_tokens",
        })
            Assert.Contains(name, m);
        Assert.Matches("infer_server_generated_tokens_total(\\{[^}]*\\})? (1[2-9]|[2-9][0-9])", m); // 3 x 4, plus the warm-up's
    }

    [Fact]
    public async Task HealthIs503UntilTheModelIsLoaded()
    {
        var release = new ManualResetEventSlim();
        var m = new TestModel("llama3", "q8_0", 1);
        try
        {
            await using var server = InferServer.Create(new ServerOptions { Port = 0 }, _ =>
            {
                release.Wait(TimeSpan.FromSeconds(30));
                return new ServedModel(m.Model, m.Tokenizer, ChatTemplate.Parse(m.File.TryGetString("tokenizer.chat_template")!), "late");
            });
            await server.StartAsync();
            using var http = new HttpClient { BaseAddress = server.BaseAddress };
            var health = await http.GetAsync("health");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
            var error = JsonDocument.Parse(await health.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal("loading", error.GetProperty("code").GetString());
            var early = await http.SendAsync(Post("v1/completions", """{"prompt":"Hi"}"""));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, early.StatusCode);
            release.Set();
            await server.Ready.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("health")).StatusCode);
        }
        finally
        {
            release.Set();
        }
    }

    [Fact]
    public async Task ShutdownCancelsAStreamThatOutlastsTheGracePeriod()
    {
        await using var s = await TestServer.StartAsync("llama3", "q8_0", slots: 1, context: TestModel.LongContext,
            o => o with { ShutdownGrace = TimeSpan.FromMilliseconds(200) });
        var (res, reader) = await StartLongStreamAsync(s);
        using (res)
        using (reader)
        {
            await s.Server.StopAsync();
            string rest = await reader.ReadToEndAsync();
            Assert.Contains("\"code\":\"shutting_down\"", rest);
            Assert.DoesNotContain("[DONE]", rest);
        }
    }

    [Fact]
    public async Task ShutdownLetsARunningRequestFinish()
    {
        await using var s = await TestServer.StartAsync("llama3", "q8_0", slots: 1, context: 512);
        var running = s.PostAsync("v1/completions", """{"prompt": "Once", "max_tokens": 300, "ignore_eos": true, "temperature": 0}""");
        await WaitUntil(() => s.Server.Scheduler!.BusySlots == 1, "the request did not start");
        await s.Server.StopAsync();
        var (status, json, _) = await running;
        Assert.Equal(200, status);
        Assert.Equal(300, json.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => s.Http.GetAsync("health"));
    }
}
