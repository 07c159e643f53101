using System.Numerics.Tensors;
using Infer.Kernels.Cpu.Ops;
using Infer.Kernels.Cpu.Threading;
using Infer.Runtime.Backend;

namespace Infer.Kernels.Cpu.Backend;

/// <summary>The row-wise operations (embed, RMSNorm, bias, RoPE, SwiGLU, add), each split evenly over the batch rows across threads.</summary>
internal sealed unsafe class RowOps(NativeBuffers buffers, WorkerPool pool, BatchState batch)
{
    private readonly RowWork _work = new();

    // cos/sin of every batch row's position, (maxBatch, dims / 2) each: computed once per batch, shared by Q and K of all layers.
    private float* _ropeCos, _ropeSin;
    private int _ropeCapacity;
    private RopeConfig? _ropeTableFor;
    private int _ropeBatchVersion = -1;

    private enum Op { Embed, RmsNorm, AddBias, Rope, SwiGlu, Add }

    private void Run(Op op, CpuActivation x, CpuActivation? y = null, CpuWeight? weight = null, int rows = -1)
    {
        _work.Op = op;
        _work.Rows = rows < 0 ? batch.N : rows;
        _work.X = x;
        _work.Y = y!;
        _work.Weight = weight!;
        _work.Tokens = batch.Tokens;
        if ((long)_work.Rows * x.Cols <= InlineElements) _work.Execute(0, 1);
        else pool.Run(_work);
    }

    /// <summary>
    /// Work of at most this many elements (a decode step's rows: a few µs) runs on the calling thread: waking the pool and waiting at
    /// its barrier costs about as much, and on a busy machine a worker that has lost its core delays every small step of a token.
    /// </summary>
    internal const int InlineElements = 16384;

    public void Embed(CpuWeight table, CpuActivation x)
    {
        Run(Op.Embed, x, weight: table);
        x.Version++;
        if (table.ReleasesMapped) ReleaseLookedUpRows(table);
    }

    /// <summary>
    /// A mapped table whose file rows serve only these lookups (untied, or tied with a repacked copy for the output matmul): the
    /// kernel maps 64 KiB of the file around each faulting row (fault-around), so a few thousand distinct tokens would bring most of
    /// the table back into the process. The windows just read are released again (one madvise per row; the page cache keeps them).
    /// </summary>
    private void ReleaseLookedUpRows(CpuWeight table)
    {
        const long Window = 64 << 10;
        long tableStart = (long)table.Data, tableEnd = tableStart + (long)table.Rows * table.RowBytes;
        for (int r = 0; r < batch.N; r++)
        {
            long row = tableStart + batch.Tokens[r] * table.RowBytes;
            if (row >= tableEnd) continue;
            long start = Math.Max(tableStart, row / Window * Window), end = Math.Min(tableEnd, (row + table.RowBytes + Window - 1) / Window * Window);
            MemoryAdvice.ReleaseMapped((void*)start, end - start);
        }
    }

    public void RmsNorm(CpuActivation x, CpuWeight w, float eps, CpuActivation y, int rows)
    {
        if (w.Floats == null || x.Cols % w.Cols != 0)
            throw new ArgumentException($"'{w.Name}' cannot normalize rows of {x.Cols}");
        _work.Eps = eps;
        Run(Op.RmsNorm, x, y, w, rows);
        y.Version++;
    }

    public void AddBias(CpuActivation y, CpuWeight bias)
    {
        Run(Op.AddBias, y, weight: bias);
        y.Version++;
    }

    public void Rope(CpuActivation x, int headDim, RopeConfig rope)
    {
        EnsureRopeTable(rope);
        _work.HeadDim = headDim;
        _work.Rope = rope;
        _work.Cos = _ropeCos;
        _work.Sin = _ropeSin;
        Run(Op.Rope, x);
        x.Version++;
    }

    public void SwiGlu(CpuActivation gate, CpuActivation up)
    {
        Run(Op.SwiGlu, gate, up);
        gate.Version++;
    }

    public void Add(CpuActivation x, CpuActivation y)
    {
        Run(Op.Add, x, y);
        x.Version++;
    }

    private void EnsureRopeTable(RopeConfig rope)
    {
        if (ReferenceEquals(_ropeTableFor, rope) && _ropeBatchVersion == batch.Version) return;
        int half = rope.Dims / 2;
        if ((long)batch.MaxBatch * half > _ropeCapacity)
        {
            _ropeCapacity = checked(batch.MaxBatch * half);
            _ropeCos = (float*)buffers.Alloc(sizeof(float) * (long)_ropeCapacity);
            _ropeSin = (float*)buffers.Alloc(sizeof(float) * (long)_ropeCapacity);
        }
        for (int r = 0; r < batch.N; r++)
            rope.CosSin(batch.Positions[r], new Span<float>(_ropeCos + (long)r * half, half), new Span<float>(_ropeSin + (long)r * half, half));
        _ropeTableFor = rope;
        _ropeBatchVersion = batch.Version;
    }

    /// <summary>One row-wise operation over the batch rows, split evenly across threads.</summary>
    private sealed class RowWork : IParallelWork
    {
        public Op Op;
        public int Rows;
        public CpuActivation X = null!, Y = null!;
        public CpuWeight Weight = null!;
        public float Eps;
        public int HeadDim;
        public RopeConfig Rope = null!;
        public float* Cos, Sin;
        public int* Tokens;

        public void Execute(int thread, int threadCount)
        {
            var (start, end) = WorkerPool.Split(Rows, thread, threadCount);
            for (int r = start; r < end; r++) Row(r);
        }

        private void Row(int r)
        {
            switch (Op)
            {
                case Op.Embed:
                    Weight.Kernel.Dequantize(Weight.Data + Tokens[r] * Weight.RowBytes, X.Data + (long)r * X.Cols, X.Cols);
                    break;
                case Op.RmsNorm:
                    {
                        int g = Weight.Cols;
                        var w = new ReadOnlySpan<float>(Weight.Floats, g);
                        var x = X.Row(r);
                        var y = Y.Row(r);
                        for (int o = 0; o < x.Length; o += g) VectorOps.RmsNorm(x.Slice(o, g), w, Eps, y.Slice(o, g));
                        break;
                    }
                case Op.AddBias:
                    TensorPrimitives.Add(X.Row(r), new ReadOnlySpan<float>(Weight.Floats, Weight.Cols), X.Row(r));
                    break;
                case Op.Rope:
                    {
                        int half = Rope.Dims / 2;
                        var cos = new ReadOnlySpan<float>(Cos + (long)r * half, half);
                        var sin = new ReadOnlySpan<float>(Sin + (long)r * half, half);
                        var x = X.Row(r);
                        for (int o = 0; o < x.Length; o += HeadDim) VectorOps.RopeHead(x.Slice(o, HeadDim), Rope.Dims, Rope.NeoX, cos, sin);
                        break;
                    }
                case Op.SwiGlu:
                    VectorOps.SwiGlu(X.Row(r), Y.Row(r));
                    break;
                case Op.Add:
                    TensorPrimitives.Add(X.Row(r), Y.Row(r), X.Row(r));
                    break;
            }
        }
    }
}
