namespace Infer.Kernels.Cpu.Backend;

/// <summary>The current batch, copied in by <see cref="CpuBackend.SetBatch"/>: (maxBatch) ids, positions and sequences.</summary>
internal sealed unsafe class BatchState
{
    public BatchState(NativeBuffers buffers, int maxBatch)
    {
        MaxBatch = maxBatch;
        Tokens = (int*)buffers.Alloc(sizeof(int) * (long)maxBatch);
        Positions = (int*)buffers.Alloc(sizeof(int) * (long)maxBatch);
        Sequences = (int*)buffers.Alloc(sizeof(int) * (long)maxBatch);
    }

    public int MaxBatch { get; }

    /// <summary>Tokens in the batch.</summary>
    public int N { get; private set; }

    /// <summary>Incremented by every <see cref="Set"/>: what was computed from the positions is stale when it differs.</summary>
    public int Version { get; private set; }

    public int* Tokens { get; }
    public int* Positions { get; }
    public int* Sequences { get; }

    public void Set(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> sequences)
    {
        if (tokens.Length > MaxBatch) throw new ArgumentException($"batch of {tokens.Length} tokens exceeds {MaxBatch}");
        if (positions.Length != tokens.Length || sequences.Length != tokens.Length)
            throw new ArgumentException("tokens, positions and sequences must have the same length");
        N = tokens.Length;
        Version++;
        tokens.CopyTo(new Span<int>(Tokens, N));
        positions.CopyTo(new Span<int>(Positions, N));
        sequences.CopyTo(new Span<int>(Sequences, N));
    }
}
