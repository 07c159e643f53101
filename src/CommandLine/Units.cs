using System.Globalization;

namespace Infer.CommandLine;

/// <summary>Sizes, rates, durations and counts as both executables print them.</summary>
public static class Units
{
    private static readonly string[] BinaryUnits = ["KiB", "MiB", "GiB", "TiB", "PiB"];

    /// <summary>Binary units with three significant digits: "512 B", "1.50 KiB", "23.4 MiB", "4.07 GiB".</summary>
    public static string FormatSize(long bytes)
    {
        if (bytes < 1024) return bytes.ToString(CultureInfo.InvariantCulture) + " B";
        double value = bytes;
        int unit = -1;
        while (value >= 1024 && unit < BinaryUnits.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        string format = value >= 100 ? "0" : value >= 10 ? "0.0" : "0.00";
        return value.ToString(format, CultureInfo.InvariantCulture) + " " + BinaryUnits[unit];
    }

    /// <summary>"2.00 MiB/s"; "--- B/s" while the rate is unknown.</summary>
    public static string FormatSpeed(double bytesPerSecond) =>
        bytesPerSecond > 0 && double.IsFinite(bytesPerSecond) ? FormatSize((long)bytesPerSecond) + "/s" : "--- B/s";

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

    /// <summary>Parameter counts: "812", "64.0 K", "1.24 M", "8.03 B".</summary>
    public static string FormatCount(long n) => n switch
    {
        >= 1_000_000_000 => string.Create(CultureInfo.InvariantCulture, $"{n / 1e9:F2} B"),
        >= 1_000_000 => string.Create(CultureInfo.InvariantCulture, $"{n / 1e6:F2} M"),
        >= 1_000 => string.Create(CultureInfo.InvariantCulture, $"{n / 1e3:F1} K"),
        _ => n.ToString(CultureInfo.InvariantCulture),
    };
}
