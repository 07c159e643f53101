namespace Infer.Hub;

/// <summary>
/// Progress of one file's download. <paramref name="BytesDone"/> includes bytes resumed from an earlier run;
/// <paramref name="Eta"/> is null while the speed is unknown.
/// </summary>
public sealed record DownloadProgress(string File, long BytesDone, long BytesTotal, double BytesPerSecond, TimeSpan? Eta)
{
    public bool IsComplete => BytesTotal > 0 && BytesDone >= BytesTotal;

    /// <summary>
    /// Why no bytes are arriving, for the progress line: "no data for 12 s", "waiting for process 4242, which is downloading
    /// it", "retrying (2 of 4)". Null while data flows.
    /// </summary>
    public string? Status { get; init; }
}
