using System.Diagnostics;

namespace Infer.Hub;

/// <summary>Bytes per second over the last few seconds of a transfer (a sliding window of samples).</summary>
internal sealed class TransferRate
{
    private static readonly double Window = 5.0;
    private readonly Queue<(long Timestamp, long Bytes)> _samples = new();
    private readonly long _start = Stopwatch.GetTimestamp();
    private (long Timestamp, long Bytes) _last;

    /// <summary>Call about every 100 ms, not per read: records that <paramref name="bytesSoFar"/> bytes have been received in this session.</summary>
    public void Add(long bytesSoFar)
    {
        long now = Stopwatch.GetTimestamp();
        _last = (now, bytesSoFar);
        _samples.Enqueue(_last);
        while (_samples.Count > 2 && Stopwatch.GetElapsedTime(_samples.Peek().Timestamp, now).TotalSeconds > Window) _samples.Dequeue();
    }

    /// <summary>0 until two samples at least 50 ms apart exist.</summary>
    public double BytesPerSecond
    {
        get
        {
            if (_samples.Count < 2) return 0;
            var first = _samples.Peek();
            var last = _last;
            double seconds = Stopwatch.GetElapsedTime(first.Timestamp, last.Timestamp).TotalSeconds;
            return seconds < 0.05 ? 0 : (last.Bytes - first.Bytes) / seconds;
        }
    }

    public TimeSpan Elapsed => Stopwatch.GetElapsedTime(_start);
}
