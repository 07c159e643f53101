using Infer.Cli.Terminal;
using Infer.Hub;

namespace Infer.Cli.Commands;

/// <summary><c>infer models</c> lists the cached Hugging Face files with their sizes; <c>infer models --rm REF</c> removes one.</summary>
internal static class ModelsCommand
{
    public static int Execute(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        var a = new Args(argv, []);
        string? remove = a.String("--rm");
        string? revision = a.String("--revision");
        a.EnsureAllUsed();
        string cache = new HubOptions().CacheDir;
        if (remove is not null)
        {
            var removed = ModelCache.Remove(cache, remove, revision);
            foreach (var r in removed) stdout.WriteLine($"removed {r.Reference} {r.File} ({ProgressBar.FormatSize(r.Size)})");
            return 0;
        }
        var entries = ModelCache.List(cache);
        if (entries.Count == 0)
        {
            stdout.WriteLine($"no cached models in {cache}");
            return 0;
        }
        stdout.WriteLine($"{"REFERENCE",-48} {"REVISION",-10} {"SIZE",10}  FILE");
        foreach (var e in entries)
            stdout.WriteLine($"{e.Reference,-48} {e.Revision,-10} {ProgressBar.FormatSize(e.Size),10}  {e.File}");
        stdout.WriteLine($"cache: {cache}");
        return 0;
    }
}
