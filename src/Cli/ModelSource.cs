using Infer.CommandLine;
using Infer.Hub;

namespace Infer.Cli;

/// <summary>Where a command's model comes from: <c>-m FILE</c>, or <c>-hf OWNER/REPO[:QUANT]</c> resolved through the Hugging Face cache.</summary>
internal sealed record ModelSource(string? Path, ModelReference? Reference, string? HfFile, string Revision, bool Offline, TimeSpan? Timeout = null)
{
    /// <summary>Reads -m/--model, -hf/--hf-repo, --hf-file, --revision, --offline, --timeout.</summary>
    public static ModelSource Read(Args a)
    {
        TimeSpan? timeout = null;
        if (a.String("--timeout") is not null)
        {
            float seconds = a.Float(0, "--timeout");
            if (!(seconds > 0)) throw new UsageException($"--timeout must be a positive number of seconds, got {seconds}");
            timeout = TimeSpan.FromSeconds(seconds);
        }
        string? path = a.String("-m", "--model");
        string? hf = a.String("-hf", "-hfr", "--hf-repo");
        string? hfFile = a.String("--hf-file", "-hff");
        string revision = a.String("--revision") ?? "main";
        bool offline = a.Flag("--offline");
        if (path is not null && hf is not null) throw new UsageException("give either -m FILE or -hf OWNER/REPO[:QUANT], not both");
        if (path is null && hf is null) throw new UsageException("missing -m MODEL (a GGUF file) or -hf OWNER/REPO[:QUANT]");
        ModelReference? reference = null;
        if (hf is not null && !ModelReference.TryParse(hf, out reference, out string? error))
            throw new UsageException($"-hf: {error}");
        return new ModelSource(path, reference, hfFile, revision, offline, timeout);
    }

    /// <summary>The local file: the -m path, or the cached (downloaded if needed, with a progress bar) first part of the -hf model.</summary>
    public string Resolve(TextWriter stderr)
    {
        if (Path is not null) return Path;
        var defaults = new HubOptions();
        var options = new HubOptions
        {
            Revision = Revision, HfFile = HfFile, Offline = Offline || defaults.Offline, NetworkTimeout = Timeout ?? defaults.NetworkTimeout,
        };
        var bar = ProgressBar.For(stderr);
        try
        {
            var paths = HubClient.ResolveAsync(Reference!, options, new DownloadBar(bar)).GetAwaiter().GetResult();
            bar.Finish();
            return paths[0];
        }
        catch
        {
            bar.Finish();
            throw;
        }
    }
}
