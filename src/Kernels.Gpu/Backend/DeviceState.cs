using ILGPU;
using ILGPU.Runtime;
using Infer.Kernels.Gpu.Kernels;

namespace Infer.Kernels.Gpu.Backend;

/// <summary>
/// What every part of the GPU backend shares: the accelerator, the buffers to free, the launch counter, the reduction group
/// size, and the current batch on the device ([tokens | positions | sequences], n ints each).
/// </summary>
internal sealed class DeviceState : IDisposable
{
    private readonly List<IDisposable> _buffers = [];
    private readonly int[] _batchHost;

    public DeviceState(Accelerator accelerator, int maxBatch)
    {
        Acc = accelerator;
        MaxBatch = maxBatch;
        Group = 1;
        while (Group * 2 <= Math.Min(GpuKernels.MaxGroup, Acc.MaxNumThreadsPerGroup)) Group *= 2;
        _batchHost = new int[3 * maxBatch];
        Batch = Track(Acc.Allocate1D<int>(_batchHost.Length));
        NoScales = Track(Acc.Allocate1D<ushort>(1));
        NoFloats = Track(Acc.Allocate1D<float>(1));
        NoQuants = Track(Acc.Allocate1D<sbyte>(1));
    }

    public Accelerator Acc { get; }

    public int MaxBatch { get; }

    /// <summary>Threads per group for reductions (a power of two, at most <see cref="GpuKernels.MaxGroup"/>).</summary>
    public int Group { get; }

    /// <summary>[tokens | positions | sequences] of the current batch, <see cref="N"/> ints each.</summary>
    public MemoryBuffer1D<int, Stride1D.Dense> Batch { get; }

    /// <summary>Tokens in the current batch.</summary>
    public int N { get; private set; }

    /// <summary>Longest attended range in the batch (largest position + 1).</summary>
    public int MaxLength { get; private set; }

    /// <summary>Placeholders for views a kernel takes but does not read (a weight without scales, a part without a bias).</summary>
    public MemoryBuffer1D<ushort, Stride1D.Dense> NoScales { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> NoFloats { get; }
    public MemoryBuffer1D<sbyte, Stride1D.Dense> NoQuants { get; }

    /// <summary>Kernel launches and device-to-device copies issued so far (host transfers not included).</summary>
    public long Launches { get; private set; }

    /// <summary>Launches since the last <see cref="SetBatch"/>.</summary>
    public int LaunchesThisBatch { get; private set; }

    public bool IsCpuAccelerator => Acc.AcceleratorType == AcceleratorType.CPU;

    public T Track<T>(T buffer) where T : IDisposable
    {
        _buffers.Add(buffer);
        return buffer;
    }

    /// <summary>Frees a tracked buffer early (a regrown scratch); null is ignored.</summary>
    public void Release(IDisposable? buffer)
    {
        if (buffer is null) return;
        _buffers.Remove(buffer);
        buffer.Dispose();
    }

    public void Count()
    {
        Launches++;
        LaunchesThisBatch++;
    }

    public void SetBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> sequences)
    {
        int n = tokens.Length;
        if (n > MaxBatch) throw new ArgumentException($"batch of {n} tokens exceeds {MaxBatch}");
        if (positions.Length != n || sequences.Length != n) throw new ArgumentException("tokens, positions and sequences must have the same length");
        N = n;
        MaxLength = 0;
        for (int i = 0; i < n; i++) MaxLength = Math.Max(MaxLength, positions[i] + 1);
        // Packed as [tokens | positions | sequences], n each: one small upload per forward.
        tokens.CopyTo(_batchHost);
        positions.CopyTo(_batchHost.AsSpan(n));
        sequences.CopyTo(_batchHost.AsSpan(2 * n));
        if (n > 0) Batch.View.AsContiguous().SubView(0, 3 * n).CopyFromCPU(_batchHost.AsSpan(0, 3 * n));
        LaunchesThisBatch = 0;
    }

    /// <summary>
    /// Whether every tile of <paramref name="rowsPerTile"/> consecutive rows holds tokens of one sequence, the batch's tokens
    /// taking <paramref name="rowsPerToken"/> rows each in order (prefill attention's tiles of (token, query head) rows).
    /// </summary>
    public bool TilesShareSequences(int rowsPerTile, int rowsPerToken)
    {
        var seqs = _batchHost.AsSpan(2 * N, N);
        long rows = (long)N * rowsPerToken;
        for (long r0 = 0; r0 < rows; r0 += rowsPerTile)
        {
            int first = (int)(r0 / rowsPerToken), last = (int)((Math.Min(r0 + rowsPerTile, rows) - 1) / rowsPerToken);
            for (int t = first + 1; t <= last; t++)
                if (seqs[t] != seqs[first]) return false;
        }
        return true;
    }

    public void Dispose()
    {
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
    }
}
