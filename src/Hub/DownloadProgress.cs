namespace Infer.Hub;

/// <summary>Progress of one file's download. <paramref name="BytesDone"/> includes bytes resumed from an earlier run; <paramref name="Eta"/> is null while the speed is unknown.</summary>
public sealed record DownloadProgress(string File, long BytesDone, long BytesTotal, double BytesPerSecond, TimeSpan? Eta)
{
    public bool IsComplete => BytesTotal > 0 && BytesDone >= BytesTotal;
}
