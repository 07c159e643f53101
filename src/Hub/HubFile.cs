namespace Infer.Hub;

/// <summary>
/// One file of a repository as the Hub's tree API lists it. <paramref name="Sha256"/> is the LFS object id (null for files
/// kept in git); <paramref name="GitOid"/> is the git blob id (SHA-1).
/// </summary>
public sealed record HubFile(string Path, long Size, string? Sha256, string? GitOid)
{
    /// <summary>The last path segment.</summary>
    public string Name => Path[(Path.LastIndexOf('/') + 1)..];
}
