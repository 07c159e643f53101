using Infer.CommandLine;
using Infer.Hub;

namespace Infer.Cli.Tests.Terminal;

/// <summary>The shared progress bar (src/CommandLine) as downloads, loads and the converter drive it.</summary>

public sealed class ProgressBarTests
{
    private const long MiB = 1 << 20;

    /// <summary>A clock that moves only when told to.</summary>
    private sealed class ManualTime : TimeProvider
    {
        private long _ticks = 1;
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => _ticks;
        public void Advance(TimeSpan by) => _ticks += by.Ticks;
    }

    private static ProgressUpdate At(long done, long total = 10 * MiB, double speed = 2 * MiB, string file = "tiny-Q8_0.gguf") =>
        DownloadBar.ToUpdate(new DownloadProgress(file, done, total, speed, speed > 0 ? TimeSpan.FromSeconds((total - done) / speed) : null));

    [Theory]
    [InlineData(0, "0 B")]
    [InlineData(1023, "1023 B")]
    [InlineData(1024, "1.00 KiB")]
    [InlineData(1536, "1.50 KiB")]
    [InlineData(24_422_432, "23.3 MiB")]
    [InlineData(4_370_000_000, "4.07 GiB")]
    [InlineData(200L * 1024 * 1024 * 1024, "200 GiB")]
    public void FormatSize_UsesBinaryUnits(long bytes, string expected) => Assert.Equal(expected, Units.FormatSize(bytes));

    [Theory]
    [InlineData(0, "0:00")]
    [InlineData(7.9, "0:07")]
    [InlineData(754, "12:34")]
    [InlineData(3723, "1:02:03")]
    [InlineData(1e7, "99:59:59+")]
    public void FormatDuration(double seconds, string expected) => Assert.Equal(expected, Units.FormatDuration(TimeSpan.FromSeconds(seconds)));

    [Fact]
    public void RenderLine_ShowsBarPercentSizeSpeedAndTimeLeft_WithinWidth()
    {
        string line = ProgressBar.RenderLine(At(5 * MiB), 80);

        // 48 columns of numbers, the 14-column name, " [" and "]": 15 columns of bar, half filled.

        Assert.Equal("tiny-Q8_0.gguf [#######--------]  50% 5.00 MiB / 10.0 MiB  2.00 MiB/s  0:02 left", line);
        Assert.True(ProgressBar.RenderLine(At(5 * MiB, file: new string('x', 200) + ".gguf"), 80).Length <= 80);
        Assert.Contains("--- B/s  --:-- left", ProgressBar.RenderLine(At(0, speed: 0), 80));
    }

    [Fact]
    public void Terminal_RedrawsInPlace_AtMostTenTimesASecond_AndEndsTheLine()
    {
        var time = new ManualTime();
        var output = new StringWriter();
        var bar = new ProgressBar(output, interactive: true, width: 100, time);

        bar.Report(At(0));
        bar.Report(At(1 * MiB)); // within 100 ms of the last draw: skipped
        time.Advance(TimeSpan.FromMilliseconds(150));
        bar.Report(At(5 * MiB));
        time.Advance(TimeSpan.FromSeconds(3));
        bar.Report(At(10 * MiB));

        string text = output.ToString();
        Assert.Equal(3, text.Count(c => c == '\r'));
        Assert.DoesNotContain(" 10%", text);
        Assert.Contains(" 50% 5.00 MiB / 10.0 MiB", text);
        const string done = "tiny-Q8_0.gguf: done, 10.0 MiB in 0:03";
        Assert.EndsWith("\r" + done + new string(' ', text.Split('\r')[2].Length - done.Length) + Environment.NewLine, text);
    }

