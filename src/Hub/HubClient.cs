namespace Infer.Hub;

/// <summary>Resolves <c>owner/repo[:quant]</c> references to local GGUF files, downloading them from the Hugging Face Hub into the cache.</summary>
public static class HubClient
{
    /// <summary>
    /// The local paths of the model's file(s), first part first. When the cache's last listing of the repository revision
    /// selects files that are all present, no request is made; with <see cref="HubOptions.Offline"/> none ever is.
    /// Otherwise the repository is listed, the file(s) picked (see <see cref="HubOptions.HfFile"/> and the reference's quant)
    /// and every missing one downloaded, resumed and verified.
    /// </summary>
    /// <exception cref="HubException">With a <see cref="HubErrorKind"/> and a message naming the repository or file.</exception>
    public static async Task<IReadOnlyList<string>> ResolveAsync(ModelReference reference, HubOptions options,
        IProgress<DownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(options);
        var endpoint = options.Validate();
        string revision = options.Revision;
        string revisionDir = CacheLayout.RevisionDir(options.CacheDir, reference, revision);
        string manifestPath = CacheLayout.ManifestPath(revisionDir);
        string described = $"{reference} (revision {revision})";

        var manifest = CacheManifest.TryRead(manifestPath);
        if (manifest is not null)
        {
            var cached = TryResolveFromCache(manifest, reference, options, revisionDir, out var cacheMiss);
            if (cached is not null) return cached;
            if (options.Offline)
                throw new HubException(HubErrorKind.Offline,
                    $"{described}: {cacheMiss} and offline mode forbids downloading; run once without --offline");
        }
        else if (options.Offline)
        {
            throw new HubException(HubErrorKind.Offline,
                $"{described} is not in the cache {options.CacheDir} and offline mode forbids downloading; run once without --offline");
        }

        using var http = new HubHttp(endpoint, options);
        var listing = await http.ListFilesAsync(reference, revision, cancellationToken).ConfigureAwait(false);
        var selected = GgufSelector.Select(listing, reference.RepoId, revision, reference.Quant, options.HfFile);

        WriteManifest(manifestPath, listing, selected, reference, revision, endpoint);
        var paths = new List<string>(selected.Count);
        foreach (var file in selected)
        {
            string path = CacheLayout.FilePath(revisionDir, file.Path);
            if (!IsCachedCopy(path, file, manifest))
            {
                using var fileLock = await DownloadLock.AcquireAsync(path, pid => progress?.Report(WaitingFor(path, file, pid)), cancellationToken)
                    .ConfigureAwait(false);
                if (IsCachedCopy(path, file, manifest))
                {
                    // The process we waited for finished (and verified) this very file.
                    progress?.Report(new DownloadProgress(file.Path, file.Size, file.Size, 0, TimeSpan.Zero));
                }
                else
                {
                    DeleteIfExists(path);
                    var url = http.ResolveUri(reference, revision, file.Path);
                    await FileDownloader.DownloadAsync(http, url, file, reference.RepoId, revision, path, options, progress, cancellationToken)
                        .ConfigureAwait(false);
                }
            }
            paths.Add(path);
        }
        return paths;
    }

    /// <summary>Progress while another process holds the file's lock: how far its partial download has come.</summary>
    private static DownloadProgress WaitingFor(string path, HubFile file, int pid)
    {
        var part = new FileInfo(path + CacheLayout.PartSuffix);
        long done = part.Exists ? Math.Min(part.Length, Math.Max(file.Size - 1, 0)) : 0;
        string who = pid > 0 ? $"process {pid}" : "another process";
        return new DownloadProgress(file.Path, done, file.Size, 0, null) { Status = $"waiting for {who}, which is downloading it" };
    }

    /// <summary>The cached paths when the manifest selects files that are all present; else null and why.</summary>
    private static List<string>? TryResolveFromCache(CacheManifest manifest, ModelReference reference, HubOptions options, string revisionDir,
        out string miss)
    {
        IReadOnlyList<HubFile> selected;
        try
        {
            selected = GgufSelector.Select(manifest.ToHubFiles(), reference.RepoId, options.Revision, reference.Quant, options.HfFile);
        }
        catch (HubException e) when (e.Kind is HubErrorKind.NotFound or HubErrorKind.NoMatchingQuant or HubErrorKind.Ambiguous)
        {
            miss = $"the cached listing has no match ({e.Message})";
            return null;
        }

        var paths = new List<string>(selected.Count);
        foreach (var file in selected)
        {
            string path = CacheLayout.FilePath(revisionDir, file.Path);
            if (!File.Exists(path) || new FileInfo(path).Length != file.Size)
            {
                miss = $"{file.Path} is not in the cache {revisionDir}";
                return null;
            }
            paths.Add(path);
        }
        miss = "";
        return paths;
    }

    /// <summary>True when the file at <paramref name="path"/> has the listed size and the previous listing gave it the same digest.</summary>
    private static bool IsCachedCopy(string path, HubFile file, CacheManifest? previous)
    {
        var info = new FileInfo(path);
        if (!info.Exists || info.Length != file.Size) return false;
        var old = previous?.Files.FirstOrDefault(f => f.Path == file.Path);
        return old is null || (old.Sha256 == file.Sha256 && old.GitOid == file.GitOid);
    }

    /// <summary>Stores the revision's GGUF listing (and the selected files) for later offline resolution.</summary>
    private static void WriteManifest(string manifestPath, IReadOnlyList<HubFile> listing, IReadOnlyList<HubFile> selected,
        ModelReference reference, string revision, Uri endpoint)
    {
        var kept = listing.Where(f => f.Path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)).Concat(selected).DistinctBy(f => f.Path);
        var manifest = new CacheManifest
        {
            Repo = reference.RepoId,
            Revision = revision,
            Endpoint = endpoint.GetLeftPart(UriPartial.Authority),
            ListedAt = DateTimeOffset.UtcNow,
            Files = kept.Select(f => new ManifestFile { Path = f.Path, Size = f.Size, Sha256 = f.Sha256, GitOid = f.GitOid }).ToList(),
        };
        manifest.Write(manifestPath);
    }

    private static void DeleteIfExists(string path)
    {
        if (File.Exists(path)) File.Delete(path);
    }
}
