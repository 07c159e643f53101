using System.Text.RegularExpressions;

namespace Infer.CommandLine;

/// <summary>
/// The one progress display of both executables, on a <see cref="TextWriter"/> (normally stderr): on a terminal one line
/// redrawn in place with '\r' (label, bar, percent, sizes, rate or why it waits, time left), at most ten times a second;
/// when the output is redirected, sparse plain lines (start, every quarter, each new reason to wait, done) so logs stay
/// short. Each task ends with a line of its own.
/// </summary>
public sealed partial class ProgressBar : IProgress<ProgressUpdate>
{
    private static readonly TimeSpan RedrawInterval = TimeSpan.FromMilliseconds(100);
    private const int QuarterCount = 4;

    private readonly TextWriter _writer;
    private readonly bool _interactive;
    private readonly int _width;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();

    private string? _label;
    private long _started;
    private long _lastDraw;
    private int _lastLength;
    private int _lastQuarter;
    private bool _lineOpen;
    private bool _finished;
    private string? _lastStatus;

    /// <param name="writer">Where to draw.</param>
    /// <param name="interactive">True on a terminal (redraw in place), false when redirected (sparse lines).</param>
    /// <param name="width">Columns available for one line on a terminal.</param>
    /// <param name="time">Clock for throttling and elapsed time; the system clock by default.</param>
    public ProgressBar(TextWriter writer, bool interactive, int width = 80, TimeProvider? time = null)
    {
        _writer = writer;
        _interactive = interactive;
        _width = Math.Max(width, 40);
        _time = time ?? TimeProvider.System;
    }

    /// <summary>A bar on standard error, interactive unless stderr is redirected, as wide as the terminal.</summary>
    public static ProgressBar ForStandardError()
    {
        bool interactive = !Console.IsErrorRedirected;
        int width = 80;
        if (interactive)
        {
            try { width = Console.WindowWidth - 1; }
            catch (Exception e) when (e is IOException or PlatformNotSupportedException) { }
            if (width <= 0) width = 80;
        }
        return new ProgressBar(Console.Error, interactive, width);
    }

    /// <summary>A bar for <paramref name="writer"/>: the terminal's when it is stderr, else plain lines.</summary>
    public static ProgressBar For(TextWriter writer) =>
        ReferenceEquals(writer, Console.Error) ? ForStandardError() : new ProgressBar(writer, interactive: false);

    /// <summary>
    /// An <see cref="IProgress{T}"/> of fractions 0..1 (a model's load) drawn as <paramref name="label"/> with a percentage,
    /// and with sizes when the fraction is of <paramref name="totalBytes"/>.
    /// </summary>
    public IProgress<double> Fraction(string label, long? totalBytes = null) => new FractionProgress(this, label, totalBytes);

    public void Report(ProgressUpdate value)
    {
        lock (_lock)
        {
            long now = _time.GetTimestamp();
            if (value.Label != _label)
            {
                EndLine();
                _label = value.Label;
                _started = now;
                _lastDraw = 0;
                _lastQuarter = -1;
                _finished = false;
                _lastStatus = null;
            }
            if (_finished) return;

            if (_interactive) DrawInPlace(value, now);
            else WriteSparse(value, now);

            if (value.IsComplete)
            {
                _finished = true;
                EndLine();
            }
        }
    }

    /// <summary>Ends a line left open by an unfinished task (call before printing anything else, e.g. an error).</summary>
    public void Finish()
    {
        lock (_lock)
        {
            EndLine();
            _writer.Flush();
        }
    }

    private void DrawInPlace(ProgressUpdate p, long now)
    {
        bool first = _lastDraw == 0;
        bool statusChanged = p.Status != _lastStatus;
        _lastStatus = p.Status;
        if (!first && !p.IsComplete && !statusChanged && _time.GetElapsedTime(_lastDraw, now) < RedrawInterval) return;
        _lastDraw = now;
        string line = p.IsComplete ? DoneLine(p, _time.GetElapsedTime(_started, now)) : RenderLine(p, _width);
        if (line.Length > _width) line = line[.._width];
        int pad = Math.Max(0, _lastLength - line.Length);
        _writer.Write('\r');
        _writer.Write(line);
        if (pad > 0) _writer.Write(new string(' ', pad));
        _writer.Flush();
        _lastLength = line.Length;
        _lineOpen = true;
    }

