namespace Infer.Hub;

/// <summary>
/// One downloaded file in the cache. <paramref name="Reference"/> is <c>owner/repo</c>; <paramref name="File"/> its path in the
/// repository. An incomplete entry is a partial download (<paramref name="Path"/> is the <c>.part</c> file) or, with an empty
/// <paramref name="File"/>, a revision folder that holds only the listing of a download that never started.
/// </summary>
public sealed record CachedModel(string Reference, string Revision, string File, long Size, string Path)
{
    public bool Complete { get; init; } = true;

    /// <summary>The size the Hub listed for the file, when the manifest has it.</summary>
    public long? ListedSize { get; init; }

    /// <summary>The quantization named in the file name ("Q8_0", "BF16"), or the name without ".gguf".</summary>
    public string Quant => GgufSelector.QuantLabel(File);
}

/// <summary>Lists and removes what <see cref="HubClient"/> downloaded.</summary>
public static class ModelCache
{
    /// <summary>
    /// Every GGUF file in the cache, complete or partly downloaded, and every revision folder left with nothing but its
    /// listing (a download that failed before its first byte), sorted by reference, revision and file.
    /// </summary>
    public static IReadOnlyList<CachedModel> List(string cacheDir)
    {
        var entries = new List<CachedModel>();
        if (!Directory.Exists(cacheDir)) return entries;
        foreach (var ownerDir in Directory.EnumerateDirectories(cacheDir))
        {
            foreach (var repoDir in Directory.EnumerateDirectories(ownerDir))
            {
                string owner = System.IO.Path.GetFileName(ownerDir), repo = System.IO.Path.GetFileName(repoDir);
                if (!ModelReference.TryParse($"{owner}/{repo}", out var reference, out _)) continue;
                foreach (var revisionDir in Directory.EnumerateDirectories(repoDir))
                {
                    string revision = CacheLayout.DecodeRevision(System.IO.Path.GetFileName(revisionDir));
                    var listed = CacheManifest.TryRead(CacheLayout.ManifestPath(revisionDir))?.Files.ToDictionary(f => f.Path, f => f.Size);
                    int before = entries.Count;
                    foreach (var file in Directory.EnumerateFiles(revisionDir, "*", SearchOption.AllDirectories))
                    {
                        bool part = file.EndsWith(".gguf" + CacheLayout.PartSuffix, StringComparison.OrdinalIgnoreCase);
                        if (!part && !file.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)) continue;
                        string relative = System.IO.Path.GetRelativePath(revisionDir, part ? file[..^CacheLayout.PartSuffix.Length] : file)
                            .Replace(System.IO.Path.DirectorySeparatorChar, '/');
                        long? size = listed is not null && listed.TryGetValue(relative, out long s) ? s : null;
                        entries.Add(new CachedModel(reference.RepoId, revision, relative, new FileInfo(file).Length, file)
                        {
                            Complete = !part, ListedSize = size,
                        });
                    }
                    if (entries.Count == before)
                        entries.Add(new CachedModel(reference.RepoId, revision, "", 0, CacheLayout.ManifestPath(revisionDir)) { Complete = false });
                }
            }
        }
        return entries
            .OrderBy(e => e.Reference, StringComparer.OrdinalIgnoreCase)
            .ThenBy(e => e.Revision, StringComparer.Ordinal)
            .ThenBy(e => e.File, StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>Removes the cached files of <c>owner/repo[:quant]</c>; see <see cref="Remove(string, ModelReference, string?)"/>.</summary>
    public static IReadOnlyList<CachedModel> Remove(string cacheDir, string reference, string? revision = null) =>
        Remove(cacheDir, ModelReference.Parse(reference), revision);

    /// <summary>
    /// Removes every cached file of the repository (of one revision when <paramref name="revision"/> is given), or with a quant
    /// only the file(s) that quant selects (all parts of a split model), with their partial downloads. A revision folder left
    /// without GGUF files is deleted with its manifest. Returns what was removed.
    /// </summary>
    /// <exception cref="HubException">NotFound when nothing cached matches.</exception>
    public static IReadOnlyList<CachedModel> Remove(string cacheDir, ModelReference reference, string? revision = null)
    {
        var candidates = List(cacheDir)
            .Where(e => e.Reference.Equals(reference.RepoId, StringComparison.OrdinalIgnoreCase) && (revision is null || e.Revision == revision))
            .ToList();
        var removed = new List<CachedModel>();
        foreach (var group in candidates.GroupBy(RevisionDirOf))
        {
            // A folder with only a listing goes with any reference to its repository: there is no file to tell quants apart.
            var files = group.Where(e => e.File.Length > 0).ToList();
            removed.AddRange(reference.Quant is null || files.Count == 0 ? group : SelectQuant(files, reference));
        }
        if (removed.Count == 0)
            throw new HubException(HubErrorKind.NotFound,
                $"nothing in the cache {cacheDir} matches {reference}{(revision is null ? "" : $" (revision {revision})")}");

        foreach (var entry in removed.Where(e => e.File.Length > 0))
        {
            string final = System.IO.Path.Combine(RevisionDirOf(entry), entry.File.Replace('/', System.IO.Path.DirectorySeparatorChar));
            foreach (var path in new[] { final, final + CacheLayout.PartSuffix })
                if (File.Exists(path)) File.Delete(path);
        }
        foreach (var revisionDir in removed.Select(RevisionDirOf).Distinct())
        {
            bool anyLeft = Directory.Exists(revisionDir) && Directory.EnumerateFiles(revisionDir, "*", SearchOption.AllDirectories)
                .Any(f => f.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)
                    || f.EndsWith(".gguf" + CacheLayout.PartSuffix, StringComparison.OrdinalIgnoreCase));
            if (!anyLeft && Directory.Exists(revisionDir)) Directory.Delete(revisionDir, recursive: true);
            DeleteIfEmpty(System.IO.Path.GetDirectoryName(revisionDir)!);
            DeleteIfEmpty(System.IO.Path.GetDirectoryName(System.IO.Path.GetDirectoryName(revisionDir)!)!);
        }
        return removed;
    }

    private static IEnumerable<CachedModel> SelectQuant(List<CachedModel> entries, ModelReference reference)
    {
        var files = entries.DistinctBy(e => e.File).Select(e => new HubFile(e.File, e.Size, null, null)).ToList();
        IReadOnlyList<HubFile> selected;
        try
        {
            selected = GgufSelector.Select(files, reference.RepoId, entries[0].Revision, reference.Quant, hfFile: null);
        }
        catch (HubException e) when (e.Kind is HubErrorKind.NoMatchingQuant or HubErrorKind.NotFound)
        {
            // A split model with parts missing from the cache: remove the parts that are there.
            return entries.Where(x => GgufSelector.SplitInfo(x.File).Key.Contains(reference.Quant!, StringComparison.OrdinalIgnoreCase)
                && GgufSelector.SplitInfo(x.File).Count > 1);
        }
        var names = selected.Select(f => f.Path).ToHashSet(StringComparer.Ordinal);
        return entries.Where(e => names.Contains(e.File));
    }

    /// <summary>{cache}/{owner}/{repo}/{revision} of an entry.</summary>
    internal static string RevisionDirOf(CachedModel entry)
    {
        string dir = entry.Path;
        foreach (var _ in entry.File.Length == 0 ? [""] : entry.File.Split('/')) dir = System.IO.Path.GetDirectoryName(dir)!;
        return dir;
    }

    private static void DeleteIfEmpty(string dir)
    {
        if (Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir);
    }
}
