using System.Globalization;

namespace Infer.Cli;

/// <summary>
/// Resident memory of this process as the kernel reports it in /proc/self/status (Linux only), in bytes: VmRSS, split into
/// RssAnon (our own allocations: repacked weights, the KV cache, buffers, the managed heap) and RssFile (pages of mapped
/// files: the model's weights as read through the map), and VmHWM, the peak.
/// </summary>
internal readonly record struct ProcessMemory(long Resident, long Anonymous, long FileBacked, long Peak)
{
    /// <summary>The current figures, or null where /proc/self/status is not there to read.</summary>
    public static ProcessMemory? Read()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            long rss = -1, anon = 0, file = 0, peak = 0;
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) rss = Kilobytes(line);
                else if (line.StartsWith("RssAnon:", StringComparison.Ordinal)) anon = Kilobytes(line);
                else if (line.StartsWith("RssFile:", StringComparison.Ordinal)) file = Kilobytes(line);
                else if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) peak = Kilobytes(line);
            }
            return rss < 0 ? null : new ProcessMemory(rss, anon, file, peak);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    /// <summary>"812 MB (anonymous 120 MB, file-backed 692 MB)".</summary>
    public override string ToString() => $"{Mb(Resident)} (anonymous {Mb(Anonymous)}, file-backed {Mb(FileBacked)})";

    public static string Mb(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e6:F0} MB");

    /// <summary>"VmRSS:	  123456 kB" → bytes.</summary>
    private static long Kilobytes(string line)
    {
        var parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        return long.Parse(parts[1], CultureInfo.InvariantCulture) * 1024;
    }
}
