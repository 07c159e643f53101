using System.Text.Json;
using System.Text.Json.Serialization;

namespace Infer.Hub;

/// <summary>The GGUF files a repository revision listed when it was last fetched; lets a later run pick the same files offline.</summary>
internal sealed class CacheManifest
{
    public const int CurrentVersion = 1;
    private const long MaxBytes = 16 << 20;

    public int Version { get; set; } = CurrentVersion;
    public string Repo { get; set; } = "";
    public string Revision { get; set; } = "";
    public string Endpoint { get; set; } = "";
    public DateTimeOffset ListedAt { get; set; }
    public List<ManifestFile> Files { get; set; } = [];

    public IReadOnlyList<HubFile> ToHubFiles() => Files.Select(f => new HubFile(f.Path, f.Size, f.Sha256, f.GitOid)).ToList();

    /// <summary>Reads a manifest; null when it is missing, unreadable, too large or from another version.</summary>
    public static CacheManifest? TryRead(string path)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists || info.Length > MaxBytes) return null;
            var manifest = JsonSerializer.Deserialize(File.ReadAllBytes(path), ManifestJsonContext.Default.CacheManifest);
            if (manifest is null || manifest.Version != CurrentVersion) return null;
            if (manifest.Files.Any(f => f.Path is null || !CacheLayout.IsSafeRelativePath(f.Path) || f.Size < 0)) return null;
            return manifest;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            return null;
        }
    }

    /// <summary>Writes through a temporary file and a rename, so a reader never sees half a manifest.</summary>
    public void Write(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string temp = $"{path}.{Guid.NewGuid():N}.tmp";
        try
        {
            File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(this, ManifestJsonContext.Default.CacheManifest));
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }
}

internal sealed class ManifestFile
{
    public string Path { get; set; } = "";
    public long Size { get; set; }
    public string? Sha256 { get; set; }
    public string? GitOid { get; set; }
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(CacheManifest))]
internal sealed partial class ManifestJsonContext : JsonSerializerContext;
