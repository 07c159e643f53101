using Infer.Kernels.Cpu.Backend;
using Infer.Kernels.Cpu.Quants;
using Infer.Kernels.Cpu.Threading;
using Infer.Runtime;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu;

/// <summary>
/// The CPU implementation of the backend seam, wiring its parts: <see cref="WeightLoader"/> (weights in the memory map, vectors
/// widened, repacking), <see cref="RowOps"/>, <see cref="MatMulDriver"/> and <see cref="AttentionDriver"/> (with the KV cache).
/// Activations live in 64-byte aligned native buffers allocated once. Every operation is split across a persistent
/// <see cref="WorkerPool"/>; nothing is allocated per token. The fused operations run as their primitives
/// (<see cref="ComposedOps"/>): Q, K and V already share one quantized input, and fusing further does not pay on a CPU.
/// </summary>
public sealed unsafe class CpuBackend : IBackend
{
    private readonly WorkerPool _pool;
    private readonly NativeBuffers _buffers = new();
    private readonly BatchState _batch;
    private readonly WeightLoader _weights;
    private readonly RowOps _rows;
    private readonly MatMulDriver _matMul;
    private readonly AttentionDriver _attention;
    private readonly BackgroundRepacker? _background;

    /// <param name="threads">worker threads (0: all cores).</param>
    /// <param name="maxBatch">most tokens per forward call.</param>
    /// <param name="repack">repack weights whose type has interleaved 8-row kernels on this CPU (a copy made at load).</param>
    /// <param name="repackInBackground">make that copy on a background thread after each weight loads, not during the load: the
    /// model runs at once, on the plain kernels until each copy is ready (<see cref="WaitForRepack"/> waits for all).</param>
    public CpuBackend(int threads = 0, int maxBatch = 512, bool repack = true, bool repackInBackground = false)
    {
        ThreadCount = threads > 0 ? threads : Environment.ProcessorCount;
        _pool = new WorkerPool(ThreadCount);
        _batch = new BatchState(_buffers, maxBatch);
        _background = repack && repackInBackground ? new BackgroundRepacker() : null;
        _weights = new WeightLoader(_buffers, _pool, repack, _background);
        _rows = new RowOps(_buffers, _pool, _batch);
        _matMul = new MatMulDriver(_buffers, _pool);
        _attention = new AttentionDriver(_buffers, _pool, _batch);
    }

    public int ThreadCount { get; }

    /// <summary>Whether weights are repacked into the interleaved layout of the 8-row kernels (at load, or in the background after it).</summary>
    public bool Repack => _weights.Repack;

    /// <summary>Bytes of weights whose repacked copy the matmuls use (so far, with a background repack).</summary>
    public long RepackedBytes => _weights.RepackedBytes;

    /// <summary>Whether a background repack still has weights to copy.</summary>
    public bool RepackPending => _background?.Pending ?? false;

    /// <summary>Blocks until the background repack (if any) has published every weight loaded so far.</summary>
    /// <exception cref="InvalidOperationException">a weight's repack failed (it keeps running on the plain kernels).</exception>
    public void WaitForRepack() => _background?.WaitForAll();

    /// <summary>The background repacker, for tests that hold it (<see cref="BackgroundRepacker.Gate"/>); null without one.</summary>
    internal BackgroundRepacker? Background => _background;

    public string Name => "cpu";
    public string Description => $"CPU, {ThreadCount} thread{(ThreadCount == 1 ? "" : "s")}, {SimdDescription()}";

    public WorkerPool Pool => _pool;

    /// <summary>See <see cref="MatMulDriver.TokenBlockBytes"/> (tests lower it).</summary>
    internal long MatMulTokenBlockBytes { get => _matMul.TokenBlockBytes; set => _matMul.TokenBlockBytes = value; }

    /// <summary>See <see cref="MatMulDriver.MaxTileScratchFloats"/> (tests set 0).</summary>
    internal int MatMulMaxTileScratchFloats { get => _matMul.MaxTileScratchFloats; set => _matMul.MaxTileScratchFloats = value; }

    /// <summary>See <see cref="MatMulDriver.ConvertMinTokens"/> (tests lower it).</summary>
    internal int MatMulConvertMinTokens { get => _matMul.ConvertMinTokens; set => _matMul.ConvertMinTokens = value; }

    /// <summary>See <see cref="AttentionDriver.GroupDecodePositions"/>.</summary>
    internal const int GroupDecodePositions = AttentionDriver.GroupDecodePositions;

    private static string SimdDescription() =>
        System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? "AVX-512"
        : System.Runtime.Intrinsics.X86.Avx2.IsSupported ? "AVX2"
        : System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated ? "128-bit SIMD" : "scalar";

    private static CpuActivation A(IActivation a) => (CpuActivation)a;
    private static CpuWeight W(IWeight w) => (CpuWeight)w;
    private int Rows(int rows) => rows < 0 ? _batch.N : rows;

    // ---- buffers ----

    public IWeight LoadWeight(GgufTensor tensor)
    {
        if (!QuantKernels.IsSupported(tensor.Type))
            throw new UnsupportedModelException(null,
                $"tensor '{tensor.Name}' has type {GgmlTypeInfo.Name(tensor.Type)}, which this runtime does not support yet");
        return _weights.Bind(tensor.Name, tensor.Type, checked((int)tensor.RowCount), checked((int)tensor.RowLength), tensor.Data, mapped: true);
    }

