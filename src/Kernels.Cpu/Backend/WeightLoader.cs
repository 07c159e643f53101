using Infer.Kernels.Cpu.Quants;
using Infer.Kernels.Cpu.Threading;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Backend;

/// <summary>
/// Binds weights to their kernels: matrices stay where they are (the memory map); vectors are widened to float32; weights whose
/// type has interleaved 8-row kernels on this CPU are copied into that layout (in parallel over row groups, or afterwards on a
/// <see cref="BackgroundRepacker"/>), and the mapped rows they were copied from are then released from this process (the page
/// cache keeps them; the embedding lookup reads the few rows it needs back), so a repacked model is resident once, not twice.
/// </summary>
internal sealed unsafe class WeightLoader(NativeBuffers buffers, WorkerPool pool, bool repack, BackgroundRepacker? background)
{
    private readonly RepackWork _repack = new();
    private long _repackedAtLoad;

    /// <summary>Whether weights are repacked (at load, or in the background after it).</summary>
    public bool Repack { get; } = repack;

    /// <summary>Bytes of weights whose repacked copy is in use.</summary>
    public long RepackedBytes => _repackedAtLoad + (background?.PublishedBytes ?? 0);

    /// <param name="name">the tensor's name, for messages and profiles.</param>
    /// <param name="type">its element type.</param>
    /// <param name="rows">rows of the matrix (1 for a vector).</param>
    /// <param name="cols">elements per row.</param>
    /// <param name="data">rows × row bytes of <paramref name="type"/>.</param>
    /// <param name="mapped">data is a read-only file mapping (its pages may be released once repacked), not caller memory.</param>
    /// <param name="repack">false: never repacked (a table that is only looked up).</param>
    public CpuWeight Bind(string name, GgmlType type, int rows, int cols, byte* data, bool mapped = false, bool repack = true)
    {
        var kernel = QuantKernels.Get(type);
        long rowBytes = kernel.RowBytes(cols);
        float* floats = null;
        if (rows == 1)
        {
            floats = (float*)buffers.Alloc(sizeof(float) * (long)cols);
            kernel.Dequantize(data, floats, cols);
        }
        byte* repacked = null;
        int repackedRows = 0;
        if (Repack && repack && kernel.RepackRows > 0 && rows >= kernel.RepackRows)
        {
            repackedRows = rows / kernel.RepackRows * kernel.RepackRows;
            repacked = (byte*)buffers.Alloc(repackedRows * rowBytes); // untouched until written: resident only once repacked
            if (background is null)
            {
                _repack.Kernel = kernel;
                _repack.Source = data;
                _repack.Destination = repacked;
                _repack.RowBytes = rowBytes;
                _repack.Cols = cols;
                _repack.Groups = repackedRows / kernel.RepackRows;
                _repack.Next = 0;
                pool.Run(_repack);
                _repackedAtLoad += repackedRows * rowBytes;
                if (mapped) MemoryAdvice.ReleaseMapped(data, repackedRows * rowBytes);
            }
        }
        bool later = repacked != null && background is not null;
        var weight = new CpuWeight
        {
            Name = name, Type = type, Rows = rows, Cols = cols, Data = data, RowBytes = rowBytes, Kernel = kernel,
            Floats = floats, Repacked = later ? null : repacked, RepackedRows = repackedRows,
            // rows read only by lookups (a repacked copy does the matmuls, or there are none) leave the process after each read
            ReleasesMapped = mapped && rows > 1 && (repacked != null || !repack),
        };
        if (later) background!.Enqueue(weight, data, repacked, releaseSource: mapped);
        return weight;
    }

    /// <summary>Groups of rows handed out at a time, by the load's threads and by the background repack alike.</summary>
    internal const int ChunkGroups = 16;

    /// <summary>
    /// Repacks groups [<paramref name="start"/>, <paramref name="start"/> + <see cref="ChunkGroups"/>) (at most
    /// <paramref name="groups"/>) of <paramref name="kernel"/>.RepackRows rows of <paramref name="rowBytes"/> each from
    /// <paramref name="source"/> into <paramref name="destination"/>.
    /// </summary>
    internal static void RepackChunk(QuantKernel kernel, byte* source, byte* destination, long rowBytes, int cols, int start, int groups)
    {
        long groupBytes = kernel.RepackRows * rowBytes;
        for (int i = start; i < Math.Min(groups, start + ChunkGroups); i++)
            kernel.Repack(source + i * groupBytes, (nint)rowBytes, destination + i * groupBytes, cols);
    }

    /// <summary>
    /// Repacks groups of rows into the interleaved layout, handed out in chunks from a shared counter: a thread that loses its core
    /// for a while (the tokenizer is built beside the load) delays one chunk, not a fixed share of the tensor.
    /// </summary>
    private sealed class RepackWork : IParallelWork
    {
        public QuantKernel Kernel = null!;
        public byte* Source, Destination;
        public long RowBytes;
        public int Cols, Groups;
        public int Next;

        public void Execute(int thread, int threadCount)
        {
            while (true)
            {
                int start = (Interlocked.Increment(ref Next) - 1) * ChunkGroups;
                if (start >= Groups) break;
                RepackChunk(Kernel, Source, Destination, RowBytes, Cols, start, Groups);
            }
        }
    }
}
