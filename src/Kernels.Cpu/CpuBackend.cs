using System.Runtime.InteropServices;
using Infer.Kernels.Cpu.Ops;
using Infer.Kernels.Cpu.Quants;
using Infer.Kernels.Cpu.Threading;
using Infer.Runtime;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu;

/// <summary>
/// The CPU implementation of the backend seam. Matrix weights stay in the memory map; vectors (norms, biases) are
/// widened to float32 at load. Activations live in 64-byte aligned native buffers allocated once. Every operation is
/// split across a persistent <see cref="WorkerPool"/>; nothing is allocated per token.
/// </summary>
public sealed unsafe class CpuBackend : IBackend
{
    private readonly WorkerPool _pool;
    private readonly List<nint> _allocations = [];
    private readonly int _maxBatch;

    // Current batch (copied in SetBatch).
    private int _n;
    private int* _tokens;
    private int* _positions;
    private int* _sequences;

    // KV cache: float32, [sequence][layer][kvHead][position][headDim] for K and V (see KvHead).
    private KvCacheConfig? _kv;
    private float* _kCache;
    private float* _vCache;

    // Per-thread scratch for the attention scores of one head (ContextLength floats).
    private float* _scratch;
    private int _scratchPerThread;

    // Activations quantized for the current matmul input; reused while the source is unchanged (Wq, Wk, Wv share one input).
    private byte* _quantized;
    private long _quantizedCapacity;
    private CpuActivation? _quantizedSource;
    private int _quantizedVersion;
    private nint _quantizedWith; // the quantizer that wrote the buffer
    private int _quantizedRows;

    /// <param name="threads">worker threads (0: all cores).</param>
    /// <param name="maxBatch">most tokens per forward call.</param>
    /// <param name="repack">repack weights whose type has interleaved 8-row kernels on this CPU (a copy made at load).</param>
    public CpuBackend(int threads = 0, int maxBatch = 512, bool repack = true)
    {
        Repack = repack;
        ThreadCount = threads > 0 ? threads : Environment.ProcessorCount;
        _pool = new WorkerPool(ThreadCount);
        _maxBatch = maxBatch;
        _tokens = (int*)Alloc(sizeof(int) * (long)maxBatch);
        _positions = (int*)Alloc(sizeof(int) * (long)maxBatch);
        _sequences = (int*)Alloc(sizeof(int) * (long)maxBatch);
        _blockStart = (int*)Alloc(sizeof(int) * (long)maxBatch);
        _blockTokens = (int*)Alloc(sizeof(int) * (long)maxBatch);
        _blockOrder = (long*)Alloc(sizeof(long) * (long)maxBatch);
        _matMul = new MatMulWork();
        _quantize = new QuantizeWork(this);
        _rows = new RowWork(this);
        _attention = new AttentionWork(this);
    }

    public int ThreadCount { get; }

    /// <summary>Whether weights are repacked at load into the interleaved layout of the 8-row kernels.</summary>
    public bool Repack { get; }

    /// <summary>Bytes of weights copied into repacked layout so far.</summary>
    public long RepackedBytes { get; private set; }
    public string Name => "cpu";
    public string Description => $"CPU, {ThreadCount} thread{(ThreadCount == 1 ? "" : "s")}, {SimdDescription()}";

    public WorkerPool Pool => _pool;

    private static string SimdDescription() =>
        System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? "AVX-512"
        : System.Runtime.Intrinsics.X86.Avx2.IsSupported ? "AVX2"
        : System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated ? "128-bit SIMD" : "scalar";