    /// <summary>The table stays in the file's layout (mapped): lookups dequantize single rows, which need no repacked copy.</summary>
    public IWeight LoadEmbeddingTable(GgufTensor tensor)
    {
        if (!QuantKernels.IsSupported(tensor.Type))
            throw new UnsupportedModelException(null,
                $"tensor '{tensor.Name}' has type {GgmlTypeInfo.Name(tensor.Type)}, which this runtime does not support yet");
        return _weights.Bind(tensor.Name, tensor.Type, checked((int)tensor.RowCount), checked((int)tensor.RowLength), tensor.Data,
            mapped: true, repack: false);
    }

    /// <summary>A matrix weight over caller-owned memory (rows x row bytes of <paramref name="type"/>), for benchmarks and tests.</summary>
    public IWeight CreateWeight(string name, GgmlType type, int rows, int cols, byte* data) => _weights.Bind(name, type, rows, cols, data);

    public IActivation Allocate(int rows, int cols) =>
        new CpuActivation { Rows = rows, Cols = cols, Data = (float*)_buffers.Alloc(sizeof(float) * (long)rows * cols) };

    /// <summary>The first rows x cols floats of <paramref name="parent"/>'s memory, with its write count (see the interface).</summary>
    public IActivation AllocateShared(IActivation parent, int rows, int cols)
    {
        var p = A(parent);
        if ((long)rows * cols > (long)p.Rows * p.Cols)
            throw new ArgumentException($"a {rows} x {cols} activation does not fit in one of {p.Rows} x {p.Cols}");
        return new CpuActivation { Rows = rows, Cols = cols, Data = p.Data, VersionBox = p.VersionBox };
    }

    /// <summary>Host view of an activation buffer's first <paramref name="rows"/> rows, for callers that fill it (marks it written).</summary>
    public Span<float> View(IActivation x, int rows)
    {
        A(x).Version++;
        return new(A(x).Data, checked(rows * A(x).Cols));
    }

    /// <summary>Every <see cref="KvCacheType"/>: the attention kernels read F16 and Q8_0 caches directly.</summary>
    public bool SupportsKvCacheType(KvCacheType type) => AttentionDriver.Supports(type);

    public void CreateKvCache(KvCacheConfig config) => _attention.CreateKvCache(config);

    public void SetBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> sequences) =>
        _batch.Set(tokens, positions, sequences);

    // ---- primitives ----

    public void Embed(IWeight table, IActivation x) => _rows.Embed(W(table), A(x));

    public void RmsNorm(IActivation x, IWeight weight, float eps, IActivation y, int rows = -1) =>
        _rows.RmsNorm(A(x), W(weight), eps, A(y), Rows(rows));

    public void MatMul(IWeight w, IActivation x, IActivation y, int rows = -1) => _matMul.MatMul(W(w), A(x), A(y), Rows(rows));

    public void AddBias(IActivation y, IWeight bias) => _rows.AddBias(A(y), W(bias));

    public void Rope(IActivation x, int headDim, RopeConfig rope) => _rows.Rope(A(x), headDim, rope);

    public void StoreKv(int layer, IActivation k, IActivation v) => _attention.Store(layer, A(k), A(v));

    public void Attention(int layer, IActivation q, IActivation output, AttentionShape shape) => _attention.Attend(layer, A(q), A(output), shape);

    public void SwiGlu(IActivation gate, IActivation up) => _rows.SwiGlu(A(gate), A(up));

    public void Add(IActivation x, IActivation y) => _rows.Add(A(x), A(y));

    public void GatherRows(IActivation src, ReadOnlySpan<int> rows, IActivation dst)
    {
        var s = A(src);
        var d = A(dst);
        for (int i = 0; i < rows.Length; i++) s.Row(rows[i]).CopyTo(d.Row(i));
        d.Version++;
    }

    // ---- fused operations: their primitives ----

    public void NormQkvRope(int layer, IActivation x, QkvWeights w, AttentionShape shape, IActivation xb, IActivation q, IActivation k,
        IActivation v) =>
        ComposedOps.NormQkvRope(this, layer, x, w, shape, xb, q, k, v);

    public void MatMulAdd(IWeight w, IActivation x, IActivation y, IActivation residual) => ComposedOps.MatMulAdd(this, w, x, y, residual);

    public void NormGateUp(IActivation x, GateUpWeights w, float eps, IActivation xb, IActivation gate, IActivation up) =>
        ComposedOps.NormGateUp(this, x, w, eps, xb, gate, up);

    public void NormMatMulRows(IActivation x, ReadOnlySpan<int> rows, IWeight norm, float eps, IWeight w, IActivation xRows, IActivation y) =>
        ComposedOps.NormMatMulRows(this, x, rows, norm, eps, w, xRows, y);

    // ---- host copies (layer split: the hidden state crosses between backends) ----

    public void ReadRow(IActivation x, int row, Span<float> destination) => A(x).Row(row).CopyTo(destination);

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

    public void Dispose()
    {
        _background?.Dispose(); // before the buffers it writes go
        _pool.Dispose();
        _buffers.Dispose();
    }
}
