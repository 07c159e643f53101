using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Infer.Cli.Load;

namespace Infer.Cli.Commands;

/// <summary>
/// <c>infer bench-serve --url URL [-c 8] [-n 64] [--prompt-tokens 128] [--max-tokens 128] [--duration 300] [--api-key KEY]
/// [-o md|json]</c>: load on any OpenAI-compatible server; requests/s, output tokens/s, time to first token and per output
/// token (p50, p90, p99), errors.
/// </summary>
internal static class BenchServeCommand
{
    public static int Execute(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        var a = new Args(argv, []);
        string url = a.Required("URL (the server's base address, e.g. http://127.0.0.1:8080)", "--url");
        var o = new LoadOptions(ParseUrl(url), a.Int(8, "-c", "--concurrency"), a.Int(64, "-n", "--requests"),
            a.Int(128, "--prompt-tokens"), a.Int(128, "--max-tokens"))
        {
            Duration = TimeSpan.FromSeconds(a.Int(300, "--duration")),
            ApiKey = a.String("--api-key") ?? (Environment.GetEnvironmentVariable("INFER_API_KEY") is { Length: > 0 } k ? k : null),
            Model = a.String("--model") ?? "default",
            Temperature = a.Float(0, "--temp"),
        };
        string format = a.String("-o", "--output") ?? "md";
        a.EnsureAllUsed();
        if (o.Concurrency < 1 || o.Requests < 1 || o.PromptTokens < 1 || o.MaxTokens < 1 || o.Duration <= TimeSpan.Zero)
            throw new UsageException("-c, -n, --prompt-tokens, --max-tokens and --duration must be positive");
        if (format is not ("md" or "json")) throw new UsageException($"-o must be md or json, got '{format}'");

        stderr.WriteLine($"bench-serve: {o.Requests} requests, {o.Concurrency} at a time, ~{o.PromptTokens} prompt tokens, " +
            $"{o.MaxTokens} output tokens each, " +
            $"against {o.Url} (at most {o.Duration.TotalSeconds:F0} s)");
        var report = new LoadGenerator(o).RunAsync().GetAwaiter().GetResult();
        stdout.WriteLine(format == "json" ? Json(report) : Markdown(report));
        foreach (var e in report.Samples.Where(s => !s.Ok).Select(s => s.Error).Distinct().Take(5)) stderr.WriteLine($"error: {e}");
        return report.Errors == 0 ? 0 : 1;
    }

    private static Uri ParseUrl(string url)
    {
        if (!Uri.TryCreate(url.EndsWith('/') ? url : url + "/", UriKind.Absolute, out var u) || u.Scheme is not ("http" or "https"))
            throw new UsageException($"--url must be an http(s) address, got '{url}'");
        return u;
    }

    private static (double P50, double P90, double P99) Percentiles(IEnumerable<double> values)
    {
        var v = values.ToArray();
        return (LoadReport.Percentile(v, 50), LoadReport.Percentile(v, 90), LoadReport.Percentile(v, 99));
    }

    internal static string Markdown(LoadReport r)
    {
        string Ms(double s) => double.IsFinite(s) ? (s * 1000).ToString("F1", CultureInfo.InvariantCulture) : "-";
        var ttft = Percentiles(r.Ok.Select(s => s.TimeToFirstToken));
        var tpot = Percentiles(r.Ok.Select(s => s.TimePerOutputToken));
        var e2e = Percentiles(r.Ok.Select(s => s.Total));
        var ok = r.Ok.ToArray();
        var known = ok.Where(s => s.PromptTokens >= 0).ToArray();
        string prompt = known.Length > 0 ? known.Average(s => s.PromptTokens).ToString("F0", CultureInfo.InvariantCulture) : "-";
        return string.Join('\n',
            $"| clients | requests | errors | seconds | requests/s | output tokens/s | prompt tokens (mean) |",
            $"| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            string.Create(CultureInfo.InvariantCulture,
                $"| {r.Options.Concurrency} | {ok.Length} | {r.Errors} | {r.Seconds:F2} | {r.RequestsPerSecond:F2} | " +
                $"{r.OutputTokensPerSecond:F1} | {prompt} |"),
            "",
            "| ms | p50 | p90 | p99 |",
            "| --- | ---: | ---: | ---: |",
            $"| time to first token | {Ms(ttft.P50)} | {Ms(ttft.P90)} | {Ms(ttft.P99)} |",
            $"| time per output token | {Ms(tpot.P50)} | {Ms(tpot.P90)} | {Ms(tpot.P99)} |",
            $"| end to end | {Ms(e2e.P50)} | {Ms(e2e.P90)} | {Ms(e2e.P99)} |");
    }

    private static string Json(LoadReport r)
    {
        object P((double P50, double P90, double P99) p) => new { p50 = p.P50, p90 = p.P90, p99 = p.P99 };
        var ok = r.Ok.ToArray();
        return JsonSerializer.Serialize(new
        {
            url = r.Options.Url.ToString(),
            concurrency = r.Options.Concurrency,
            requests = ok.Length,
            errors = r.Errors,
            seconds = r.Seconds,
            requests_per_second = r.RequestsPerSecond,
            output_tokens_per_second = r.OutputTokensPerSecond,
            output_tokens = ok.Sum(s => s.OutputTokens),
            ttft_s = P(Percentiles(ok.Select(s => s.TimeToFirstToken))),
            tpot_s = P(Percentiles(ok.Select(s => s.TimePerOutputToken))),
            e2e_s = P(Percentiles(ok.Select(s => s.Total))),
        }, new JsonSerializerOptions { WriteIndented = true, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals });
    }
}
