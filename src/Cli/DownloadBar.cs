using Infer.Hub;

namespace Infer.Cli;

/// <summary>The Hub's download (and verification) progress drawn on the shared <see cref="ProgressBar"/>.</summary>
internal sealed class DownloadBar(ProgressBar bar) : IProgress<DownloadProgress>
{
    public void Report(DownloadProgress value) => bar.Report(ToUpdate(value));

    public static ProgressUpdate ToUpdate(DownloadProgress value) => new(value.File, value.BytesDone, value.BytesTotal)
    {
        BytesPerSecond = value.BytesPerSecond,
        Eta = value.Eta,
        Status = value.Status,
        Verb = "downloading",
    };
}
