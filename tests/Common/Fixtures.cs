namespace Infer.Tests;

/// <summary>Locates the repository root and <c>../shared/fixtures</c> beside it.</summary>
internal static class Fixtures
{
    private static readonly Lazy<string> RepoRootLazy = new(FindRepoRoot);

    /// <summary>The folder that holds Runtime.sln.</summary>
    public static string RepoRoot => RepoRootLazy.Value;

    /// <summary>The shared fixtures folder (override with INFER_FIXTURES).</summary>
    public static string Root
    {
        get
        {
            var env = Environment.GetEnvironmentVariable("INFER_FIXTURES");
            if (!string.IsNullOrEmpty(env)) return Path.GetFullPath(env);
            var candidate = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "fixtures"));
            if (!Directory.Exists(candidate))
                throw new DirectoryNotFoundException($"fixtures not found at {candidate} (expected ../shared/fixtures beside the repository)");
            return candidate;
        }
    }

    public static string File(params string[] parts) => Path.Combine([Root, .. parts]);

    /// <summary>models/NAME/NAME.TYPE.gguf, for example Model("llama3", "bf16").</summary>
    public static string Model(string name, string type) => Path.Combine(Root, "models", name, $"{name}.{type}.gguf");

    public static string ModelDir(string name) => Path.Combine(Root, "models", name);

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null)
        {
            if (System.IO.File.Exists(Path.Combine(dir.FullName, "Runtime.sln"))) return dir.FullName;
            dir = dir.Parent;
        }
        throw new DirectoryNotFoundException("could not find the repository root (Runtime.sln) above " + AppContext.BaseDirectory);
    }
}
