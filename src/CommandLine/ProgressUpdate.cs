namespace Infer.CommandLine;

/// <summary>
/// Where one task (a file's download, a model's load, a converter's output) stands: <paramref name="Done"/> of
/// <paramref name="Total"/> units, bytes unless <see cref="Bytes"/> is false (then only the percentage is shown).
/// </summary>
public sealed record ProgressUpdate(string Label, long Done, long Total)
{
    public bool Bytes { get; init; } = true;

    /// <summary>Transfer rate; null hides the rate and time left, 0 shows them as unknown.</summary>
    public double? BytesPerSecond { get; init; }

    public TimeSpan? Eta { get; init; }

    /// <summary>Why nothing moves ("waiting: no data for 12 s"), shown instead of the rate; null while it moves.</summary>
    public string? Status { get; init; }

    /// <summary>What is being worked on inside the task (the converter's tensor), after the numbers.</summary>
    public string? Detail { get; init; }

    /// <summary>The verb of the first line in a log ("downloading 10.0 MiB").</summary>
    public string? Verb { get; init; }

    public bool IsComplete => Total > 0 && Done >= Total;
}
