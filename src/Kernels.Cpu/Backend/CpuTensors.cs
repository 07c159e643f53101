using System.Runtime.CompilerServices;
using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Backend;

/// <summary>A weight of the CPU backend: rows in the memory map (or caller memory), optionally a repacked copy.</summary>
internal sealed unsafe class CpuWeight : IWeight
{
    public required string Name { get; init; }
    public required GgmlType Type { get; init; }
    public required int Rows { get; init; }
    public required int Cols { get; init; }
    public required byte* Data { get; init; }      // (rows, RowBytes), in the memory map
    public required long RowBytes { get; init; }
    public required QuantKernel Kernel { get; init; }
    public float* Floats { get; init; }              // vectors only: (cols) float32
    private nint _repacked;

    /// <summary>
    /// (rows / 8 groups of kernel.RepackRows interleaved rows), or null: not repacked, or not yet (a background repack publishes it
    /// once every group is written; a matmul reads it once per call, and either layout gives the same products).
    /// </summary>
    public byte* Repacked { get => (byte*)Volatile.Read(ref _repacked); init => _repacked = (nint)value; }

    public int RepackedRows { get; init; }           // rows covered by Repacked (a multiple of 8); later rows use Data

    /// <summary>Makes a background repack's copy the one matmuls read (after every byte of it is written).</summary>
    internal void PublishRepacked(byte* repacked) => Volatile.Write(ref _repacked, (nint)repacked);
    public bool ReleasesMapped { get; init; }        // Data is a file mapping whose rows are released after each lookup (Embed)
}

/// <summary>
/// A float32 activation (rows, cols) in native memory. <see cref="Version"/> counts writes to its memory (for input-quantization
/// reuse), through it or any activation sharing that memory.
/// </summary>
internal sealed unsafe class CpuActivation : IActivation
{
    private readonly StrongBox<int> _version = new();

    public required int Rows { get; init; }
    public required int Cols { get; init; }
    public required float* Data { get; init; }

    /// <summary>The write count, shared by every activation over the same memory (<see cref="CpuBackend.AllocateShared"/>).</summary>
    public StrongBox<int> VersionBox { get => _version; init => _version = value; }

    public int Version { get => _version.Value; set => _version.Value = value; }

    public Span<float> Row(int r) => new(Data + (long)r * Cols, Cols);
}
