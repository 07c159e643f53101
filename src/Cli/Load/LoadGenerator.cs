using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Infer.Cli.Load;

/// <summary>What bench-serve sends: concurrency, how many requests (and for how long at most), prompt and output sizes.</summary>
internal sealed record LoadOptions(Uri Url, int Concurrency = 8, int Requests = 64, int PromptTokens = 128, int MaxTokens = 128)
{
    public TimeSpan Duration { get; init; } = TimeSpan.FromMinutes(5);
    public string? ApiKey { get; init; }
    public string Model { get; init; } = "default";
    public float Temperature { get; init; }
}

/// <summary>One request's outcome: times from sending (seconds), tokens, or the error.</summary>
internal sealed record RequestSample(bool Ok, double TimeToFirstToken, double Total, int OutputTokens, int PromptTokens, string? Error)
{
    public double TimePerOutputToken => OutputTokens > 1 ? (Total - TimeToFirstToken) / (OutputTokens - 1) : double.NaN;
}

/// <summary>The measurement: throughput over the whole run and latency percentiles over the successful requests.</summary>
internal sealed record LoadReport(LoadOptions Options, IReadOnlyList<RequestSample> Samples, double Seconds)
{
    public IEnumerable<RequestSample> Ok => Samples.Where(s => s.Ok);
    public int Errors => Samples.Count(s => !s.Ok);
    public double RequestsPerSecond => Ok.Count() / Seconds;
    public double OutputTokensPerSecond => Ok.Sum(s => s.OutputTokens) / Seconds;

    /// <summary>The p-th percentile (0..100, linear between ranks) of the values; NaN when there are none.</summary>
    public static double Percentile(IEnumerable<double> values, double p)
    {
        var v = values.Where(double.IsFinite).Order().ToArray();
        if (v.Length == 0) return double.NaN;
        double rank = p / 100 * (v.Length - 1);
        int lo = (int)Math.Floor(rank), hi = (int)Math.Ceiling(rank);
        return v[lo] + (v[hi] - v[lo]) * (rank - lo);
    }
}

/// <summary>
/// A load generator that speaks the OpenAI API (<c>/v1/completions</c>, streamed), so it measures our server and llama-server the
/// same way: <see cref="LoadOptions.Concurrency"/> clients send requests until <see cref="LoadOptions.Requests"/> were sent or
/// <see cref="LoadOptions.Duration"/> passed; requests still running then are cancelled. Every prompt is different (no shared
/// prefix to cache beyond its first words) and asks for exactly max_tokens tokens (ignore_eos).
/// </summary>
internal sealed class LoadGenerator(LoadOptions options, HttpMessageHandler? handler = null)
{
    private static readonly string[] Words =
        ("the of and to in is was for on that with as by at from his her an were are which this be or has had not but what all when " +
         "there can more one time would she if each about how up out them then many some so these two like him into see could now " +
         "people my than first water been who its call find long down day did get come made may part over new sound take only little").Split(' ');

