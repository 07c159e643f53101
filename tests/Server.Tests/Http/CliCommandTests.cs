using System.Text.Json;
using Infer.Cli.Load;
using Infer.Cli.Tests;
using Infer.Server.Tests.Serving;
using Infer.Tests;

namespace Infer.Server.Tests.Http;

/// <summary>The CLI's serve, batch and bench-serve commands: option errors, a batch file end to end, the load generator.</summary>
public sealed class CliCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("infer-serve-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Model => Fixtures.Model("llama3", "q8_0");

    [Theory]
    [InlineData("serve")]
    [InlineData("serve", "-m", "M", "-np", "0")]
    [InlineData("serve", "-m", "M", "-np", "8", "-b", "4")]
    [InlineData("serve", "-m", "M", "--port", "70000")]
    [InlineData("serve", "-m", "M", "--bogus", "1")]
    [InlineData("batch", "-m", "M", "-o", "out.jsonl")]
    [InlineData("bench-serve")]
    [InlineData("bench-serve", "--url", "ftp://x")]
    [InlineData("bench-serve", "--url", "http://127.0.0.1:1", "-c", "0")]
    public void UsageErrorsExitWith2(params string[] args)
    {
        var (code, _, err) = CliRunner.Infer(args);
        Assert.Equal(2, code);
        Assert.StartsWith($"infer {args[0]}: ", err);
    }

    [Fact]
    public void BatchCommandAnswersTheFileAndResumes()
    {
        string input = Path.Combine(_dir, "in.jsonl"), output = Path.Combine(_dir, "out.jsonl");
        File.WriteAllLines(input, Enumerable.Range(0, 4).Select(i => JsonSerializer.Serialize(new
        {
            custom_id = $"c{i}",
            method = "POST",
            url = "/v1/completions",
            body = new { prompt = $"Item {i}", max_tokens = 3, temperature = 0 },
        })));
        var (code, stdout, stderr) = CliRunner.Infer("batch", "-m", Model, "-i", input, "-o", output, "-np", "2", "-c", "128", "-t", "2");
        Assert.True(code == 0, stderr);
        Assert.Contains("4 requests: 4 answered (0 errors)", stdout);
        Assert.Equal(4, File.ReadAllLines(output).Length);
        (code, stdout, stderr) = CliRunner.Infer("batch", "-m", Model, "-i", input, "-o", output, "-np", "2", "-c", "128", "-t", "2");
        Assert.True(code == 0, stderr);
        Assert.Contains("0 answered (0 errors), 4 already in", stdout);
        Assert.Equal(4, File.ReadAllLines(output).Length);
    }

    [Fact]
    public async Task BenchServeMeasuresAServer()
    {
        await using var s = await TestServer.StartAsync("llama3", "q8_0", slots: 2);
        var report = await new LoadGenerator(new LoadOptions(s.BaseAddress, Concurrency: 2, Requests: 5, PromptTokens: 16, MaxTokens: 6)).RunAsync();
        Assert.Equal(0, report.Errors);
        Assert.Equal(5, report.Samples.Count);
        Assert.All(report.Samples, r =>
        {
            Assert.Equal(6, r.OutputTokens);
            Assert.InRange(r.PromptTokens, 12, 20);
            Assert.InRange(r.TimeToFirstToken, 0, r.Total);
        });
        Assert.True(report.OutputTokensPerSecond > 0);

        var (code, stdout, stderr) = CliRunner.Infer(
            "bench-serve", "--url", s.BaseAddress.ToString(), "-c", "2", "-n", "3", "--prompt-tokens", "8", "--max-tokens", "4", "-o", "json");
        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal(3, json.RootElement.GetProperty("requests").GetInt32());
        Assert.Equal(12, json.RootElement.GetProperty("output_tokens").GetInt32());
    }

    [Fact]
    public async Task BenchServeStopsAtItsTimeLimitAndCountsErrors()
    {
        // 4000 tokens outlast the 300 ms limit even at 10k tokens/s.
        await using var s = await TestServer.StartAsync("llama3", "q8_0", slots: 1, context: TestModel.LongContext,
            configure: o => o with { ApiKey = "k" });
        var unauthorized = await new LoadGenerator(new LoadOptions(s.BaseAddress, 1, 2, 8, 4)).RunAsync();
        Assert.Equal(2, unauthorized.Errors);
        Assert.Contains("HTTP 401", unauthorized.Samples[0].Error);
        var options = new LoadOptions(s.BaseAddress, 1, 100, 8, 4000) { ApiKey = "k", Duration = TimeSpan.FromMilliseconds(300) };
        var limited = await new LoadGenerator(options).RunAsync();
        Assert.Single(limited.Samples);
        Assert.Equal("cancelled at the time limit", limited.Samples[0].Error);
    }

    [Fact]
    public async Task BenchServeSendsARequestAgainWhenItsConnectionFailsBeforeAnyResponse()
    {
        await using var s = await TestServer.StartAsync("llama3", "q8_0", slots: 1);
        using var flaky = new FailingFirst(2) { InnerHandler = new SocketsHttpHandler() };
        var report = await new LoadGenerator(new LoadOptions(s.BaseAddress, 1, 2, 8, 3), flaky).RunAsync();
        Assert.Equal(0, report.Errors);
        Assert.Equal(4, flaky.Sends); // the first request on its third try, the second at once
        Assert.All(report.Samples, r => Assert.Equal(3, r.OutputTokens));

        using var dead = new FailingFirst(3) { InnerHandler = new SocketsHttpHandler() };
        var failed = await new LoadGenerator(new LoadOptions(s.BaseAddress, 1, 1, 8, 3), dead).RunAsync();
        Assert.Equal(1, failed.Errors);
        Assert.Equal("An error occurred while sending the request. (connection reset)", failed.Samples[0].Error);
    }

    /// <summary>Fails its first <paramref name="failures"/> sends as a connection reset would, then passes requests on.</summary>
    private sealed class FailingFirst(int failures) : DelegatingHandler
    {
        public int Sends;

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Interlocked.Increment(ref Sends) <= failures
                ? throw new HttpRequestException("An error occurred while sending the request.", new IOException("connection reset"))
                : base.SendAsync(request, cancellationToken);
    }

    [Fact]
    public void PercentilesInterpolateBetweenRanks()
    {
        Assert.Equal(2.5, LoadReport.Percentile([4, 1, 2, 3], 50), 9);
        Assert.Equal(4, LoadReport.Percentile([4, 1, 2, 3], 100), 9);
        Assert.Equal(1, LoadReport.Percentile([4, 1, 2, 3], 0), 9);
        Assert.True(double.IsNaN(LoadReport.Percentile([], 50)));
    }
}
