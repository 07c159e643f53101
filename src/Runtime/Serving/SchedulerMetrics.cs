using System.Diagnostics.Metrics;

namespace Infer.Runtime.Serving;

/// <summary>
/// The scheduler's instruments on the caller's <see cref="Meter"/>: time to first token and per output token, prompt, cached and
/// generated tokens, and gauges of the queue, the busy slots and the KV cache. Exporting them is the host's configuration.
/// </summary>
internal sealed class SchedulerMetrics : IDisposable
{
    // Seconds: from a few milliseconds (a cached prompt on a small model) to minutes (a long prompt on a busy CPU).
    private static readonly double[] LatencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
    private static readonly double[] TokenBuckets = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5];

    private readonly Histogram<double> _ttft, _tpot;
    private readonly Counter<long> _prompt, _cached, _generated, _finished, _failed;

    public SchedulerMetrics(Meter meter, Scheduler s)
    {
        _ttft = meter.CreateHistogram("infer.server.time_to_first_token", "s", "Time from a request's arrival to its first generated token",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _tpot = meter.CreateHistogram("infer.server.time_per_output_token", "s", "Mean time per generated token after the first, per request",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = TokenBuckets });
        _prompt = meter.CreateCounter<long>("infer.server.prompt_tokens", "{token}", "Prompt tokens of admitted requests");
        _cached = meter.CreateCounter<long>("infer.server.cached_prompt_tokens", "{token}", "Prompt tokens whose KV cache was reused");
        _generated = meter.CreateCounter<long>("infer.server.generated_tokens", "{token}", "Generated tokens");
        _finished = meter.CreateCounter<long>("infer.server.generations", "{request}", "Finished generations by finish reason");
        _failed = meter.CreateCounter<long>("infer.server.generation_errors", "{request}", "Generations ended by an internal fault");
        meter.CreateObservableGauge("infer.server.queue_length", () => s.QueueLength, "{request}", "Requests waiting for a slot");
        meter.CreateObservableGauge("infer.server.busy_slots", () => s.BusySlots, "{slot}", "Slots running a request");
        meter.CreateObservableGauge("infer.server.slots", () => s.Slots, "{slot}", "Slots (-np)");
        meter.CreateObservableGauge("infer.server.kv_cache_tokens", () => s.CachedTokens, "{token}", "KV cache positions in use, all slots");
        meter.CreateObservableGauge("infer.server.kv_cache_usage", () => s.CachedTokens / (double)((long)s.Slots * s.ContextLength), "1",
            "Fraction of the KV cache in use");
    }

    public void RecordPrompt(int tokens, int cached)
    {
        _prompt.Add(tokens);
        _cached.Add(cached);
    }

    public void RecordFinished(GenerationResult r)
    {
        _generated.Add(r.GeneratedTokens);
        _finished.Add(1, new KeyValuePair<string, object?>("reason", r.Reason switch
        {
            FinishReason.Stop => "stop",
            FinishReason.Length => "length",
            _ => "cancelled",
        }));
        if (r.GeneratedTokens > 0) _ttft.Record(r.TimeToFirstToken);
        if (r.GeneratedTokens > 1) _tpot.Record(r.TimePerOutputToken);
    }

    public void RecordFailure() => _failed.Add(1);

    public void Dispose()
    {
    }
}
