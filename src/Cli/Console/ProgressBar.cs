using System.Globalization;
using System.Text.RegularExpressions;
using Infer.Hub;

// Not Infer.Cli.Console: a namespace named Console inside Infer.Cli would hide System.Console from every file in namespace Infer.Cli.
namespace Infer.Cli.Terminal;

/// <summary>
/// Renders download progress to a <see cref="TextWriter"/> (normally stderr): on a terminal one line redrawn in place with '\r'
/// (name, bar, percent, size, speed, time left), at most ten times a second; when the output is redirected, sparse plain lines
/// (start, every quarter, done) so logs stay short. Each file ends with a line of its own.
/// </summary>
public sealed class ProgressBar : IProgress<DownloadProgress>
{
    private static readonly TimeSpan RedrawInterval = TimeSpan.FromMilliseconds(100);
    private const int QuarterCount = 4;

    private readonly TextWriter _writer;
    private readonly bool _interactive;
    private readonly int _width;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();

    private string? _file;
    private long _fileStarted;
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

    public void Report(DownloadProgress value)
    {
        lock (_lock)
        {
            long now = _time.GetTimestamp();
            if (value.File != _file)
            {
                EndLine();
                _file = value.File;
                _fileStarted = now;
                _lastDraw = 0;
                _lastQuarter = -1;
                _finished = false;
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

    /// <summary>Ends a line left open by an unfinished download (call before printing anything else, e.g. an error).</summary>
    public void Finish()
    {
        lock (_lock)
        {
            EndLine();
            _writer.Flush();
        }
    }

    private void DrawInPlace(DownloadProgress p, long now)
    {
        bool first = _lastDraw == 0;
        bool statusChanged = p.Status != _lastStatus;
        _lastStatus = p.Status;
        if (!first && !p.IsComplete && !statusChanged && _time.GetElapsedTime(_lastDraw, now) < RedrawInterval) return;
        _lastDraw = now;
        string line = p.IsComplete ? DoneLine(p, _time.GetElapsedTime(_fileStarted, now)) : RenderLine(p, _width);
        if (line.Length > _width) line = line[.._width];
        int pad = Math.Max(0, _lastLength - line.Length);
        _writer.Write('\r');
        _writer.Write(line);
        if (pad > 0) _writer.Write(new string(' ', pad));
        _writer.Flush();
        _lastLength = line.Length;
        _lineOpen = true;
    }

    private void WriteSparse(DownloadProgress p, long now)
    {
        if (p.Status is not null)
        {
            // Once per kind of wait: the counting seconds of a stall are not news in a log.
            string key = Regex.Replace(p.Status, @"\d+(\.\d+)? s\b", "");
            if (key == _lastStatus) return;
            _lastStatus = key;
            _writer.WriteLine($"{p.File}: {p.Status}");
            _writer.Flush();
            return;
        }
        _lastStatus = null;
        if (p.IsComplete)
        {
            _writer.WriteLine(DoneLine(p, _time.GetElapsedTime(_fileStarted, now)));
            _writer.Flush();
            return;
        }
        int quarter = p.BytesTotal > 0 ? (int)Math.Min(QuarterCount - 1, p.BytesDone * QuarterCount / p.BytesTotal) : 0;
        if (quarter <= _lastQuarter) return;
        _lastQuarter = quarter;
        string line = _lastDraw == 0
            ? $"{p.File}: downloading {FormatSize(p.BytesTotal)}{(p.BytesDone > 0 ? $", resuming at {FormatSize(p.BytesDone)}" : "")}"
            : $"{p.File}: {Percent(p)} of {FormatSize(p.BytesTotal)}, {FormatSpeed(p.BytesPerSecond)}, {FormatEta(p.Eta)} left";
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
    /// One terminal line: <c>name [#####-----] 45% 2.3 MiB / 5.0 MiB 1.2 MiB/s 0:03 left</c>; the name is shortened from the left
    /// and the bar shrinks so the line fits <paramref name="width"/>.
    /// </summary>
    public static string RenderLine(DownloadProgress p, int width)
    {
        string stats = p.Status is { } status
            ? $" {Percent(p),4} {FormatSize(p.BytesDone)} / {FormatSize(p.BytesTotal)}  {status}"
            : $" {Percent(p),4} {FormatSize(p.BytesDone)} / {FormatSize(p.BytesTotal)}  {FormatSpeed(p.BytesPerSecond)}  {FormatEta(p.Eta)} left";
        int room = width - stats.Length;
        int nameWidth = Math.Min(p.File.Length, Math.Max(room / 2 - 1, 12));
        string name = p.File.Length <= nameWidth ? p.File : "…" + p.File[^(nameWidth - 1)..];
        int barWidth = Math.Max(room - name.Length - 3, 0);
        if (barWidth < 5) return name + stats;
        double fraction = p.BytesTotal > 0 ? Math.Clamp((double)p.BytesDone / p.BytesTotal, 0, 1) : 0;
        int filled = (int)(fraction * barWidth);
        return $"{name} [{new string('#', filled)}{new string('-', barWidth - filled)}]{stats}";
    }

    private static string DoneLine(DownloadProgress p, TimeSpan elapsed) =>
        $"{p.File}: done, {FormatSize(p.BytesTotal)} in {FormatDuration(elapsed)}";

    private static string Percent(DownloadProgress p) =>
        p.BytesTotal > 0 ? $"{Math.Clamp(p.BytesDone * 100 / p.BytesTotal, 0, 100)}%" : "?%";

    /// <summary>Binary units with three significant digits: "512 B", "1.50 KiB", "23.4 MiB", "4.07 GiB".</summary>
    public static string FormatSize(long bytes)
    {
        if (bytes < 1024) return bytes.ToString(CultureInfo.InvariantCulture) + " B";
        string[] units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        double value = bytes;
        int unit = -1;
        while (value >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        string format = value >= 100 ? "0" : value >= 10 ? "0.0" : "0.00";
        return value.ToString(format, CultureInfo.InvariantCulture) + " " + units[unit];
    }

    public static string FormatSpeed(double bytesPerSecond) =>
        bytesPerSecond > 0 && double.IsFinite(bytesPerSecond) ? FormatSize((long)bytesPerSecond) + "/s" : "--- B/s";

    private static string FormatEta(TimeSpan? eta) => eta is { } t ? FormatDuration(t) : "--:--";

    /// <summary>"0:07", "12:34", "1:02:03"; durations of 100 hours or more print as "99:59:59+".</summary>
    public static string FormatDuration(TimeSpan t)
    {
        if (t < TimeSpan.Zero) t = TimeSpan.Zero;
        if (t.TotalHours >= 100) return "99:59:59+";
        long seconds = (long)t.TotalSeconds;
        return seconds >= 3600
            ? string.Create(CultureInfo.InvariantCulture, $"{seconds / 3600}:{seconds / 60 % 60:00}:{seconds % 60:00}")
            : string.Create(CultureInfo.InvariantCulture, $"{seconds / 60}:{seconds % 60:00}");
    }
}
