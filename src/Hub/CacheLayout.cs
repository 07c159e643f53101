namespace Infer.Hub;

/// <summary>
/// Where cached files live: <c>{cache}/{owner}/{repo}/{revision}/{path in repo}</c>, plus <c>manifest.json</c> per revision holding the
/// last GGUF listing, so that a later run resolves the same reference without the network. A download in progress is
/// <c>{file}.part</c>; only a complete, verified file gets its final name.
/// </summary>
internal static class CacheLayout
{
    public const string ManifestName = "manifest.json";
    public const string PartSuffix = ".part";
    private const int MaxPathLength = 1024;

    public static string RepoDir(string cacheDir, ModelReference reference) => Path.Combine(cacheDir, reference.Owner, reference.Repo);

    public static string RevisionDir(string cacheDir, ModelReference reference, string revision) =>
        Path.Combine(RepoDir(cacheDir, reference), EncodeRevision(revision));

    /// <summary>A revision as one folder name: "refs/pr/1" becomes "refs%2Fpr%2F1".</summary>
    public static string EncodeRevision(string revision) => Uri.EscapeDataString(revision);

    public static string DecodeRevision(string folderName) => Uri.UnescapeDataString(folderName);

    public static string FilePath(string revisionDir, string repoPath) =>
        Path.Combine(revisionDir, repoPath.Replace('/', Path.DirectorySeparatorChar));

    public static string ManifestPath(string revisionDir) => Path.Combine(revisionDir, ManifestName);

    public static void ValidateRevision(string? revision)
    {
        if (string.IsNullOrEmpty(revision) || revision.Length > 256 || revision.Contains('\\') || revision.Any(char.IsControl)
            || revision.Split('/').Any(s => s.Length == 0 || s == "." || s == ".."))
            throw new HubException(HubErrorKind.InvalidReference, $"invalid revision '{revision}' (expected a branch, tag or commit such as main)");
    }

    /// <summary>
    /// True for a non-empty relative path of '/'-separated segments without "." or "..", backslashes, colons or control
    /// characters.
    /// </summary>
    public static bool IsSafeRelativePath(string path)
    {
        if (path.Length == 0 || path.Length > MaxPathLength || path[0] == '/') return false;
        foreach (char c in path)
        {
            if (char.IsControl(c) || c == '\\' || c == ':') return false;
        }
        foreach (var segment in path.Split('/'))
        {
            if (segment.Length == 0 || segment == "." || segment == "..") return false;
        }
        return true;
    }
}
