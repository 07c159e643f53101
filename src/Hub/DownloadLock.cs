using System.Diagnostics;
using System.Globalization;

namespace Infer.Hub;

/// <summary>
/// One process at a time downloads a cache file: <c>{file}.lock</c> holds the holder's process id and start time. Another
/// process waits (reporting who holds it) until the lock goes, then uses the finished file or takes over. A lock whose holder
/// is gone (killed, crashed) is stale and taken over; <c>{file}.lock.takeover</c> makes sure only one waiter does so.
/// </summary>
internal sealed class DownloadLock : IDisposable
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(200);
    private static readonly TimeSpan StaleTakeover = TimeSpan.FromSeconds(10);

    private readonly string _path;
    private readonly string _content;

    private DownloadLock(string path, string content)
    {
        _path = path;
        _content = content;
    }

    public static string LockPath(string finalPath) => finalPath + ".lock";

    /// <summary>
    /// Takes the lock of <paramref name="finalPath"/>, waiting for a live holder; <paramref name="waiting"/> gets the
    /// holder's process id at every poll meanwhile.
    /// </summary>
    public static async Task<DownloadLock> AcquireAsync(string finalPath, Action<int>? waiting, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(finalPath)!);
        string path = LockPath(finalPath);
        string mine = Describe(Environment.ProcessId, StartTicks(Process.GetCurrentProcess()));
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            if (TryCreate(path, mine)) return new DownloadLock(path, mine);
            string? held = TryRead(path);
            if (held is null) continue; // released between our attempt and the read
            if (IsAlive(held, path))
            {
                waiting?.Invoke(ParsePid(held));
                await Task.Delay(PollInterval, ct).ConfigureAwait(false);
                continue;
            }
            if (!TakeOver(path, held)) await Task.Delay(PollInterval, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Removes the lock, unless someone has (wrongly) replaced it meanwhile.</summary>
    public void Dispose()
    {
        if (TryRead(_path) == _content) TryDelete(_path);
    }

    private static bool TryCreate(string path, string content)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.Read);
            using var writer = new StreamWriter(stream);
            writer.Write(content);
            return true;
        }
        catch (IOException) when (File.Exists(path))
        {
            return false;
        }
    }

    /// <summary>The lock's content; null when there is no lock.</summary>
    private static string? TryRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        catch (IOException)
        {
            return ""; // being written: treated as held until it is old
        }
    }

    /// <summary>True when the recorded process runs (the same one: the start time tells a reused id apart).</summary>
    private static bool IsAlive(string content, string path)
    {
        var parts = content.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length != 2 || !int.TryParse(parts[0], CultureInfo.InvariantCulture, out int pid)
            || !long.TryParse(parts[1], CultureInfo.InvariantCulture, out long ticks))
        {
            // Half written, or not ours: give its writer a moment before calling it stale.
            return DateTime.UtcNow - File.GetLastWriteTimeUtc(path) < StaleTakeover;
        }
        if (pid == Environment.ProcessId) return true;
        try
        {
            using var process = Process.GetProcessById(pid);
            long actual = StartTicks(process);
            return actual == 0 || Math.Abs(actual - ticks) < TimeSpan.TicksPerSecond;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>Deletes a stale lock, once, even when several waiters find it stale together.</summary>
    /// <returns>false when another waiter is taking it over (try again after a pause).</returns>
    private static bool TakeOver(string path, string stale)
    {
        string guard = path + ".takeover";
        if (!TryCreate(guard, Describe(Environment.ProcessId, 0)))
        {
            if (DateTime.UtcNow - File.GetLastWriteTimeUtc(guard) > StaleTakeover) TryDelete(guard);
            return false;
        }
        try
        {
            if (TryRead(path) == stale) TryDelete(path);
            return true;
        }
        finally
        {
            TryDelete(guard);
        }
    }

    private static int ParsePid(string content) =>
        int.TryParse(content.Split(' ')[0], CultureInfo.InvariantCulture, out int pid) ? pid : 0;

    private static string Describe(int pid, long startTicks) => string.Create(CultureInfo.InvariantCulture, $"{pid} {startTicks}\n");

    private static long StartTicks(Process p)
    {
        try
        {
            return p.StartTime.ToUniversalTime().Ticks;
        }
        catch (Exception e) when (e is InvalidOperationException or NotSupportedException or System.ComponentModel.Win32Exception)
        {
            return 0;
        }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