    [Fact]
    public void Redirected_PrintsSparseLines()
    {
        var time = new ManualTime();
        var output = new StringWriter();
        var bar = new ProgressBar(output, interactive: false, time: time);

        for (long done = 0; done < 10 * MiB; done += MiB / 4)
        {
            bar.Report(At(done));
            time.Advance(TimeSpan.FromMilliseconds(125));
        }
        bar.Report(At(10 * MiB));

        string[] lines = output.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(
            [
                "tiny-Q8_0.gguf: downloading 10.0 MiB",
                "tiny-Q8_0.gguf: 25% of 10.0 MiB, 2.00 MiB/s, 0:03 left",
                "tiny-Q8_0.gguf: 50% of 10.0 MiB, 2.00 MiB/s, 0:02 left",
                "tiny-Q8_0.gguf: 75% of 10.0 MiB, 2.00 MiB/s, 0:01 left",
                "tiny-Q8_0.gguf: done, 10.0 MiB in 0:05",
            ], lines);
        Assert.DoesNotContain('\r', output.ToString());
    }

    [Fact]
    public void NewFile_StartsOnANewLine_AndFinishClosesAnOpenLine()
    {
        var output = new StringWriter();
        var bar = new ProgressBar(output, interactive: true, width: 100, new ManualTime());

        bar.Report(At(MiB, file: "a-00001-of-00002.gguf"));
        bar.Report(At(MiB, file: "a-00002-of-00002.gguf"));
        bar.Finish();

        string[] lines = output.ToString().Split(Environment.NewLine);
        Assert.Equal(3, lines.Length);
        Assert.StartsWith("\ra-00001-of-00002.gguf [", lines[0]);
        Assert.StartsWith("\ra-00002-of-00002.gguf [", lines[1]);
        Assert.Equal("", lines[2]);
    }

    [Fact]
    public void AWaitIsShownInPlaceOfTheRateAndLoggedOncePerKind()
    {
        var time = new ManualTime();
        var terminal = new StringWriter();
        var log = new StringWriter();
        var bars = new[] { new ProgressBar(terminal, interactive: true, width: 100, time), new ProgressBar(log, interactive: false, time: time) };
        foreach (var bar in bars)
        {
            bar.Report(At(MiB));
            for (int s = 2; s <= 4; s++)
            {
                time.Advance(TimeSpan.FromSeconds(1));
                bar.Report(At(MiB) with { Status = $"waiting: no data for {s} s (a try ends after 25 s)" });
            }
            bar.Report(At(MiB) with { Status = "retrying (2 of 4) after: no data for 25 s" });
        }
        Assert.Contains("\rtiny-Q8_0.gguf [", terminal.ToString());
        Assert.EndsWith("10% 1.00 MiB / 10.0 MiB  retrying (2 of 4) after: no data for 25 s", terminal.ToString().Split('\r')[^1].TrimEnd());
        Assert.Equal(
            [
                "tiny-Q8_0.gguf: downloading 10.0 MiB, resuming at 1.00 MiB",
                "tiny-Q8_0.gguf: waiting: no data for 2 s (a try ends after 25 s)",
                "tiny-Q8_0.gguf: retrying (2 of 4) after: no data for 25 s",
            ], log.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void AFractionIsAPercentageWithoutSizes()
    {
        var output = new StringWriter();
        var bar = new ProgressBar(output, interactive: false, time: new ManualTime());
        var load = bar.Fraction("loading the model");
        foreach (double f in new[] { 0, 0.3, 0.6, 0.9, 1.0 }) load.Report(f);
        Assert.Equal(
            [
                "loading the model: started",
                "loading the model: 30%",
                "loading the model: 60%",
                "loading the model: 90%",
                "loading the model: done in 0:00",
            ], output.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries));
        // 80 columns: the 17-column label, " [", 55 of bar (16 filled: 30%), "]" and "  30%".
        Assert.Equal($"loading the model [{new string('#', 16)}{new string('-', 39)}]  30%",
            ProgressBar.RenderLine(new ProgressUpdate("loading the model", 300, 1000) { Bytes = false }, 80));
    }
}
