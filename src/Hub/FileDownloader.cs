using System.Buffers;
using System.Diagnostics;
using System.Net;

namespace Infer.Hub;

/// <summary>
/// Downloads one file into the cache: bytes go to <c>{final}.part</c> (resumed with <c>Range: bytes=N-</c> when it exists; a 200
/// answer instead of 206 starts over), are hashed as they arrive, and the file is renamed to its final name only when it is
/// complete and its digest matches the listing. A mismatch deletes the download.
/// </summary>
internal static class FileDownloader
{
    private const int BufferSize = 1 << 20;
    private static readonly TimeSpan ReportInterval = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan StallTick = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan StallNotice = TimeSpan.FromSeconds(2);

    public static async Task DownloadAsync(HubHttp http, Uri url, HubFile file, string repoId, string revision, string finalPath,
        HubOptions options, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(finalPath)!);
        string partPath = finalPath + CacheLayout.PartSuffix;
        string label = $"{file.Path} of {repoId}";

        var stream = OpenPart(partPath, label);
        using var hasher = new ContentHasher(file);
        bool keepPart = true;
        try
        {
            long have = stream.Length;
            if (have > file.Size)
            {
                stream.SetLength(0);
                have = 0;
            }
            await HashExistingAsync(stream, have, hasher, ct).ConfigureAwait(false);

            var rate = new TransferRate();
            Exception? lastError = null;
            for (int attempt = 1; have < file.Size && attempt <= options.MaxAttempts; attempt++)
            {
                if (attempt > 1)
                {
                    progress?.Report(new DownloadProgress(file.Path, have, file.Size, 0, null)
                    {
                        Status = $"retrying ({attempt} of {options.MaxAttempts}) after: {Reason(lastError)}",
                    });
                    // A stall has already waited a whole timeout; errors that come at once get a growing pause.
                    if (lastError is not TimeoutException && options.RetryDelay > TimeSpan.Zero)
                        await Task.Delay(options.RetryDelay * (attempt - 1), ct).ConfigureAwait(false);
                }
                try
                {
                    have = await TransferAsync(http, url, file, repoId, revision, stream, have, hasher, rate, progress, label, ct)
                        .ConfigureAwait(false);
                    lastError = null;
                }
                catch (Exception e) when (IsRetryable(e, ct))
                {
                    lastError = e;
                    await stream.FlushAsync(ct).ConfigureAwait(false);
                    have = stream.Length;
                }
            }

            if (have < file.Size)
            {
                string reason = Reason(lastError);
                throw new HubException(HubErrorKind.Network,
                    $"downloading {label} stopped after {have} of {file.Size} bytes ({reason}); run again to resume",
                    (lastError as HubException)?.StatusCode, lastError);
            }

            await stream.FlushAsync(ct).ConfigureAwait(false);
            var (ok, actual, expected) = hasher.Verify();
            if (!ok)
            {
                keepPart = false;
                throw new HubException(HubErrorKind.Integrity,
                    $"{label}: the downloaded file's {hasher.Algorithm} is {actual} but the Hub lists {expected}; "
                    + "the download was deleted (run again to retry)");
            }
            await stream.DisposeAsync().ConfigureAwait(false);
            File.Move(partPath, finalPath, overwrite: true);
            progress?.Report(new DownloadProgress(file.Path, file.Size, file.Size, rate.BytesPerSecond, TimeSpan.Zero));
        }
        catch (HubException e) when (e.Kind == HubErrorKind.Integrity)
        {
            keepPart = false;
            throw;
        }
        finally
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            if (!keepPart || (File.Exists(partPath) && new FileInfo(partPath).Length == 0)) TryDelete(partPath);
        }
    }

    /// <summary>One request: appends the body to <paramref name="stream"/> from <paramref name="have"/> on; returns the new length.</summary>
    private static async Task<long> TransferAsync(HubHttp http, Uri url, HubFile file, string repoId, string revision, FileStream stream,
        long have, ContentHasher hasher, TransferRate rate, IProgress<DownloadProgress>? progress, string label, CancellationToken ct)
    {
        using var response = await http.SendAsync(url, have > 0 ? have : null, label, ct).ConfigureAwait(false);
        switch (response.StatusCode)
        {
            case HttpStatusCode.PartialContent when response.Content.Headers.ContentRange?.From == have:
                break;
            case HttpStatusCode.OK:
            case HttpStatusCode.PartialContent:
            case HttpStatusCode.RequestedRangeNotSatisfiable when have > 0:
                // The server ignored or refused the range, or answered another one: start over.
                stream.SetLength(0);
                hasher.Reset();
                if (response.StatusCode != HttpStatusCode.OK)
                    throw new IOException($"the server answered HTTP {(int)response.StatusCode} to a resume from byte {have}; restarting");
                have = 0;
                break;
            default:
                throw http.ErrorFor(response, repoId, revision, file.Path);
        }

        stream.Seek(have, SeekOrigin.Begin);
        long sessionStart = have;
        long lastReport = 0;
        progress?.Report(new DownloadProgress(file.Path, have, file.Size, 0, null));

        using var readTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        readTimeout.CancelAfter(http.Timeout);
        await using var body = await response.Content.ReadAsStreamAsync(readTimeout.Token).ConfigureAwait(false);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            while (true)
            {
                readTimeout.CancelAfter(http.Timeout);
                int n;
                try
                {
                    n = await ReadReportingStallsAsync(body, buffer.AsMemory(0, BufferSize), readTimeout.Token, progress, file, have,
                        http.Timeout, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    throw new TimeoutException($"no data for {http.Timeout.TotalSeconds:0.#} s");
                }
                if (n == 0) break;
                if (have + n > file.Size)
                    throw new HubException(HubErrorKind.Integrity,
                        $"{label}: the server sent more than the {file.Size} bytes the Hub lists; the download was deleted");
                await stream.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                hasher.Append(buffer.AsSpan(0, n));
                have += n;

                long now = Stopwatch.GetTimestamp();
                if (progress is not null && Stopwatch.GetElapsedTime(lastReport, now) >= ReportInterval)
                {
                    lastReport = now;
                    rate.Add(have - sessionStart);
                    double speed = rate.BytesPerSecond;
                    TimeSpan? eta = speed > 0 ? TimeSpan.FromSeconds((file.Size - have) / speed) : null;
                    progress.Report(new DownloadProgress(file.Path, have, file.Size, speed, eta));
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        if (have < file.Size) throw new IOException($"the connection ended after {have} of {file.Size} bytes");
        return have;
    }

    private static string Reason(Exception? e) => e?.Message ?? "the server sent too few bytes";

    /// <summary>
    /// The next read of the body, reporting every second of silence past <see cref="StallNotice"/> (or half the timeout) as a status, so the
    /// progress line says the download is waiting rather than looking frozen.
    /// </summary>
    private static async Task<int> ReadReportingStallsAsync(Stream body, Memory<byte> buffer, CancellationToken readToken,
        IProgress<DownloadProgress>? progress, HubFile file, long have, TimeSpan timeout, CancellationToken ct)
    {
        var read = body.ReadAsync(buffer, readToken).AsTask();
        if (progress is null) return await read.ConfigureAwait(false);
        long start = Stopwatch.GetTimestamp();
        var notice = timeout / 2 < StallNotice ? timeout / 2 : StallNotice;
        while (!read.IsCompleted)
        {
            var tick = Task.Delay(StallTick, ct);
            if (await Task.WhenAny(read, tick).ConfigureAwait(false) == read) break;
            var silent = Stopwatch.GetElapsedTime(start);
            if (silent >= notice)
                progress.Report(new DownloadProgress(file.Path, have, file.Size, 0, null)
                {
                    Status = $"waiting: no data for {silent.TotalSeconds:0} s (a try ends after {timeout.TotalSeconds:0.#} s)",
                });
        }
        return await read.ConfigureAwait(false);
    }

    private static FileStream OpenPart(string partPath, string label)
    {
        try
        {
            return new FileStream(partPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, bufferSize: 0, FileOptions.Asynchronous);
        }
        catch (IOException e)
        {
            throw new HubException(HubErrorKind.Network,
                $"cannot open {partPath} for {label} (is another process downloading it?): {e.Message}", null, e);
        }
    }

    /// <summary>Feeds the bytes already in a .part file from an earlier run to the hasher.</summary>
    private static async Task HashExistingAsync(FileStream stream, long length, ContentHasher hasher, CancellationToken ct)
    {
        stream.Seek(0, SeekOrigin.Begin);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            long left = length;
            while (left > 0)
            {
                int n = await stream.ReadAsync(buffer.AsMemory(0, (int)Math.Min(BufferSize, left)), ct).ConfigureAwait(false);
                if (n == 0) throw new IOException($"{stream.Name} shrank while it was being read");
                hasher.Append(buffer.AsSpan(0, n));
                left -= n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static bool IsRetryable(Exception e, CancellationToken ct) => !ct.IsCancellationRequested && e switch
    {
        HubException h => h.Kind == HubErrorKind.Network,
        IOException or HttpRequestException or TimeoutException => true,
        _ => false,
    };

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