    private void WriteSparse(ProgressUpdate p, long now)
    {
        if (p.Status is not null)
        {
            // Once per kind of wait: the counting seconds of a stall are not news in a log.
            string key = Seconds().Replace(p.Status, "");
            if (key == _lastStatus) return;
            _lastStatus = key;
            _writer.WriteLine($"{p.Label}: {p.Status}");
            _writer.Flush();
            return;
        }
        _lastStatus = null;
        if (p.IsComplete)
        {
            _writer.WriteLine(DoneLine(p, _time.GetElapsedTime(_started, now)));
            _writer.Flush();
            return;
        }
        int quarter = p.Total > 0 ? (int)Math.Min(QuarterCount - 1, p.Done * QuarterCount / p.Total) : 0;
        if (quarter <= _lastQuarter) return;
        _lastQuarter = quarter;
        string detail = p.Detail is null ? "" : $"  {p.Detail}";
        string line = _lastDraw == 0
            ? StartLine(p)
            : $"{p.Label}: {Percent(p)}{(p.Bytes ? $" of {Units.FormatSize(p.Total)}" : "")}{Rate(p, ", ")}{detail}";
        _lastDraw = now;
        _writer.WriteLine(line);
        _writer.Flush();
    }

    private void EndLine()
    {
        if (!_lineOpen) return;
        _writer.WriteLine();
        _lineOpen = false;
        _lastLength = 0;
    }

    /// <summary>
    /// One terminal line: <c>label [#####-----] 45% 2.3 MiB / 5.0 MiB  1.2 MiB/s  0:03 left  detail</c>; the label is
    /// shortened from the left and the bar shrinks so the line fits <paramref name="width"/>.
    /// </summary>
    public static string RenderLine(ProgressUpdate p, int width)
    {
        string sizes = p.Bytes ? $" {Units.FormatSize(p.Done)} / {Units.FormatSize(p.Total)}" : "";
        string tail = p.Status is { } status ? $"  {status}" : Rate(p, "  ");
        string stats = $" {Percent(p),4}{sizes}{tail}{(p.Detail is null ? "" : "  " + p.Detail)}";
        int room = width - stats.Length;
        int labelWidth = Math.Min(p.Label.Length, Math.Max(room / 2 - 1, 12));
        string label = p.Label.Length <= labelWidth ? p.Label : "…" + p.Label[^(labelWidth - 1)..];
        int barWidth = Math.Max(room - label.Length - 3, 0);
        if (barWidth < 5) return label + stats;
        double fraction = p.Total > 0 ? Math.Clamp((double)p.Done / p.Total, 0, 1) : 0;
        int filled = (int)(fraction * barWidth);
        return $"{label} [{new string('#', filled)}{new string('-', barWidth - filled)}]{stats}";
    }

    private static string Rate(ProgressUpdate p, string separator) => p.BytesPerSecond is { } speed
        ? $"{separator}{Units.FormatSpeed(speed)}{separator}{(p.Eta is { } t ? Units.FormatDuration(t) : "--:--")} left"
        : "";

    private static string StartLine(ProgressUpdate p) => p.Bytes
        ? $"{p.Label}: {(p.Verb is null ? "" : p.Verb + " ")}{Units.FormatSize(p.Total)}"
            + (p.Done > 0 ? $", resuming at {Units.FormatSize(p.Done)}" : "")
        : $"{p.Label}: {p.Verb ?? "started"}";

    private static string DoneLine(ProgressUpdate p, TimeSpan elapsed) =>
        p.Bytes ? $"{p.Label}: done, {Units.FormatSize(p.Total)} in {Units.FormatDuration(elapsed)}"
        : $"{p.Label}: done in {Units.FormatDuration(elapsed)}";

    private static string Percent(ProgressUpdate p) =>
        p.Total > 0 ? $"{Math.Clamp(p.Done * 100 / p.Total, 0, 100)}%" : "?%";

    [GeneratedRegex(@"\d+(\.\d+)? s\b")]
    private static partial Regex Seconds();

    private sealed class FractionProgress(ProgressBar bar, string label, long? totalBytes) : IProgress<double>
    {
        private const long Scale = 1000;

        public void Report(double value)
        {
            long total = totalBytes ?? Scale;
            bar.Report(new ProgressUpdate(label, (long)(Math.Clamp(value, 0, 1) * total), total) { Bytes = totalBytes is not null });
        }
    }
}
