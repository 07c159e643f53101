using Infer.Hub;

namespace Infer.Cli;

/// <summary>Where a command's model comes from: <c>-m FILE</c>, or <c>-hf OWNER/REPO[:QUANT]</c> resolved through the Hugging Face cache.</summary>
internal sealed record ModelSource(string? Path, ModelReference? Reference, string? HfFile, string Revision, bool Offline,
    TimeSpan? Timeout = null, string? Token = null)
{
    /// <summary>The local file: the -m path, or the cached (downloaded if needed, with a progress bar) first part of the -hf model.</summary>
    public string Resolve(TextWriter stderr)
    {
        if (Path is not null) return Path;
        var defaults = new HubOptions();
        var options = new HubOptions
        {
            Revision = Revision, HfFile = HfFile, Offline = Offline || defaults.Offline, NetworkTimeout = Timeout ?? defaults.NetworkTimeout,
            Token = Token ?? defaults.Token,
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