    public async Task<LoadReport> RunAsync(CancellationToken cancel = default)
    {
        var own = handler is null;
        using var http = new HttpClient(handler ?? new SocketsHttpHandler { MaxConnectionsPerServer = options.Concurrency }, disposeHandler: own)
        {
            BaseAddress = options.Url,
            Timeout = Timeout.InfiniteTimeSpan,
        };
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        stop.CancelAfter(options.Duration);
        var samples = new RequestSample[options.Requests];
        int next = -1;
        long t0 = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, options.Concurrency).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < options.Requests && !stop.IsCancellationRequested)
                samples[i] = await OneAsync(http, i, stop.Token);
        }, CancellationToken.None)));
        double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        cancel.ThrowIfCancellationRequested();
        return new LoadReport(options, samples.Where(s => s is not null).ToArray(), seconds);
    }

    /// <summary>A prompt of about <paramref name="tokens"/> common words (about a token each), different for every request.</summary>
    public static string Prompt(int index, int tokens)
    {
        var sb = new StringBuilder($"Request {index}:");
        var rng = new Random(index);
        for (int i = 0; i < Math.Max(0, tokens - 4); i++) sb.Append(' ').Append(Words[rng.Next(Words.Length)]);
        return sb.ToString();
    }

    private async Task<RequestSample> OneAsync(HttpClient http, int index, CancellationToken cancel)
    {
        var body = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["model"] = options.Model,
            ["prompt"] = Prompt(index, options.PromptTokens),
            ["max_tokens"] = options.MaxTokens,
            ["temperature"] = options.Temperature,
            ["ignore_eos"] = true,
            ["stream"] = true,
            ["stream_options"] = new Dictionary<string, object> { ["include_usage"] = true },
        });
        long start = Stopwatch.GetTimestamp();
        double ttft = double.NaN;
        int chunks = 0, usageTokens = -1, promptTokens = -1;
        try
        {
            using var res = await SendAsync(http, body, cancel);
            if (!res.IsSuccessStatusCode)
                return Failed(start, $"HTTP {(int)res.StatusCode}: {Truncate(await res.Content.ReadAsStringAsync(cancel))}");
            using var reader = new StreamReader(await res.Content.ReadAsStreamAsync(cancel));
            while (await reader.ReadLineAsync(cancel) is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                if (line == "data: [DONE]") break;
                using var doc = JsonDocument.Parse(line.AsMemory(6));
                var root = doc.RootElement;
                if (root.TryGetProperty("error", out var error)) return Failed(start, "stream error: " + Truncate(error.ToString()));
                if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                {
                    usageTokens = usage.GetProperty("completion_tokens").GetInt32();
                    promptTokens = usage.GetProperty("prompt_tokens").GetInt32();
                }
                if (root.TryGetProperty("choices", out var choices) && choices.GetArrayLength() > 0
                    && choices[0].TryGetProperty("text", out var text) && text.GetString() is { Length: > 0 })
                {
                    if (chunks++ == 0) ttft = Stopwatch.GetElapsedTime(start).TotalSeconds;
                }
            }
        }
        catch (Exception e) when (e is HttpRequestException or IOException or JsonException or OperationCanceledException)
        {
            return Failed(start, cancel.IsCancellationRequested ? "cancelled at the time limit" : Message(e));
        }
        int tokens = usageTokens >= 0 ? usageTokens : chunks; // servers without usage in streams send a chunk per token
        double total = Stopwatch.GetElapsedTime(start).TotalSeconds;
        return new RequestSample(tokens > 0, ttft, total, tokens, promptTokens, tokens > 0 ? null : "no tokens");
    }

    /// <summary>
    /// Posts <paramref name="body"/>; a request that fails before any response (as a kept-alive connection does when the server
    /// closed it just as it was reused; runs against llama-server lost up to a third of their requests this way, cause not
    /// pinned down) is sent again, at most twice. The request's time still counts from the first try.
    /// </summary>
    private async Task<HttpResponseMessage> SendAsync(HttpClient http, string body, CancellationToken cancel)
    {
        for (int attempt = 0; ; attempt++)
        {
            using var req = new HttpRequestMessage(HttpMethod.Post, "v1/completions");
            req.Content = new StringContent(body, Encoding.UTF8, "application/json");
            if (options.ApiKey is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", options.ApiKey);
            try
            {
                return await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, cancel);
            }
            catch (HttpRequestException) when (attempt < 2 && !cancel.IsCancellationRequested)
            {
            }
        }
    }

    private static string Message(Exception e) =>
        e.InnerException is { } inner && !string.IsNullOrEmpty(inner.Message) ? $"{e.Message} ({inner.Message})" : e.Message;

    private static RequestSample Failed(long start, string error) =>
        new(false, double.NaN, Stopwatch.GetElapsedTime(start).TotalSeconds, 0, -1, error);

    private static string Truncate(string s) => s.Length <= 200 ? s : s[..200] + "...";
}
