using Infer.Kernels.Cpu.Quants;
using Infer.Kernels.Cpu.Threading;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Backend;

/// <summary>
/// Binds weights to their kernels: matrices stay where they are (the memory map); vectors are widened to float32; weights whose
/// type has interleaved 8-row kernels on this CPU are copied into that layout (in parallel over row groups).
/// </summary>
internal sealed unsafe class WeightLoader(NativeBuffers buffers, WorkerPool pool, bool repack)
{
    private readonly RepackWork _repack = new();

    /// <summary>Whether weights are repacked at load.</summary>
    public bool Repack { get; } = repack;

    /// <summary>Bytes of weights copied into repacked layout so far.</summary>
    public long RepackedBytes { get; private set; }

    public CpuWeight Bind(string name, GgmlType type, int rows, int cols, byte* data)
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
        if (Repack && kernel.RepackRows > 0 && rows >= kernel.RepackRows)
        {
            int g = kernel.RepackRows;
            repackedRows = rows / g * g;
            repacked = (byte*)buffers.Alloc(repackedRows * rowBytes);
            _repack.Kernel = kernel;
            _repack.Source = data;
            _repack.Destination = repacked;
            _repack.RowBytes = rowBytes;
            _repack.Cols = cols;
            _repack.Groups = repackedRows / g;
            pool.Run(_repack);
            RepackedBytes += repackedRows * rowBytes;
        }
        return new CpuWeight
        {
            Name = name, Type = type, Rows = rows, Cols = cols, Data = data, RowBytes = rowBytes, Kernel = kernel,
            Floats = floats, Repacked = repacked, RepackedRows = repackedRows,
        };
    }

    /// <summary>Repacks groups of rows into the interleaved layout, groups split across threads.</summary>
    private sealed class RepackWork : IParallelWork
    {
        public QuantKernel Kernel = null!;
        public byte* Source, Destination;
        public long RowBytes;
        public int Cols, Groups;

        public void Execute(int thread, int threadCount)
        {
            int g = Kernel.RepackRows;
            var (start, end) = WorkerPool.Split(Groups, thread, threadCount);
            for (int i = start; i < end; i++)
                Kernel.Repack(Source + (long)i * g * RowBytes, (nint)RowBytes, Destination + (long)i * g * RowBytes, Cols);
        }
    }
}
