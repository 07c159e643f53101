using System.CommandLine;
using Infer.Hub;

namespace Infer.Cli.Commands;

/// <summary>
/// <c>infer models</c> lists the cached Hugging Face files with their sizes (partial downloads too);
/// <c>infer models --rm REF</c> removes one; <c>infer models --verify</c> re-hashes every file against its listed digest.
/// </summary>
internal static class ModelsCommand
{
    public static Command Create(CliContext io)
    {
        var remove = new Option<string?>("--rm")
        {
            Description = "remove a cached model (all its files, or the QUANT's)", HelpName = "OWNER/REPO[:QUANT]",
        };
        var revision = new Option<string?>("--revision") { Description = "only this revision, with --rm", HelpName = "REV" };
        var verify = new Option<bool>("--verify") { Description = "re-hash every cached file against the SHA-256 the Hub listed" };
        var command = new Command("models", "list, remove or verify the models downloaded with -hf") { remove, revision, verify };
        command.SetAction(r =>
        {
            if (r.GetValue(verify) && r.GetValue(remove) is not null) throw new UsageException("give --rm REF or --verify, not both");
            return Execute(r.GetValue(remove), r.GetValue(revision), r.GetValue(verify), io.Out, io.Err);
        });
        return command;
    }

    private static int Execute(string? remove, string? revision, bool verify, TextWriter stdout, TextWriter stderr)
    {
        string cache = new HubOptions().CacheDir;
        if (remove is not null)
        {
            var removed = ModelCache.Remove(cache, remove, revision);
            foreach (var r in removed)
                stdout.WriteLine(r.File.Length == 0 ? $"removed {r.Reference} (revision {r.Revision}): an empty download folder"
                    : $"removed {r.Reference} {r.File} ({Units.FormatSize(r.Size)}{(r.Complete ? "" : ", incomplete")})");
            return 0;
        }
        if (verify) return Verify(cache, stdout, stderr);
        var entries = ModelCache.List(cache);
        if (entries.Count == 0)
        {
            stdout.WriteLine($"no cached models in {cache}");
            return 0;
        }
        stdout.WriteLine($"{"REFERENCE",-48} {"REVISION",-10} {"SIZE",10}  FILE");
        foreach (var e in entries)
            stdout.WriteLine($"{e.Reference,-48} {e.Revision,-10} {Units.FormatSize(e.Size),10}  {Describe(e)}");
        if (entries.Any(e => !e.Complete))
            stdout.WriteLine("incomplete downloads resume when the model is used again; 'infer models --rm OWNER/REPO' removes them");
        stdout.WriteLine($"cache: {cache}");
        return 0;
    }

    private static string Describe(CachedModel e) =>
        e.Complete ? e.File
        : e.File.Length == 0 ? "(incomplete: a listing, no file downloaded yet)"
        : $"{e.File} (incomplete{(e.ListedSize is long total ? $": {Units.FormatSize(e.Size)} of {Units.FormatSize(total)}" : "")})";

    private static int Verify(string cache, TextWriter stdout, TextWriter stderr)
    {
        // Hashing shows a bar on a terminal; in a log the result lines say it all.
        var bar = ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected ? ProgressBar.ForStandardError() : null;
        var results = CacheVerifier.Verify(cache, bar is null ? null : new DownloadBar(bar));
        bar?.Finish();
        foreach (var r in results)
        {
            string status = r.Ok switch { true => "ok", false => "CHANGED", null => "unchecked" };
            stdout.WriteLine($"{status,-9} {r.Entry.Reference} {r.Entry.File}{(r.Problem is null ? $" ({r.Algorithm})" : $": {r.Problem}")}");
        }
        var bad = results.Where(r => r.Ok == false).ToList();
        stdout.WriteLine($"{results.Count} files checked, {bad.Count} changed since they were downloaded");
        if (bad.Count == 0) return 0;
        foreach (var r in bad)
            stderr.WriteLine($"{r.Entry.Reference} {r.Entry.File} differs from the Hub's file: "
                + $"'infer models --rm {r.Entry.Reference}:{r.Entry.Quant}' removes it and the next use downloads it again");
        return 1;
    }
}
