using System.Diagnostics.Metrics;

namespace Infer.Server;

/// <summary>The HTTP layer's instruments: requests by endpoint and status, and their end-to-end latency.</summary>
internal sealed class ServerMetrics
{
    private static readonly double[] DurationBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

    private readonly Counter<long> _requests;
    private readonly Histogram<double> _duration;

    public ServerMetrics(Meter meter)
    {
        _requests = meter.CreateCounter<long>("infer.server.requests", "{request}", "HTTP requests by endpoint and status code");
        _duration = meter.CreateHistogram("infer.server.request.duration", "s", "End-to-end time of a request, by endpoint",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });
    }

    public void Record(string endpoint, int status, double seconds)
    {
        var e = new KeyValuePair<string, object?>("endpoint", endpoint);
        _requests.Add(1, e, new KeyValuePair<string, object?>("status", status));
        _duration.Record(seconds, e);
    }
}

/// <summary>What the per-request log line and the metrics report about one request.</summary>
internal sealed class RequestStats
{
    public string? Id;
    public int PromptTokens, CachedTokens, GeneratedTokens;
    public double TimeToFirstToken;
    public string? Finish;
}
