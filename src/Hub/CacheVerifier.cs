namespace Infer.Hub;

/// <summary>
/// One cached file checked against the digest its listing recorded. <paramref name="Ok"/> is null when the listing recorded
/// none (nothing to compare); <paramref name="Problem"/> says what differs.
/// </summary>
public sealed record VerifiedFile(CachedModel Entry, bool? Ok, string? Algorithm, string? Problem);

/// <summary>Re-hashes the cache (<c>infer models --verify</c>): a file changed after its download is found, not used as it is.</summary>
public static class CacheVerifier
{
    private const int BufferSize = 1 << 20;

    /// <summary>
    /// Every complete file of the cache, hashed and compared with the SHA-256 (or git blob id) and size of the manifest written
    /// when it was downloaded. <paramref name="progress"/> gets the bytes hashed per file.
    /// </summary>
    public static IReadOnlyList<VerifiedFile> Verify(string cacheDir, IProgress<DownloadProgress>? progress = null, CancellationToken ct = default)
    {
        var results = new List<VerifiedFile>();
        foreach (var entry in ModelCache.List(cacheDir).Where(e => e.Complete))
        {
            string revisionDir = ModelCache.RevisionDirOf(entry);
            var listed = CacheManifest.TryRead(CacheLayout.ManifestPath(revisionDir))?.Files.FirstOrDefault(f => f.Path == entry.File);
            if (listed is null || (listed.Sha256 is null && listed.GitOid is null))
            {
                results.Add(new VerifiedFile(entry, null, null, "no digest recorded for it"));
                continue;
            }
            var file = new HubFile(listed.Path, listed.Size, listed.Sha256, listed.GitOid);
            if (entry.Size != listed.Size)
            {
                results.Add(new VerifiedFile(entry, false, "size", $"{entry.Size} bytes, but the Hub listed {listed.Size}"));
                continue;
            }
            using var hasher = new ContentHasher(file);
            Hash(entry, hasher, progress, ct);
            var (ok, actual, expected) = hasher.Verify();
            results.Add(new VerifiedFile(entry, ok, hasher.Algorithm, ok ? null : $"{hasher.Algorithm} is {actual}, but the Hub listed {expected}"));
        }
        return results;
    }

    private static void Hash(CachedModel entry, ContentHasher hasher, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        using var stream = new FileStream(entry.Path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0);
        var buffer = new byte[BufferSize];
        long done = 0;
        int n;
        progress?.Report(new DownloadProgress(entry.File, 0, entry.Size, 0, null) { Status = "verifying" });
        while ((n = stream.Read(buffer)) > 0)
        {
            ct.ThrowIfCancellationRequested();
            hasher.Append(buffer.AsSpan(0, n));
            done += n;
            if (done < entry.Size) progress?.Report(new DownloadProgress(entry.File, done, entry.Size, 0, null) { Status = "verifying" });
        }
        progress?.Report(new DownloadProgress(entry.File, entry.Size, entry.Size, 0, TimeSpan.Zero));
    }
}
