using System.Text.Json;
using Infer.Runtime.Serving;
using Infer.Server.Tests.Serving;
using Infer.Templates;

namespace Infer.Server.Tests.InProcess;

/// <summary>Batch jobs through the scheduler: answers in the batch output format, bad lines as error lines, resumable.</summary>
public sealed class BatchRunnerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("infer-batch-").FullName;
    private readonly TestModel _m = new("llama3", "q8_0", sequences: 2);
    private readonly ServedModel _served;
    private readonly Scheduler _scheduler;

    public BatchRunnerTests()
    {
        _served = new ServedModel(_m.Model, _m.Tokenizer, ChatTemplate.Parse(_m.File.TryGetString("tokenizer.chat_template")!), "batch");
        _scheduler = new Scheduler(_m.Model, _m.Tokenizer, new SchedulerOptions { QueueCapacity = 4 });
    }

    public void Dispose()
    {
        _scheduler.Dispose();
        _m.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private string Input(int good)
    {
        var lines = new List<string>();
        for (int i = 0; i < good; i++)
        {
            object body = i % 2 == 0
                ? new { messages = new[] { new { role = "user", content = $"Question number {i}?" } }, max_tokens = 6, temperature = 0 }
                : new { prompt = $"Story {i}:", max_tokens = 6, temperature = 0 };
            string url = i % 2 == 0 ? "/v1/chat/completions" : "/v1/completions";
            lines.Add(JsonSerializer.Serialize(new { custom_id = $"req-{i}", method = "POST", url, body }));
        }
        lines.Insert(3, "{ this is not json");
        lines.Insert(5, """{"custom_id": "bad-body", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "wizard"}]}}""");
        lines.Insert(6, """{"custom_id": "bad-url", "method": "POST", "url": "/v1/embeddings", "body": {}}""");
        lines.Insert(7, "");
        string path = Path.Combine(_dir, "in.jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    private static List<JsonElement> Output(string path) =>
        File.ReadAllLines(path).Where(l => l.Length > 0).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();

    [Fact]
    public async Task EveryLineIsAnsweredOnceAndBadLinesBecomeErrors()
    {
        string input = Input(6), output = Path.Combine(_dir, "out.jsonl");
        var summary = await new BatchRunner(_scheduler, _served, new ServerOptions()).RunAsync(input, output);
        Assert.Equal(9, summary.Total);
        Assert.Equal(9, summary.Done);
        Assert.Equal(3, summary.Errors);
        var lines = Output(output);
        Assert.Equal(9, lines.Count);
        foreach (var i in Enumerable.Range(0, 6))
        {
            var e = lines.Single(l => l.GetProperty("custom_id").GetString() == $"req-{i}");
            var response = e.GetProperty("response");
            Assert.Equal(200, response.GetProperty("status_code").GetInt32());
            Assert.Equal(6, response.GetProperty("body").GetProperty("usage").GetProperty("completion_tokens").GetInt32());
            Assert.Equal(i % 2 == 0 ? "chat.completion" : "text_completion", response.GetProperty("body").GetProperty("object").GetString());
            Assert.Equal(JsonValueKind.Null, e.GetProperty("error").ValueKind);
        }
        var badBody = lines.Single(l => l.GetProperty("custom_id").GetString() == "bad-body").GetProperty("response");
        Assert.Equal(400, badBody.GetProperty("status_code").GetInt32());
        Assert.Equal("messages[0].role", badBody.GetProperty("body").GetProperty("error").GetProperty("param").GetString());
        var badUrl = lines.Single(l => l.GetProperty("custom_id").GetString() == "bad-url");
        Assert.Equal("invalid_url", badUrl.GetProperty("error").GetProperty("code").GetString());
        var notJson = lines.Single(l => l.GetProperty("custom_id").ValueKind == JsonValueKind.Null);
        Assert.Equal(4, notJson.GetProperty("line").GetInt32());
        Assert.Equal("invalid_json", notJson.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task AnInterruptedJobResumesAndAnswersEachIdExactlyOnce()
    {
        string input = Input(12), output = Path.Combine(_dir, "out.jsonl");
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(p => { if (p.Done >= 4) cts.Cancel(); });
        var runner = new BatchRunner(_scheduler, _served, new ServerOptions());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => runner.RunAsync(input, output, progress, cts.Token));
        int first = Output(output).Count;
        Assert.InRange(first, 4, 14);
        File.AppendAllText(output, "{\"id\": \"batch_req_cut\", \"custom_id\": \"req-"); // a line cut off by the interruption

        var second = await new BatchRunner(_scheduler, _served, new ServerOptions()).RunAsync(input, output);
        Assert.Equal(first, second.Skipped);
        Assert.Equal(15 - first, second.Done);
        var lines = Output(output);
        Assert.Equal(15, lines.Count);
        var ids = lines
            .Select(l => l.GetProperty("custom_id") is { ValueKind: JsonValueKind.String } id ? id.GetString() : "line-" + l.GetProperty("line"))
            .ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.All(Enumerable.Range(0, 12), i => Assert.Contains($"req-{i}", ids));

        var third = await new BatchRunner(_scheduler, _served, new ServerOptions()).RunAsync(input, output);
        Assert.Equal((15, 15, 0), (third.Total, third.Skipped, third.Done));
        Assert.Equal(15, Output(output).Count);
    }

    /// <summary>Reports on the caller's thread (Progress&lt;T&gt; would post to the thread pool and cancel late).</summary>
    private sealed class SyncProgress(Action<BatchProgress> report) : IProgress<BatchProgress>
    {
        public void Report(BatchProgress value) => report(value);
    }
}