    private void* Alloc(long bytes)
    {
        void* p = NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 64), 64);
        _allocations.Add((nint)p);
        return p;
    }

    // ---- buffers ----

    internal sealed class CpuWeight : IWeight
    {
        public required string Name { get; init; }
        public required GgmlType Type { get; init; }
        public required int Rows { get; init; }
        public required int Cols { get; init; }
        public required byte* Data { get; init; }      // rows x RowBytes, in the memory map
        public required long RowBytes { get; init; }
        public required QuantKernel Kernel { get; init; }
        public float* Floats { get; init; }              // vectors only: Cols floats
        public byte* Repacked { get; init; }             // groups of kernel.RepackRows interleaved rows (rows / 8 groups), or null
        public int RepackedRows { get; init; }           // rows covered by Repacked (a multiple of 8); later rows use Data
    }

    internal sealed class CpuActivation : IActivation
    {
        public required int Rows { get; init; }
        public required int Cols { get; init; }
        public required float* Data { get; init; }
        public int Version;

        public Span<float> Row(int r) => new(Data + (long)r * Cols, Cols);
    }

    public IWeight LoadWeight(GgufTensor tensor)
    {
        if (!QuantKernels.IsSupported(tensor.Type))
            throw new UnsupportedModelException(null, $"tensor '{tensor.Name}' has type {GgmlTypeInfo.Name(tensor.Type)}, which this runtime does not support yet");
        return Bind(tensor.Name, tensor.Type, checked((int)tensor.RowCount), checked((int)tensor.RowLength), tensor.Data);
    }

    /// <summary>A matrix weight over caller-owned memory (rows x row bytes of <paramref name="type"/>), for benchmarks and tests.</summary>
    public IWeight CreateWeight(string name, GgmlType type, int rows, int cols, byte* data) => Bind(name, type, rows, cols, data);

    private CpuWeight Bind(string name, GgmlType type, int rows, int cols, byte* data)
    {
        var kernel = QuantKernels.Get(type);
        long rowBytes = kernel.RowBytes(cols);
        float* floats = null;
        if (rows == 1)
        {
            floats = (float*)Alloc(sizeof(float) * (long)cols);
            kernel.Dequantize(data, floats, cols);
        }
        byte* repacked = null;
        int repackedRows = 0;
        if (Repack && kernel.RepackRows > 0 && rows >= kernel.RepackRows)
        {
            int g = kernel.RepackRows;
            repackedRows = rows / g * g;
            repacked = (byte*)Alloc(repackedRows * rowBytes);
            _repack.Kernel = kernel;
            _repack.Source = data;
            _repack.Destination = repacked;
            _repack.RowBytes = rowBytes;
            _repack.Cols = cols;
            _repack.Groups = repackedRows / g;
            _pool.Run(_repack);
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

    private readonly RepackWork _repack = new();

    /// <summary>Host view of an activation buffer's first <paramref name="rows"/> rows, for callers that fill it (marks it written).</summary>
    public Span<float> View(IActivation x, int rows)
    {
        A(x).Version++;
        return new(A(x).Data, checked(rows * A(x).Cols));
    }

    public IActivation Allocate(int rows, int cols) =>
        new CpuActivation { Rows = rows, Cols = cols, Data = (float*)Alloc(sizeof(float) * (long)rows * cols) };

    public void CreateKvCache(KvCacheConfig config)
    {
        _kv = config;
        long elements = (long)config.Contexts * config.Layers * config.ContextLength * config.KvHeads * config.HeadDim;
        _kCache = (float*)Alloc(elements * sizeof(float));
        _vCache = (float*)Alloc(elements * sizeof(float));
        _scratchPerThread = (config.ContextLength + 15) / 16 * 16; // attention scores; whole cache lines per thread
        _scratch = (float*)Alloc((long)_scratchPerThread * ThreadCount * sizeof(float));
    }

    /// <summary>
    /// The cache rows of one KV head: [sequence][layer][kvHead][position][headDim], so a head's keys (or values) over all positions are
    /// one contiguous run that attention streams through (position-major rows of all heads put a head's rows 2+ KiB apart, a new page
    /// every few positions). Row p of the head is at the result + p · headDim.
    /// </summary>
    private float* KvHead(float* cache, int sequence, int layer, int kvHead)
    {
        var c = _kv!;
        return cache + ((((long)sequence * c.Layers + layer) * c.KvHeads + kvHead) * c.ContextLength) * c.HeadDim;
    }

    public void SetBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> sequences)
    {
        if (tokens.Length > _maxBatch) throw new ArgumentException($"batch of {tokens.Length} tokens exceeds {_maxBatch}");
        _n = tokens.Length;
        _ropeTableFor = null; // positions changed: the angles are recomputed on the next Rope
        tokens.CopyTo(new Span<int>(_tokens, _n));
        positions.CopyTo(new Span<int>(_positions, _n));
        sequences.CopyTo(new Span<int>(_sequences, _n));
    }

    private static CpuActivation A(IActivation a) => (CpuActivation)a;
    private static CpuWeight W(IWeight w) => (CpuWeight)w;

    // ---- simple row-parallel operations ----

    private enum RowOp { Embed, RmsNorm, AddBias, Rope, SwiGlu, Add }

    /// <summary>Runs one row-wise operation over the batch rows, split evenly across threads.</summary>
    private sealed class RowWork(CpuBackend b) : IParallelWork
    {
        public RowOp Op;
        public int Rows;
        public CpuActivation X = null!, Y = null!;
        public CpuWeight Weight = null!;
        public float Eps;
        public int HeadDim;
        public RopeConfig Rope = null!;

        public void Execute(int thread, int threadCount)
        {
            var (start, end) = WorkerPool.Split(Rows, thread, threadCount);
            for (int r = start; r < end; r++) Row(r, thread);
        }

        private void Row(int r, int thread)
        {
            switch (Op)
            {
                case RowOp.Embed:
                    {
                        int token = b._tokens[r];
                        Weight.Kernel.Dequantize(Weight.Data + token * Weight.RowBytes, X.Data + (long)r * X.Cols, X.Cols);
                        break;
                    }
                case RowOp.RmsNorm:
                    {
                        int g = Weight.Cols;
                        var w = new ReadOnlySpan<float>(Weight.Floats, g);
                        var x = X.Row(r);
                        var y = Y.Row(r);
                        for (int o = 0; o < x.Length; o += g) VectorOps.RmsNorm(x.Slice(o, g), w, Eps, y.Slice(o, g));
                        break;
                    }
                case RowOp.AddBias:
                    System.Numerics.Tensors.TensorPrimitives.Add(X.Row(r), new ReadOnlySpan<float>(Weight.Floats, Weight.Cols), X.Row(r));
                    break;
                case RowOp.Rope:
                    {
                        int half = Rope.Dims / 2;
                        var cos = new ReadOnlySpan<float>(b._ropeCos + (long)r * half, half);
                        var sin = new ReadOnlySpan<float>(b._ropeSin + (long)r * half, half);
                        var x = X.Row(r);
                        for (int o = 0; o < x.Length; o += HeadDim) VectorOps.RopeHead(x.Slice(o, HeadDim), Rope.Dims, Rope.NeoX, cos, sin);
                        break;
                    }
                case RowOp.SwiGlu:
                    VectorOps.SwiGlu(X.Row(r), Y.Row(r));
                    break;
                case RowOp.Add:
                    System.Numerics.Tensors.TensorPrimitives.Add(X.Row(r), Y.Row(r), X.Row(r));
                    break;
            }
        }
    }

    private readonly RowWork _rows;

    private void RunRows(RowOp op, CpuActivation x, CpuActivation? y = null, CpuWeight? weight = null, int rows = -1)
    {
        _rows.Op = op;
        _rows.Rows = rows < 0 ? _n : rows;
        _rows.X = x;
        _rows.Y = y!;
        _rows.Weight = weight!;
        _pool.Run(_rows);
    }

    public void Embed(IWeight table, IActivation x)
    {
        var w = W(table);
        RunRows(RowOp.Embed, A(x), weight: w);
        A(x).Version++;
    }

    public void RmsNorm(IActivation x, IWeight weight, float eps, IActivation y, int rows = -1)
    {
        var w = W(weight);
        if (w.Floats == null || A(x).Cols % w.Cols != 0)
            throw new ArgumentException($"'{w.Name}' cannot normalize rows of {A(x).Cols}");
        _rows.Eps = eps;
        RunRows(RowOp.RmsNorm, A(x), A(y), w, rows);
        A(y).Version++;
    }

    public void AddBias(IActivation y, IWeight bias)
    {
        RunRows(RowOp.AddBias, A(y), weight: W(bias));
        A(y).Version++;
    }

    public void Rope(IActivation x, int headDim, RopeConfig rope)
    {
        EnsureRopeTable(rope);
        _rows.HeadDim = headDim;
        _rows.Rope = rope;
        RunRows(RowOp.Rope, A(x));
        A(x).Version++;
    }

    // cos/sin of every batch row's position, (batch, dims/2) each: computed once per batch, shared by Q and K of all layers.
    private float* _ropeCos, _ropeSin;
    private int _ropeCapacity;
    private RopeConfig? _ropeTableFor;

    private void EnsureRopeTable(RopeConfig rope)
    {
        if (ReferenceEquals(_ropeTableFor, rope)) return;
        int half = rope.Dims / 2;
        if ((long)_maxBatch * half > _ropeCapacity)
        {
            _ropeCapacity = checked(_maxBatch * half);
            _ropeCos = (float*)Alloc(sizeof(float) * (long)_ropeCapacity);
            _ropeSin = (float*)Alloc(sizeof(float) * (long)_ropeCapacity);
        }
        for (int r = 0; r < _n; r++)
            rope.CosSin(_positions[r], new Span<float>(_ropeCos + (long)r * half, half), new Span<float>(_ropeSin + (long)r * half, half));
        _ropeTableFor = rope;
    }

    public void SwiGlu(IActivation gate, IActivation up)
    {
        RunRows(RowOp.SwiGlu, A(gate), A(up));
        A(gate).Version++;
    }

    public void Add(IActivation x, IActivation y)
    {
        RunRows(RowOp.Add, A(x), A(y));
        A(x).Version++;
    }

    public void GatherRows(IActivation src, ReadOnlySpan<int> rows, IActivation dst)
    {
        var s = A(src);
        var d = A(dst);
        for (int i = 0; i < rows.Length; i++) s.Row(rows[i]).CopyTo(d.Row(i));
        d.Version++;
    }

    public void ReadRow(IActivation x, int row, Span<float> destination) => A(x).Row(row).CopyTo(destination);

    // ---- matmul ----

    /// <summary>Quantizes the rows of the matmul input to the weight's vec-dot type, in parallel over rows.</summary>
    private sealed class QuantizeWork(CpuBackend b) : IParallelWork
    {
        public CpuActivation X = null!;
        public delegate*<float*, byte*, int, void> Quantizer;
        public int Rows;
        public long RowBytes;

        public void Execute(int thread, int threadCount)
        {
            var (start, end) = WorkerPool.Split(Rows, thread, threadCount);
            for (int r = start; r < end; r++)
                Quantizer(X.Data + (long)r * X.Cols, b._quantized + r * RowBytes, X.Cols);
        }
    }

    /// <summary>
    /// y[t, r] = dot(W[r], x[t]). Weight rows are handed out in chunks (a multiple of the tile rows); each chunk is multiplied with
    /// every token, a block of tokens at a time (sized so the block's activations stay in L2 while the chunk's rows pass over them),
    /// through the 16-row × TileTokens tile kernel where the type has one, else 8 rows × 4 tokens, so a chunk of weights is read
    /// from memory once per call.
    /// </summary>
    private sealed class MatMulWork : IParallelWork
    {
        /// <summary>Activation bytes per token block (<see cref="MatMulTokenBlockBytes"/>).</summary>
        public long TokenBlockBytes;

        /// <summary>Most floats of tile scales kept on a worker's stack (<see cref="MatMulMaxTileScratchFloats"/>).</summary>
        public int MaxTileScaleFloats;
        public CpuWeight W = null!;
        public CpuActivation Y = null!;
        public byte* X;
        public long XRowBytes;
        public int Tokens;
        public int ChunkRows;
        public int NextChunk;

        public void Execute(int thread, int threadCount)
        {
            var w = W;
            var k = w.Kernel;
            int rows = w.Rows;
            int tileTokens = k.RepackedTile != null ? k.TileTokens : 4;
            int block = (int)Math.Max(tileTokens, TokenBlockBytes / Math.Max(1, XRowBytes) / tileTokens * tileTokens);
            long scaleFloats = k.RepackedTile != null ? (long)w.Cols / k.BlockSize * k.TileScaleFloats : long.MaxValue;
            float* tileScales = null;
            if (scaleFloats <= MaxTileScaleFloats)
            {
                float* buffer = stackalloc float[(int)scaleFloats];
                tileScales = buffer;
            }
            while (true)
            {
                int chunk = Interlocked.Increment(ref NextChunk) - 1;
                int r0 = chunk * ChunkRows;
                if (r0 >= rows) break;
                int r1 = Math.Min(rows, r0 + ChunkRows);
                for (int t0 = 0; t0 < Tokens; t0 += block)
                    Multiply(r0, r1, t0, Math.Min(Tokens, t0 + block), tileScales);
            }
        }

        /// <summary>Rows r0..r1 of the weight times tokens t0..t1; <paramref name="tileScales"/> is scratch for one tile's scales, or null (no tile kernel).</summary>
        private void Multiply(int r0, int r1, int t0, int t1, float* tileScales)
        {
            var w = W;
            var k = w.Kernel;
            int cols = w.Cols, yCols = Y.Cols;
            float* results = stackalloc float[32];

            // Repacked groups of 8 rows: pairs of groups through the tile kernel, then single groups.
            int g = k.RepackRows;
            int rEnd = w.Repacked != null ? Math.Min(r1, w.RepackedRows) : r0;
            int r = r0;
            if (tileScales != null)
            {
                int tt = k.TileTokens;
                nint groupStride = (nint)(g * w.RowBytes);
                for (; r + QuantKernel.TileRows <= rEnd; r += QuantKernel.TileRows)
                {
                    byte* group = w.Repacked + r * w.RowBytes;
                    int t = t0;
                    if (t + tt <= t1) k.RepackedTileScales(cols, group, groupStride, tileScales);
                    for (; t + tt <= t1; t += tt)
                        k.RepackedTile(cols, group, groupStride, tileScales, X + t * XRowBytes, (nint)XRowBytes, Y.Data + (long)t * yCols + r, yCols);
                    for (; t < t1; t++)
                    {
                        float* y = Y.Data + (long)t * yCols + r;
                        k.RepackedDot(cols, group, X + t * XRowBytes, y);
                        k.RepackedDot(cols, group + groupStride, X + t * XRowBytes, y + g);
                    }
                }
            }
            for (; r < rEnd; r += g)
            {
                byte* group = w.Repacked + r * w.RowBytes;
                int t = t0;
                for (; t + 4 <= t1; t += 4)
                {
                    k.RepackedDot4(cols, group, X + t * XRowBytes, (nint)XRowBytes, results);
                    for (int c = 0; c < 4; c++)
                    {
                        float* y = Y.Data + (long)(t + c) * yCols + r;
                        for (int i = 0; i < g; i++) y[i] = results[c * 8 + i];
                    }
                }
                for (; t < t1; t++) k.RepackedDot(cols, group, X + t * XRowBytes, Y.Data + (long)t * yCols + r);
            }

            // Plain rows: 4 × 4 tiles where the type has them, then the 4-token dot for GEMM, the single dot for the rest.
            r = Math.Max(r0, rEnd);
            if (k.Dot4x4 != null && t1 - t0 >= 4)
            {
                for (; r + 4 <= r1; r += 4)
                {
                    byte* wr = w.Data + r * w.RowBytes;
                    int t = t0;
                    for (; t + 4 <= t1; t += 4)
                    {
                        k.Dot4x4(cols, wr, (nint)w.RowBytes, X + t * XRowBytes, (nint)XRowBytes, results);
                        for (int c = 0; c < 4; c++)
                            for (int i = 0; i < 4; i++) Y.Data[(long)(t + c) * yCols + r + i] = results[c * 4 + i];
                    }
                    for (; t < t1; t++)
                        for (int i = 0; i < 4; i++) Y.Data[(long)t * yCols + r + i] = k.Dot(cols, wr + i * w.RowBytes, X + t * XRowBytes);
                }
            }
            for (; r < r1; r++)
            {
                byte* wr = w.Data + r * w.RowBytes;
                int t = t0;
                for (; t + 4 <= t1; t += 4)
                {
                    k.Dot4(cols, wr, X + t * XRowBytes, (nint)XRowBytes, results);
                    for (int c = 0; c < 4; c++) Y.Data[(long)(t + c) * yCols + r] = results[c];
                }
                for (; t < t1; t++) Y.Data[(long)t * yCols + r] = k.Dot(cols, wr, X + t * XRowBytes);
            }
        }
    }

    private readonly QuantizeWork _quantize;
    private readonly MatMulWork _matMul;

    /// <summary>
    /// Activation bytes a matmul multiplies per pass over a row chunk: about a quarter of a 2 MB L2, leaving room for the chunk's
    /// weights. Tests lower it to exercise the token-block boundaries; it changes no result.
    /// </summary>
    internal long MatMulTokenBlockBytes { get; set; } = 512 * 1024;

    /// <summary>
    /// Most floats of tile scales a worker keeps on its stack (128 KiB: Q4_0 rows up to 65536 columns, Q4_K up to 58000); a wider
    /// weight uses the 8-row kernels. Tests set 0 to exercise that path.
    /// </summary>
    internal int MatMulMaxTileScratchFloats { get; set; } = 32 * 1024;

    public void MatMul(IWeight weight, IActivation x, IActivation y, int rows = -1)
    {
        var w = W(weight);
        var xa = A(x);
        var ya = A(y);
        int n = rows < 0 ? _n : rows;
        if (xa.Cols != w.Cols || ya.Cols < w.Rows)
            throw new ArgumentException($"matmul shape mismatch: '{w.Name}' is [{w.Rows} x {w.Cols}], input has {xa.Cols} columns, output {ya.Cols}");

        byte* input;
        long inputRowBytes;
        var kernel = w.Kernel;
        if (kernel.VecDotType == GgmlType.F32)
        {
            input = (byte*)xa.Data;
            inputRowBytes = (long)xa.Cols * sizeof(float);
        }
        else
        {
            // Activation rows as the kernels want them (Q8_0 rows carry per-block sums after the blocks, for the repacked kernels).
            var quantizer = kernel.QuantizeActivations;
            inputRowBytes = kernel.ActivationRowBytes(xa.Cols);
            if (!(ReferenceEquals(_quantizedSource, xa) && _quantizedVersion == xa.Version && _quantizedWith == (nint)quantizer && _quantizedRows >= n))
            {
                EnsureQuantizedCapacity(inputRowBytes * n);
                _quantize.X = xa;
                _quantize.Quantizer = quantizer;
                _quantize.Rows = n;
                _quantize.RowBytes = inputRowBytes;
                _pool.Run(_quantize);
                _quantizedSource = xa;
                _quantizedVersion = xa.Version;
                _quantizedWith = (nint)quantizer;
                _quantizedRows = n;
            }
            input = _quantized;
        }

        _matMul.W = w;
        _matMul.Y = ya;
        _matMul.X = input;
        _matMul.XRowBytes = inputRowBytes;
        _matMul.Tokens = n;
        _matMul.TokenBlockBytes = MatMulTokenBlockBytes;
        _matMul.MaxTileScaleFloats = MatMulMaxTileScratchFloats;
        // Enough chunks for balance (8 per thread), each large enough to amortize the hand-out, in whole tiles (16 rows) when the
        // weight has a tile kernel, else in whole repack groups.
        int unit = w.Repacked != null && kernel.RepackedTile != null ? QuantKernel.TileRows : 8;
        _matMul.ChunkRows = Math.Max(unit, w.Rows / (ThreadCount * 8)) / unit * unit;
        _matMul.NextChunk = 0;
        _pool.Run(_matMul);
        ya.Version++;
    }

    private void EnsureQuantizedCapacity(long bytes)
    {
        if (bytes <= _quantizedCapacity) return;
        if (_quantized != null)
        {
            _allocations.Remove((nint)_quantized);
            NativeMemory.AlignedFree(_quantized);
        }
        _quantized = (byte*)Alloc(bytes);
        _quantizedCapacity = bytes;
    }

    // ---- attention ----

    // Query blocks of the current batch for tiled attention: runs of consecutive batch tokens of one sequence, at most
    // FlashAttention.BlockTokens(group) long. (maxBatch) each.
    private int* _blockStart, _blockTokens;
    private long* _blockOrder; // (maxBatch) sort keys: most expensive block first, block index in the low 32 bits

    // Per-thread scratch of the tiled kernel, sized on the first multi-token batch.
    private float* _tileScratch;
    private long _tileScratchPerThread;

    /// <summary>
    /// Attention work. When no query block is worth a tile (decode, or one token per sequence, with a small GQA group), items
    /// are (token, head) pairs through <see cref="VectorOps.Attend"/>. Otherwise items are (query block, KV head) through
    /// <see cref="FlashAttention.Attend"/>, so every K/V row serves all the block's tokens and the group's heads (blocks too
    /// small for a tile go head by head inside their item); items are handed out from a shared counter, most expensive block
    /// first, so the threads finish together.
    /// </summary>
    private sealed class AttentionWork(CpuBackend b) : IParallelWork
    {
        public int Layer, NHeads, NKvHeads, HeadDim;
        public float Scale;
        public CpuActivation Q = null!, Output = null!;
        public bool Tiled;
        public int Blocks;
        public int NextItem;

        public void Execute(int thread, int threadCount)
        {
            if (Tiled) ExecuteTiled(thread);
            else ExecutePerHead(thread, threadCount);
        }

        /// <summary>
        /// (token, head) work, handed out a whole GQA group at a time when there are enough groups to keep every thread busy: one
        /// thread then reads a KV head's cache rows and its other query heads find them in its L2 (long contexts).
        /// </summary>
        private void ExecutePerHead(int thread, int threadCount)
        {
            int group = NHeads / NKvHeads;
            int perItem = b._n * NKvHeads >= 2 * threadCount ? group : 1;
            int items = b._n * NHeads / perItem;
            var scores = Scores(thread);
            while (true)
            {
                int item = Interlocked.Increment(ref NextItem) - 1;
                if (item >= items) break;
                int first = item * perItem;
                int t = first / NHeads, h = first % NHeads;
                if (perItem == group) AttendGroup(t, h / group, thread);
                else AttendHead(t, h, scores);
            }
        }

        /// <summary>
        /// Token t's query heads of one KV head: past <see cref="GroupDecodePositions"/> through <see cref="VectorOps.AttendGroup"/>
        /// (the cache rows read once for the group, scores in the worker's tile scratch), else head by head.
        /// </summary>
        private void AttendGroup(int t, int kvHead, int thread)
        {
            int group = NHeads / NKvHeads, pos = b._positions[t];
            if (group == 1 || pos + 1 < GroupDecodePositions || HeadDim % 8 != 0 || !System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated)
            {
                var scores = Scores(thread);
                for (int g = 0; g < group; g++) AttendHead(t, kvHead * group + g, scores);
                return;
            }
            int seq = b._sequences[t];
            int headOffset = kvHead * group * HeadDim;
            VectorOps.AttendGroup(Q.Data + (long)t * Q.Cols + headOffset, group, HeadDim,
                b.KvHead(b._kCache, seq, Layer, kvHead), b.KvHead(b._vCache, seq, Layer, kvHead), HeadDim,
                pos + 1, Scale, b._tileScratch + thread * b._tileScratchPerThread, Output.Data + (long)t * Output.Cols + headOffset);
        }

        private void ExecuteTiled(int thread)
        {
            int items = Blocks * NKvHeads;
            int group = NHeads / NKvHeads;
            int kvDim = NKvHeads * HeadDim;
            float* scratch = b._tileScratch + thread * b._tileScratchPerThread;
            while (true)
            {
                int item = Interlocked.Increment(ref NextItem) - 1;
                if (item >= items) break;
                int block = (int)(b._blockOrder[item / NKvHeads] & 0xFFFFFFFF), kvHead = item % NKvHeads;
                int t0 = b._blockStart[block], tokens = b._blockTokens[block];
                if (!FlashAttention.Worthwhile(tokens, group))
                {
                    for (int t = t0; t < t0 + tokens; t++) AttendGroup(t, kvHead, thread);
                    continue;
                }
                int seq = b._sequences[t0];
                int headOffset = kvHead * group * HeadDim;
                FlashAttention.Attend(
                    Q.Data + (long)t0 * Q.Cols + headOffset, Q.Cols, Output.Data + (long)t0 * Output.Cols + headOffset, Output.Cols,
                    b._positions + t0, tokens, group, HeadDim,
                    b.KvHead(b._kCache, seq, Layer, kvHead), b.KvHead(b._vCache, seq, Layer, kvHead), HeadDim,
                    Scale, scratch);
            }
        }

        private Span<float> Scores(int thread) => new(b._scratch + (long)thread * b._scratchPerThread, b._kv!.ContextLength);

        /// <summary>Head h of token t over its sequence's cache positions 0..pos.</summary>
        private void AttendHead(int t, int h, Span<float> scores)
        {
            int kvHead = h / (NHeads / NKvHeads);
            int seq = b._sequences[t], pos = b._positions[t];
            float* keys = b.KvHead(b._kCache, seq, Layer, kvHead);
            float* values = b.KvHead(b._vCache, seq, Layer, kvHead);
            VectorOps.Attend(Q.Row(t).Slice(h * HeadDim, HeadDim), keys, values, HeadDim, pos + 1, Scale, scores, Output.Row(t).Slice(h * HeadDim, HeadDim));
        }
    }

    private readonly AttentionWork _attention;

    /// <summary>
    /// Context length from which a decode token's GQA group is attended together (<see cref="VectorOps.AttendGroup"/>): each cache row
    /// is then read once per group instead of once per query head, and at long contexts decode attention is bound by those reads.
    /// </summary>
    internal const int GroupDecodePositions = 1024;

    public void Attention(int layer, IActivation q, IActivation k, IActivation v, IActivation output, int nHeads, int nKvHeads, int headDim, float scale)
    {
        var kv = _kv ?? throw new InvalidOperationException("CreateKvCache was not called");
        if (nKvHeads != kv.KvHeads || headDim != kv.HeadDim || nHeads % nKvHeads != 0)
            throw new ArgumentException($"attention with {nHeads} heads over {nKvHeads} KV heads of {headDim} does not fit the KV cache ({kv.KvHeads} KV heads of {kv.HeadDim})");
        var ka = A(k);
        var va = A(v);
        int kvDim = nKvHeads * headDim;
        for (int t = 0; t < _n; t++)
        {
            for (int h = 0; h < nKvHeads; h++)
            {
                long row = (long)_positions[t] * headDim;
                ka.Row(t).Slice(h * headDim, headDim).CopyTo(new Span<float>(KvHead(_kCache, _sequences[t], layer, h) + row, headDim));
                va.Row(t).Slice(h * headDim, headDim).CopyTo(new Span<float>(KvHead(_vCache, _sequences[t], layer, h) + row, headDim));
            }
        }
        int group = nHeads / nKvHeads;
        int blockTokens = FlashAttention.BlockTokens(group);
        int blocks = PlanQueryBlocks(blockTokens, group, out bool anyTile, out int maxPosition);
        _attention.Tiled = anyTile;
        if (_attention.Tiled) EnsureTileScratch(FlashAttention.ScratchFloats(blockTokens, group, headDim));
        // grouped decode past GroupDecodePositions keeps a group's scores (group × context floats) in the same scratch
        if (group > 1 && maxPosition + 1 >= GroupDecodePositions) EnsureTileScratch((long)group * kv.ContextLength);
        _attention.Blocks = blocks;
        _attention.Layer = layer;
        _attention.NHeads = nHeads;
        _attention.NKvHeads = nKvHeads;
        _attention.HeadDim = headDim;
        _attention.Scale = scale;
        _attention.Q = A(q);
        _attention.Output = A(output);
        _attention.NextItem = 0;
        _pool.Run(_attention);
        A(output).Version++;
    }

    // ---- host copies (layer split: the hidden state crosses between backends) ----

    public void ReadRows(IActivation x, int rows, Span<float> destination)
    {
        var xa = A(x);
        if ((uint)rows > (uint)xa.Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"{rows} rows requested of an activation with {xa.Rows}");
        new ReadOnlySpan<float>(xa.Data, checked(rows * xa.Cols)).CopyTo(destination);
    }

    public void WriteRows(IActivation x, ReadOnlySpan<float> source)
    {
        var xa = A(x);
        if (source.Length % xa.Cols != 0 || source.Length / xa.Cols > xa.Rows)
            throw new ArgumentException($"{source.Length} floats are not whole rows of an activation [{xa.Rows}, {xa.Cols}]");
        source.CopyTo(new Span<float>(xa.Data, source.Length));
        xa.Version++;
    }

    /// <summary>
    /// Splits the batch into query blocks (runs of consecutive tokens of one sequence, at most <paramref name="blockTokens"/>)
    /// and orders them by cost (tokens × positions attended), largest first. Returns the block count; <paramref name="anyTile"/>
    /// tells whether some block is worth the tiled kernel, <paramref name="maxPosition"/> is the batch's largest position.
    /// </summary>
    private int PlanQueryBlocks(int blockTokens, int group, out bool anyTile, out int maxPosition)
    {
        int blocks = 0;
        anyTile = false;
        maxPosition = 0;
        for (int t = 0; t < _n;)
        {
            int start = t, maxPos = _positions[t];
            for (t++; t < _n && t - start < blockTokens && _sequences[t] == _sequences[start]; t++) maxPos = Math.Max(maxPos, _positions[t]);
            long cost = Math.Min((long)(t - start) * (maxPos + 1), int.MaxValue);
            _blockStart[blocks] = start;
            _blockTokens[blocks] = t - start;
            _blockOrder[blocks] = ((int.MaxValue - cost) << 32) | (uint)blocks;
            anyTile |= FlashAttention.Worthwhile(t - start, group);
            maxPosition = Math.Max(maxPosition, maxPos);
            blocks++;
        }
        if (anyTile) new Span<long>(_blockOrder, blocks).Sort();
        return blocks;
    }

    private void EnsureTileScratch(long floatsPerThread)
    {
        floatsPerThread = (floatsPerThread + 15) / 16 * 16; // whole cache lines per thread
        if (floatsPerThread <= _tileScratchPerThread) return;
        if (_tileScratch != null)
        {
            _allocations.Remove((nint)_tileScratch);
            NativeMemory.AlignedFree(_tileScratch);
        }
        _tileScratch = (float*)Alloc(floatsPerThread * ThreadCount * sizeof(float));
        _tileScratchPerThread = floatsPerThread;
    }

    public void Dispose()
    {
        _pool.Dispose();
        foreach (var p in _allocations) NativeMemory.AlignedFree((void*)p);
        _allocations.Clear();
        _quantized = null;
    }
}
