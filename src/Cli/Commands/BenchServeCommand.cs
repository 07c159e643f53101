using System.CommandLine;
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
    public static Command Create(CliContext io)
    {
        var url = new Option<string?>("--url") { Description = "the server's base address, e.g. http://127.0.0.1:8080", HelpName = "URL" };
        var clients = Positive("--concurrency", "-c", "clients sending requests at once", 8);
        var requests = Positive("--requests", "-n", "requests in all", 64);
        var promptTokens = Positive("--prompt-tokens", null, "prompt length of each request, about", 128);
        var maxTokens = Positive("--max-tokens", null, "tokens each request generates", 128);
        var duration = Positive("--duration", null, "stop after this many seconds at most", 300);
        var apiKey = new Option<string?>("--api-key") { Description = "sent as a bearer token [default: $INFER_API_KEY]", HelpName = "KEY" };
        var model = new Option<string>("--model")
        {
            Description = "the model id to ask for", HelpName = "NAME", DefaultValueFactory = _ => "default",
        };
        var temp = new Option<float>("--temp") { Description = "temperature of the requests", HelpName = "T", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--output", "-o") { Description = "report format", HelpName = "md|json", DefaultValueFactory = _ => "md" }
            .Check(v => v is "md" or "json" ? null : $"-o must be md or json, got '{v}'").Suggest("md", "json");
        var command = new Command("bench-serve", "load on any OpenAI-compatible server: requests/s, tokens/s, latency percentiles")
        {
            url, clients, requests, promptTokens, maxTokens, duration, apiKey, model, temp, output,
        };
        command.SetAction(r =>
        {
            string address = r.GetValue(url) ?? throw new UsageException("missing --url URL (the server's base address, e.g. http://127.0.0.1:8080)");
            var o = new LoadOptions(ParseUrl(address), r.GetValue(clients), r.GetValue(requests), r.GetValue(promptTokens), r.GetValue(maxTokens))
            {
                Duration = TimeSpan.FromSeconds(r.GetValue(duration)),
                ApiKey = r.GetValue(apiKey) ?? (Environment.GetEnvironmentVariable("INFER_API_KEY") is { Length: > 0 } k ? k : null),
                Model = r.GetValue(model)!,
                Temperature = r.GetValue(temp),
            };
            return Execute(o, r.GetValue(output)!, io.Out, io.Err);
        });
        return command;
    }

    private static Option<int> Positive(string name, string? alias, string description, int fallback) =>
        new Option<int>(name, alias is null ? [] : [alias]) { Description = description, HelpName = "N", DefaultValueFactory = _ => fallback }
            .Check(v => v >= 1 ? null : $"{alias ?? name} must be positive, got {v}");

    private static int Execute(LoadOptions o, string format, TextWriter stdout, TextWriter stderr)
    {
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
