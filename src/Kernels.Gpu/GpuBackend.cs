using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using Infer.Kernels.Gpu.Kernels;
using Infer.Runtime;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Gpu;

/// <summary>Sizing and test knobs of a <see cref="GpuBackend"/>.</summary>
/// <param name="MaxBatch">Most tokens per batch; at least the model's batch size (LlamaModel caps it at 8192). Costs 12 bytes per token.</param>
/// <param name="AttentionSplits">Position ranges per (token, head) in attention; 0 chooses from the device and the batch.</param>
/// <param name="MatMulSliceThreads">Threads sharing one weight row in a matmul (a power of two); 0: 32 on a GPU, 1 on ILGPU's CPU accelerator.</param>
public sealed record GpuBackendOptions(int MaxBatch = 8192, int AttentionSplits = 0, int MatMulSliceThreads = 0);

/// <summary>
/// The ILGPU implementation of the backend seam. Weights are uploaded per tensor in their own format (F32, F16, BF16,
/// Q8_0, Q4_0; block formats split into f16 scales and 32-bit quant words) and decoded inside the kernels; every
/// product and sum is float32. Activations, the batch and the KV cache live on the device: per forward only the
/// batch ids go in and the requested logit rows come out. Kernels are resolved per weight at load time.
/// <para>
/// Launches are fused behind the unchanged seam by deferring work and folding it into the next call when the arguments
/// fit (anything else launches it first, in call order): RmsNorm → MatMul(s) of its output (the norm runs inside the
/// matmul launch); MatMul ×3 over one input (Q, K, V) → one launch, with the AddBias calls that follow; Rope(q), Rope(k)
/// → Attention: rotation and KV store in the Q/K/V epilogue (or in one launch before attention); MatMul gate, up →
/// SwiGlu: one launch; MatMul → Add of its output: the residual add in the epilogue; GatherRows of one row → its
/// in-place RmsNorm → the output MatMul: one launch. A llama decode step launches 1 (embed) + 5 per layer (+1 per layer
/// when attention is split over positions) + 1 (final norm and output).
/// </para>
/// </summary>
public sealed class GpuBackend : IBackend
{
    private readonly GpuDevice _device;
    private readonly bool _ownsDevice;
    private readonly Accelerator _acc;
    private readonly GpuBackendOptions _options;
    private readonly List<IDisposable> _buffers = [];
    private readonly int _group;      // threads per group for reductions (power of two, <= 256)

    // Batch: [tokens | positions | sequences], n ints each (positions start at n, sequences at 2n).
    private readonly int[] _batchHost;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _batch;
    private int _n;
    private int _maxLength; // longest attended range in the batch (max position + 1)

    // KV cache: float32 [sequence][layer][position][kvDim] for K and V.
    private KvCacheConfig? _kv;
    private MemoryBuffer1D<float, Stride1D.Dense>? _kCache, _vCache;
    private MemoryBuffer1D<float, Stride1D.Dense>? _partials;
    private long _partialFloats;

    // RoPE cos/sin tables [position, dims / 2] for the last RoPE configuration seen.
    private RopeConfig? _ropeConfig;
    private int _ropeLength;
    private MemoryBuffer1D<float, Stride1D.Dense>? _ropeCos, _ropeSin;

    private readonly MemoryBuffer1D<ushort, Stride1D.Dense> _noScales;

    private readonly MemoryBuffer1D<float, Stride1D.Dense> _noBias;

    // Deferred work, fused into the next call when its arguments fit; any other operation launches it first (Flush).
    // At most one kind is pending at a time.
    // x += y deferred by Add: the next RmsNorm of x folds it in (one launch instead of two).
    private GpuActivation? _pendingX, _pendingY;
    private int _pendingRows;
    // Matmuls over the same input: up to three (Q, K, V or gate, up) run as one launch, with the AddBias calls that follow
    // them, or with the SwiGlu of gate and up.
    private readonly PendingMatMul[] _pendingMm = new PendingMatMul[3];
    private int _pendingMmCount;
    // RoPE of q then k: the Attention call that follows rotates both and stores k and v in one launch.
    private readonly PendingRope[] _pendingRope = new PendingRope[2];
    private int _pendingRopeCount;

    // The matmuls' input normalized first (RmsNorm then MatMul of its output): the whole group runs as MatMulNorm.
    private PendingNorm? _mmNorm;
    // The single pending matmul's output added into this residual stream (MatMul then Add).
    private GpuActivation? _mmResidual;
    // RmsNorm deferred: the matmuls of its output that follow normalize their input themselves.
    private PendingNorm? _pendingNorm;

    /// <summary>Most floats of normalized input rows a MatMulNorm group keeps in shared memory (32 KiB).</summary>
    private const int MaxNormFloats = 8192;

    private struct PendingMatMul
    {
        public GpuWeight W;
        public GpuActivation X, Y;
        public int Rows;
        public GpuWeight? Bias;
    }

    /// <summary>y = norm(x) over whole rows; the source rows start SrcOffset floats into x (a gathered row).</summary>
    private sealed record PendingNorm(GpuActivation X, GpuWeight W, float Eps, GpuActivation Y, int Rows, long SrcOffset = 0)
    {
        public ArrayView<float> Src => X.View.SubView(SrcOffset, X.View.Length - SrcOffset);
    }

    // One row copied by GatherRows: the in-place RmsNorm of the copy that follows reads the source row instead.
    private GpuActivation? _gatherSrc, _gatherDst;
    private int _gatherRow;

    private struct PendingRope
    {
        public GpuActivation X;
        public int HeadDim;
        public RopeConfig Rope;
    }

    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int> _addBias;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _add;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _swiGlu;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int, int> _rope;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, float> _rmsNorm;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionArgs, int, int> _storeKv;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionArgs> _attention;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, AttentionArgs> _attentionCombine;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionArgs, RopeStoreArgs> _ropeStoreKv;
    private readonly Dictionary<GgmlType, FormatKernels> _formats = [];

    /// <summary>The embed and matmul kernels of one weight format, compiled once per backend.</summary>
    internal sealed class FormatKernels
    {
        public required Action<Index1D, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, int> Embed;
        public required Action<KernelConfig, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, MatMulArgs> MatMul;
        public required Action<KernelConfig, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, FusedMatMulArgs> MatMulFused;
        public required Action<KernelConfig, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, FusedMatMulArgs, RopeStoreViews> MatMulNorm;
    }

    /// <param name="device">The accelerator to run on (see <see cref="GpuContextFactory.Select"/>).</param>
    /// <param name="ownsDevice">Dispose <paramref name="device"/> with the backend.</param>
    public GpuBackend(GpuDevice device, GpuBackendOptions? options = null, bool ownsDevice = true)
    {
        _device = device;
        _ownsDevice = ownsDevice;
        _acc = device.Accelerator;
        _options = options ?? new GpuBackendOptions();
        if (_options.MaxBatch < 1) throw new ArgumentOutOfRangeException(nameof(options), "MaxBatch must be at least 1");
        if (_options.MatMulSliceThreads < 0 || (_options.MatMulSliceThreads & (_options.MatMulSliceThreads - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(options), "MatMulSliceThreads must be 0 or a power of two");
        if (_options.AttentionSplits < 0) throw new ArgumentOutOfRangeException(nameof(options), "AttentionSplits must not be negative");
        _group = 1;
        while (_group * 2 <= Math.Min(GpuKernels.MaxGroup, _acc.MaxNumThreadsPerGroup)) _group *= 2;

        _batchHost = new int[3 * _options.MaxBatch];
        try
        {
            _batch = Track(_acc.Allocate1D<int>(_batchHost.Length));
            _noScales = Track(_acc.Allocate1D<ushort>(1));
            _noBias = Track(_acc.Allocate1D<float>(1));

            _addBias = _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(GpuKernels.AddBias);
            _add = _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(GpuKernels.Add);
            _swiGlu = _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(GpuKernels.SwiGlu);
            _rope = _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int, int>(GpuKernels.Rope);
            _rmsNorm = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, float>(GpuKernels.RmsNorm);
            _storeKv = _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionArgs, int, int>(GpuKernels.StoreKv);
            _attention = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionArgs>(GpuKernels.Attention);
            _attentionCombine = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, AttentionArgs>(GpuKernels.AttentionCombine);
            _ropeStoreKv = _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionArgs, RopeStoreArgs>(GpuKernels.RopeStoreKv);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string Name => "gpu";

    public string Description => $"{_device.Info.Id} {_device.Info.Name}, {_device.Info.MemoryBytes / (1024 * 1024)} MiB";

    public GpuDevice Device => _device;

    /// <summary>Kernel launches and device-to-device copies issued so far (host transfers not included).</summary>
    public long Launches { get; private set; }

    /// <summary>Launches since the last <see cref="SetBatch"/>: after a forward pass, that pass's count.</summary>
    public int LaunchesThisBatch { get; private set; }

    /// <summary>Bytes of weights uploaded so far.</summary>
    public long WeightBytes { get; private set; }

    private T Track<T>(T buffer) where T : IDisposable
    {
        _buffers.Add(buffer);
        return buffer;
    }

    private void Count()
    {
        Launches++;
        LaunchesThisBatch++;
    }

    private FormatKernels Kernels(GgmlType type)
    {
        if (_formats.TryGetValue(type, out var k)) return k;
        k = type switch
        {
            GgmlType.F32 => Load<F32Format>(),
            GgmlType.F16 => Load<F16Format>(),
            GgmlType.BF16 => Load<BF16Format>(),
            GgmlType.Q8_0 => Load<Q8_0Format>(),
            GgmlType.Q4_0 => Load<Q4_0Format>(),
            GgmlType.Q4_K => Load<Q4_KFormat>(),
            GgmlType.Q6_K => Load<Q6_KFormat>(),
            _ => throw new NotSupportedException($"no GPU kernels for {GgmlTypeInfo.Name(type)}"),
        };
        _formats[type] = k;
        return k;
    }

    private FormatKernels Load<TF>() where TF : struct, IWeightFormat => new()
    {
        Embed = _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, int>(GpuKernels.Embed<TF>),
        MatMul = _acc.LoadStreamKernel<ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, MatMulArgs>(GpuKernels.MatMul<TF>),
        MatMulFused = _acc.LoadStreamKernel<ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, FusedMatMulArgs>(GpuKernels.MatMulFused<TF>),
        MatMulNorm = _acc.LoadStreamKernel<ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, FusedMatMulArgs, RopeStoreViews>(GpuKernels.MatMulNorm<TF>),
    };

    // ---- buffers ----

    internal sealed class GpuWeight : IWeight
    {
        public required string Name { get; init; }
        public required GgmlType Type { get; init; }
        public required int Rows { get; init; }
        public required int Cols { get; init; }
        public required MemoryBuffer1D<int, Stride1D.Dense> Words { get; init; }
        public MemoryBuffer1D<ushort, Stride1D.Dense>? Scales { get; init; }
        public MemoryBuffer1D<float, Stride1D.Dense>? Floats { get; init; } // vectors: Cols floats
        public required FormatKernels Kernels { get; init; }
    }

    internal sealed class GpuActivation : IActivation
    {
        public required int Rows { get; init; }
        public required int Cols { get; init; }
        public required MemoryBuffer1D<float, Stride1D.Dense> Buffer { get; init; }
        public ArrayView<float> View => Buffer.View;
    }

    /// <summary>Weight types this backend runs.</summary>
    public static bool IsSupported(GgmlType type) =>
        type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.Q6_K;

    public unsafe IWeight LoadWeight(GgufTensor tensor)
    {
        if (!IsSupported(tensor.Type))
            throw new UnsupportedModelException(null, $"tensor '{tensor.Name}' has type {GgmlTypeInfo.Name(tensor.Type)}, which the GPU backend does not support yet");
        int cols = checked((int)tensor.RowLength);
        int rows = checked((int)tensor.RowCount);
        return Upload(tensor.Name, tensor.Type, rows, cols, tensor.Data, tensor.ByteSize);
    }

    /// <summary>Uploads a weight [rows, cols] given in its GGUF encoding (rows of ggml blocks).</summary>
    public unsafe IWeight UploadWeight(string name, GgmlType type, int rows, int cols, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data) return Upload(name, type, rows, cols, p, data.Length);
    }

    private unsafe GpuWeight Upload(string name, GgmlType type, int rows, int cols, byte* data, long byteSize)
    {
        if (!IsSupported(type))
            throw new UnsupportedModelException(null, $"tensor '{name}' has type {GgmlTypeInfo.Name(type)}, which the GPU backend does not support yet");
        if (rows < 1 || cols < 1 || cols % GgmlTypeInfo.BlockSize(type) != 0)
            throw new ArgumentException($"tensor '{name}': bad shape [{cols}, {rows}] for {GgmlTypeInfo.Name(type)}");
        long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
        if (byteSize < rowBytes * rows)
            throw new ArgumentException($"tensor '{name}': {byteSize} bytes, expected {rowBytes * rows}");
        var kernels = Kernels(type);

        MemoryBuffer1D<float, Stride1D.Dense>? floats = null;
        if (rows == 1 && HostDecode.CanDecode(type))
        {
            var v = new float[cols];
            HostDecode.Row(type, data, v);
            floats = Track(_acc.Allocate1D(v));
        }

        MemoryBuffer1D<int, Stride1D.Dense> words;
        MemoryBuffer1D<ushort, Stride1D.Dense>? scales = null;
        switch (type)
        {
            case GgmlType.F32:
                words = Track(_acc.Allocate1D<int>((long)rows * cols));
                words.View.CopyFromCPU(ref Unsafe.AsRef<int>(data), (long)rows * cols);
                break;
            case GgmlType.F16:
            case GgmlType.BF16:
                {
                    int wordsPerRow = (cols + 1) / 2;
                    words = Track(_acc.Allocate1D<int>((long)rows * wordsPerRow));
                    if (cols % 2 == 0)
                        words.View.CopyFromCPU(ref Unsafe.AsRef<int>(data), (long)rows * wordsPerRow);
                    else
                    {
                        // Odd rows: pad each row to whole words.
                        var packed = new int[(long)rows * wordsPerRow];
                        fixed (int* dst = packed)
                            for (long r = 0; r < rows; r++)
                                Buffer.MemoryCopy(data + r * rowBytes, (byte*)(dst + r * wordsPerRow), (long)wordsPerRow * 4, rowBytes);
                        words.View.CopyFromCPU(packed);
                    }
                    break;
                }
            case GgmlType.Q4_K:
            case GgmlType.Q6_K:
                {
                    // Raw super-blocks as words; Q6_K's 210-byte blocks are padded to 212 bytes to keep them word-aligned.
                    long blocks = (long)rows * (cols / 256);
                    int blockBytes = (int)GgmlTypeInfo.RowBytes(type, 256);
                    int wordsPerBlock = type == GgmlType.Q4_K ? Q4_KFormat.WordsPerBlock : Q6_KFormat.WordsPerBlock;
                    var q = new int[blocks * wordsPerBlock];
                    fixed (int* qp = q)
                        for (long b = 0; b < blocks; b++)
                            Buffer.MemoryCopy(data + b * blockBytes, qp + b * wordsPerBlock, (long)wordsPerBlock * 4, blockBytes);
                    words = Track(_acc.Allocate1D(q));
                    break;
                }
            default: // Q8_0, Q4_0: split 34- or 18-byte blocks into f16 scales and 32-bit quant words.
                {
                    long blocks = (long)rows * (cols / 32);
                    int quantBytes = type == GgmlType.Q8_0 ? 32 : 16;
                    int blockBytes = 2 + quantBytes;
                    var s = new ushort[blocks];
                    var q = new int[blocks * quantBytes / 4];
                    fixed (ushort* sp = s)
                    fixed (int* qp = q)
                        for (long b = 0; b < blocks; b++)
                        {
                            byte* src = data + b * blockBytes;
                            sp[b] = (ushort)(src[0] | src[1] << 8);
                            Buffer.MemoryCopy(src + 2, (byte*)qp + b * quantBytes, quantBytes, quantBytes);
                        }
                    scales = Track(_acc.Allocate1D(s));
                    words = Track(_acc.Allocate1D(q));
                    break;
                }
        }
        WeightBytes += words.LengthInBytes + (scales?.LengthInBytes ?? 0);
        return new GpuWeight { Name = name, Type = type, Rows = rows, Cols = cols, Words = words, Scales = scales, Floats = floats, Kernels = kernels };
    }

    public IActivation Allocate(int rows, int cols)
    {
        if (rows < 1 || cols < 1) throw new ArgumentOutOfRangeException(nameof(rows), $"activation [{rows}, {cols}] is empty");
        var buffer = Track(_acc.Allocate1D<float>((long)rows * cols));
        buffer.MemSetToZero();
        return new GpuActivation { Rows = rows, Cols = cols, Buffer = buffer };
    }

    /// <summary>Copies host rows into an activation (tests and hybrid use).</summary>
    public void Write(IActivation x, ReadOnlySpan<float> data)
    {
        Flush();
        A(x).View.SubView(0, data.Length).CopyFromCPU(data);
    }

    public void CreateKvCache(KvCacheConfig config)
    {
        if (config.HeadDim > GpuKernels.MaxHeadDim)
            throw new UnsupportedModelException(null, $"head size {config.HeadDim} exceeds the GPU attention kernel's {GpuKernels.MaxHeadDim}");
        Flush();
        foreach (var old in new[] { _kCache, _vCache })
            if (old is not null)
            {
                _buffers.Remove(old);
                old.Dispose();
            }
        _kv = config;
        long elements = (long)config.Contexts * config.Layers * config.ContextLength * config.KvHeads * config.HeadDim;
        _kCache = Track(_acc.Allocate1D<float>(elements));
        _vCache = Track(_acc.Allocate1D<float>(elements));
        _kCache.MemSetToZero();
        _vCache.MemSetToZero();
    }

    public void SetBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> sequences)
    {
        Flush();
        int n = tokens.Length, max = _options.MaxBatch;
        if (n > max) throw new ArgumentException($"batch of {n} tokens exceeds {max}");
        if (positions.Length != n || sequences.Length != n) throw new ArgumentException("tokens, positions and sequences must have the same length");
        _n = n;
        _maxLength = 0;
        for (int i = 0; i < n; i++) _maxLength = Math.Max(_maxLength, positions[i] + 1);
        // Packed as [tokens | positions | sequences], n each: one small upload per forward.
        tokens.CopyTo(_batchHost);
        positions.CopyTo(_batchHost.AsSpan(n));
        sequences.CopyTo(_batchHost.AsSpan(2 * n));
        if (n > 0) _batch.View.AsContiguous().SubView(0, 3 * n).CopyFromCPU(_batchHost.AsSpan(0, 3 * n));
        LaunchesThisBatch = 0;
    }

    private static GpuActivation A(IActivation a) => (GpuActivation)a;
    private static GpuWeight W(IWeight w) => (GpuWeight)w;

    private int Rows(int rows) => rows < 0 ? _n : rows;

    // ---- operations ----

    public void Embed(IWeight table, IActivation x)
    {
        Flush();
        var w = W(table);
        var xa = A(x);
        if (xa.Cols != w.Cols) throw new ArgumentException($"embedding '{w.Name}' has rows of {w.Cols}, activation has {xa.Cols} columns");
        if (_n == 0) return;
        w.Kernels.Embed(_n * w.Cols, w.Words.View, (w.Scales ?? _noScales).View, _batch.View, xa.View, w.Cols);
        Count();
    }

    public void RmsNorm(IActivation x, IWeight weight, float eps, IActivation y, int rows = -1)
    {
        var w = W(weight);
        var xa = A(x);
        if (w.Floats is null || xa.Cols % w.Cols != 0 || A(y).Cols != xa.Cols)
            throw new ArgumentException($"'{w.Name}' cannot normalize rows of {xa.Cols}");
        int n = Rows(rows);
        // x += r; y = norm(x) in one launch when the pending Add targets exactly these rows of x.
        // GatherRows of one row then its in-place norm: the norm reads the source row (and may join the next matmul).
        if (_gatherDst == xa && A(y) == xa && n == 1 && w.Cols == xa.Cols && xa.Cols <= MaxNormFloats)
        {
            _pendingNorm = new PendingNorm(_gatherSrc!, w, eps, xa, 1, (long)_gatherRow * _gatherSrc!.Cols);
            _gatherSrc = _gatherDst = null;
            return;
        }
        var residual = _pendingX == xa && _pendingRows == n && !ReferenceEquals(_pendingY, A(y)) ? _pendingY : null;
        if (residual is not null) _pendingX = _pendingY = null;
        else Flush();
        if (n == 0) return;
        // A whole-row norm into another buffer waits for the matmuls of its output, which fold it in.
        if (residual is null && w.Cols == xa.Cols && A(y) != xa && Math.Min(n, GpuKernels.TokensPerTile) * xa.Cols <= MaxNormFloats)
        {
            _pendingNorm = new PendingNorm(xa, w, eps, A(y), n);
            return;
        }
        _rmsNorm(new KernelConfig(n * (xa.Cols / w.Cols), _group), xa.View, (residual ?? xa).View, w.Floats.View, A(y).View,
            xa.Cols, w.Cols, residual is null ? 0 : 1, eps);
        Count();
    }

    /// <summary>
    /// Deferred: consecutive matmuls over the same input rows with weights of one format (Q, K, V; gate, up) run as one
    /// launch, together with the AddBias or SwiGlu calls that follow them.
    /// </summary>
    public void MatMul(IWeight weight, IActivation x, IActivation y, int rows = -1)
    {
        var w = W(weight);
        var xa = A(x);
        var ya = A(y);
        int n = Rows(rows);
        if (xa.Cols != w.Cols || ya.Cols < w.Rows)
            throw new ArgumentException($"matmul shape mismatch: '{w.Name}' is [{w.Rows} x {w.Cols}], input has {xa.Cols} columns, output {ya.Cols}");
        PendingNorm? norm = null;
        if (_pendingNorm is { } pn && pn.Y == xa && pn.Rows == n && pn.X != ya && pn.Y != ya)
        {
            norm = pn;
            _pendingNorm = null;
        }
        else if (!JoinsPendingMatMul(w, xa, ya, n)) Flush();
        if (n == 0) return;
        if (norm is not null) _mmNorm = norm;
        _pendingMm[_pendingMmCount++] = new PendingMatMul { W = w, X = xa, Y = ya, Rows = n };
    }

    private bool JoinsPendingMatMul(GpuWeight w, GpuActivation x, GpuActivation y, int n)
    {
        if (_pendingMmCount is 0 or 3 || _mmResidual is not null) return false;
        var first = _pendingMm[0];
        if (first.X != x || first.Rows != n || first.W.Type != w.Type || y == x) return false;
        if (_mmNorm is { } norm && (norm.X == y || norm.Y == y)) return false;
        for (int i = 0; i < _pendingMmCount; i++)
            if (_pendingMm[i].Y == y || _pendingMm[i].Bias is not null) return false;
        return true;
    }

    /// <summary>Threads per weight row and groups for a matmul over <paramref name="rows"/> rows and <paramref name="n"/> tokens.</summary>
    private (int Slice, KernelConfig Config) MatMulGrid(int rows, int n)
    {
        // A warp's worth of threads per row on a GPU; one thread per row on ILGPU's CPU accelerator, where barriers are costly.
        int slice = _options.MatMulSliceThreads > 0 ? Math.Min(_options.MatMulSliceThreads, _group)
            : _acc.AcceleratorType == AcceleratorType.CPU ? 1 : Math.Min(_group, 32);
        int rowsPerGroup = _group / slice;
        int groups = (rows + rowsPerGroup - 1) / rowsPerGroup;
        if (slice == 1) groups = Math.Min(groups, 2 * _acc.NumMultiprocessors);
        var grid = new Index2D(groups, (n + GpuKernels.TokensPerTile - 1) / GpuKernels.TokensPerTile);
        return (slice, new KernelConfig(grid, new Index2D(_group, 1)));
    }

    /// <summary>Launches the pending matmuls: the plain kernel for one without a bias, else the fused one.</summary>
    private void LaunchPendingMatMuls(bool swiGlu)
    {
        int count = _pendingMmCount;
        _pendingMmCount = 0;
        var norm = _mmNorm;
        var residual = _mmResidual;
        _mmNorm = null;
        _mmResidual = null;
        var p0 = _pendingMm[0];
        var xa = p0.X;
        int n = p0.Rows;
        if (norm is not null)
        {
            LaunchNormMatMuls(norm, count, swiGlu);
            return;
        }
        if (count == 1 && p0.Bias is null && !swiGlu && residual is null)
        {
            var w = p0.W;
            var (slice1, config1) = MatMulGrid(w.Rows, n);
            var args1 = new MatMulArgs { Rows = w.Rows, Cols = w.Cols, Tokens = n, XStride = xa.Cols, YStride = p0.Y.Cols, SliceThreads = slice1 };
            w.Kernels.MatMul(config1, w.Words.View, (w.Scales ?? _noScales).View, xa.View, p0.Y.View, args1);
            Count();
            return;
        }
        var p1 = count > 1 ? _pendingMm[1] : p0;
        var p2 = count > 2 ? _pendingMm[2] : p0;
        var args = new FusedMatMulArgs
        {
            Cols = xa.Cols, Tokens = n, XStride = xa.Cols,
            Rows0 = p0.W.Rows, Rows1 = count > 1 ? p1.W.Rows : 0, Rows2 = count > 2 ? p2.W.Rows : 0,
            YStride0 = p0.Y.Cols, YStride1 = residual?.Cols ?? p1.Y.Cols, YStride2 = p2.Y.Cols,
            Bias0 = p0.Bias is null ? 0 : 1, Bias1 = count > 1 && p1.Bias is not null ? 1 : 0, Bias2 = count > 2 && p2.Bias is not null ? 1 : 0,
            SwiGlu = swiGlu ? 1 : 0, Residual = residual is null ? 0 : 1,
        };
        var (slice, config) = MatMulGrid(args.TotalRows, n);
        args.SliceThreads = slice;
        p0.W.Kernels.MatMulFused(config,
            p0.W.Words.View, (p0.W.Scales ?? _noScales).View, p1.W.Words.View, (p1.W.Scales ?? _noScales).View, p2.W.Words.View, (p2.W.Scales ?? _noScales).View,
            xa.View, p0.Y.View, (residual ?? p1.Y).View, p2.Y.View,
            (p0.Bias?.Floats ?? _noBias).View, (p1.Bias?.Floats ?? _noBias).View, (p2.Bias?.Floats ?? _noBias).View, args);
        Count();
    }

    /// <summary>Launches MatMulNorm: the pending norm's output computed inside the launch of the matmuls that read it.</summary>
    private void LaunchNormMatMuls(PendingNorm norm, int count, bool swiGlu, RopeStoreViews rope = default)
    {
        var p0 = _pendingMm[0];
        var p1 = count > 1 ? _pendingMm[1] : p0;
        var p2 = count > 2 ? _pendingMm[2] : p0;
        int n = p0.Rows;
        var args = new FusedMatMulArgs
        {
            Cols = norm.X.Cols, Tokens = n, XStride = norm.X.Cols, XbStride = norm.Y.Cols, Eps = norm.Eps,
            Rows0 = p0.W.Rows, Rows1 = count > 1 ? p1.W.Rows : 0, Rows2 = count > 2 ? p2.W.Rows : 0,
            YStride0 = p0.Y.Cols, YStride1 = p1.Y.Cols, YStride2 = p2.Y.Cols,
            SwiGlu = swiGlu ? 1 : 0,
            RopeRows = rope.Enabled != 0 ? (rope.Heads + rope.KvHeads) * rope.PerHead + p2.W.Rows : 0,
        };
        if (rope.Enabled == 0)
        {
            // Views the kernel never reads still need valid buffers.
            rope.KCache = rope.VCache = rope.Cos = rope.Sin = _noBias.View;
            rope.Batch = _batch.View;
        }
        var (slice, grid) = MatMulGrid(args.TotalRows, n);
        args.SliceThreads = slice;
        var config = new KernelConfig(grid.GridDim, grid.GroupDim,
            SharedMemoryConfig.RequestDynamic<float>(Math.Min(n, GpuKernels.TokensPerTile) * norm.X.Cols));
        p0.W.Kernels.MatMulNorm(config,
            p0.W.Words.View, (p0.W.Scales ?? _noScales).View, p1.W.Words.View, (p1.W.Scales ?? _noScales).View, p2.W.Words.View, (p2.W.Scales ?? _noScales).View,
            norm.Src, norm.W.Floats!.View, norm.Y.View, p0.Y.View, p1.Y.View, p2.Y.View, args, rope);
        Count();
    }

    private void LaunchNorm(PendingNorm norm)
    {
        _rmsNorm(new KernelConfig(norm.Rows, _group), norm.Src, norm.Src, norm.W.Floats!.View, norm.Y.View, norm.X.Cols, norm.W.Cols, 0, norm.Eps);
        Count();
    }

    public void AddBias(IActivation y, IWeight bias)
    {
        var w = W(bias);
        var ya = A(y);
        if (w.Floats is null || w.Cols != ya.Cols) throw new ArgumentException($"bias '{w.Name}' ({w.Cols}) does not match rows of {ya.Cols}");
        // The bias of a pending matmul's output (all batch rows, the full width) joins that matmul's launch.
        for (int i = 0; i < _pendingMmCount; i++)
            if (_pendingMm[i].Y == ya && _pendingMm[i].Bias is null && _pendingMm[i].Rows == _n && _pendingMm[i].W.Rows == ya.Cols && _mmResidual is null)
            {
                // MatMulNorm takes no biases: the norm runs on its own first.
                if (_mmNorm is { } norm)
                {
                    _mmNorm = null;
                    LaunchNorm(norm);
                }
                _pendingMm[i].Bias = w;
                return;
            }
        Flush();
        if (_n == 0) return;
        _addBias(_n * ya.Cols, ya.View, w.Floats.View, ya.Cols);
        Count();
    }

    /// <summary>Deferred: RoPE of q then of k runs inside the launch that stores k and v for the Attention call that follows.</summary>
    public void Rope(IActivation x, int headDim, RopeConfig rope)
    {
        var xa = A(x);
        var kv = _kv ?? throw new InvalidOperationException("CreateKvCache was not called");
        if (headDim < 1 || xa.Cols % headDim != 0 || rope.Dims > headDim || rope.Dims % 2 != 0)
            throw new ArgumentException($"RoPE of {rope.Dims} dims does not fit heads of {headDim} in rows of {xa.Cols}");
        bool joins = _pendingRopeCount == 1 && _pendingRope[0].X != xa && _pendingRope[0].HeadDim == headDim
            && (ReferenceEquals(_pendingRope[0].Rope, rope) || SameRope(_pendingRope[0].Rope, rope));
        // RoPE of the first output of pending normalized Q/K/V matmuls may end up in their epilogue (see Attention).
        joins |= _pendingRopeCount == 0 && _pendingMmCount == 3 && _mmNorm is not null && _mmResidual is null && _pendingMm[0].Y == xa;
        if (!joins) Flush();
        if (_n == 0) return;
        EnsureRopeTable(rope, kv.ContextLength);
        _pendingRope[_pendingRopeCount++] = new PendingRope { X = xa, HeadDim = headDim, Rope = rope };
    }

    private void LaunchRope(GpuActivation xa, int headDim, RopeConfig rope)
    {
        EnsureRopeTable(rope, _kv!.ContextLength);
        int pairs = _n * (xa.Cols / headDim) * (rope.Dims / 2);
        _rope(pairs, xa.View, _ropeCos!.View, _ropeSin!.View, _batch.View, _n, xa.Cols, headDim, rope.Dims, rope.NeoX ? 1 : 0);
        Count();
    }

    /// <summary>Builds cos/sin for every position of the context once per RoPE configuration, as the CPU computes them.</summary>
    private void EnsureRopeTable(RopeConfig rope, int contextLength)
    {
        if (_ropeLength == contextLength && (ReferenceEquals(rope, _ropeConfig) || (_ropeConfig is not null && SameRope(rope, _ropeConfig)))) return;
        int half = rope.Dims / 2;
        var cos = new float[(long)contextLength * half];
        var sin = new float[cos.Length];
        for (int p = 0; p < contextLength; p++)
            rope.CosSin(p, cos.AsSpan(p * half, half), sin.AsSpan(p * half, half));
        _ropeCos?.Dispose();
        _ropeSin?.Dispose();
        if (_ropeCos is not null) _buffers.Remove(_ropeCos);
        if (_ropeSin is not null) _buffers.Remove(_ropeSin);
        _ropeCos = Track(_acc.Allocate1D(cos));
        _ropeSin = Track(_acc.Allocate1D(sin));
        _ropeConfig = rope;
        _ropeLength = contextLength;
    }

    private static bool SameRope(RopeConfig a, RopeConfig b) =>
        a.Dims == b.Dims && a.FreqBase == b.FreqBase && a.FreqScale == b.FreqScale && a.NeoX == b.NeoX
        && (a.FreqFactors ?? []).AsSpan().SequenceEqual(b.FreqFactors ?? []);

    public void Attention(int layer, IActivation q, IActivation k, IActivation v, IActivation output, int nHeads, int nKvHeads, int headDim, float scale)
    {
        var kv = _kv ?? throw new InvalidOperationException("CreateKvCache was not called");
        if (nKvHeads != kv.KvHeads || headDim != kv.HeadDim || nHeads % nKvHeads != 0 || (uint)layer >= (uint)kv.Layers)
            throw new ArgumentException($"attention shape (layer {layer}, {nHeads} heads, {nKvHeads} KV heads, head size {headDim}) does not match the KV cache");
        // RoPE of q and k pending after the normalized Q/K/V matmuls that produce q, k and v: one launch computes them,
        // rotates q and k and stores k and v.
        bool inMatMul = _pendingRopeCount == 2 && _pendingMmCount == 3 && _mmNorm is not null && _mmResidual is null
            && _pendingMm[0].Y == A(q) && _pendingMm[1].Y == A(k) && _pendingMm[2].Y == A(v)
            && _pendingRope[0].X == A(q) && _pendingRope[1].X == A(k) && _pendingRope[0].HeadDim == headDim
            && A(q).Cols == nHeads * headDim && A(k).Cols == nKvHeads * headDim
            && _pendingMm[0].W.Rows == nHeads * headDim && _pendingMm[1].W.Rows == nKvHeads * headDim && _pendingMm[2].W.Rows == nKvHeads * headDim;
        if (inMatMul)
        {
            var r = _pendingRope[0].Rope;
            var norm = _mmNorm!;
            _pendingRopeCount = 0;
            _pendingMmCount = 0;
            _mmNorm = null;
            EnsureRopeTable(r, kv.ContextLength);
            LaunchNormMatMuls(norm, 3, swiGlu: false, new RopeStoreViews
            {
                KCache = _kCache!.View, VCache = _vCache!.View, Cos = _ropeCos!.View, Sin = _ropeSin!.View, Batch = _batch.View,
                Enabled = 1, Dims = r.Dims, NeoX = r.NeoX ? 1 : 0, HeadDim = headDim, Heads = nHeads, KvHeads = nKvHeads,
                Layer = layer, Layers = kv.Layers, ContextLength = kv.ContextLength, PosOffset = _n, SeqOffset = 2 * _n,
            });
        }
        else if (_pendingMmCount > 0) LaunchPendingMatMuls(swiGlu: false);
        // RoPE of exactly this q and k, head by head, is pending: rotate both and store k and v in one launch.
        bool fuseRope = !inMatMul && _pendingRopeCount == 2 && _pendingRope[0].X == A(q) && _pendingRope[1].X == A(k)
            && _pendingRope[0].HeadDim == headDim && A(q).Cols == nHeads * headDim && A(k).Cols == nKvHeads * headDim
            && A(v).Cols >= nKvHeads * headDim && A(q) != A(k) && A(v) != A(q) && A(v) != A(k);
        var rope = _pendingRope[0].Rope;
        if (fuseRope) _pendingRopeCount = 0;
        else if (!inMatMul) Flush();
        if (_n == 0) return;
        var args = new AttentionArgs
        {
            Layer = layer, Layers = kv.Layers, ContextLength = kv.ContextLength,
            Heads = nHeads, KvHeads = nKvHeads, HeadDim = headDim,
            QStride = A(q).Cols, OStride = A(output).Cols, Scale = scale,
            PosOffset = _n, SeqOffset = 2 * _n,
        };
        if (fuseRope)
        {
            EnsureRopeTable(rope, kv.ContextLength);
            var ra = new RopeStoreArgs { Dims = rope.Dims, NeoX = rope.NeoX ? 1 : 0, KStride = A(k).Cols, VStride = A(v).Cols };
            int items = _n * ((nHeads + nKvHeads) * (rope.Dims / 2) + nKvHeads * headDim);
            _ropeStoreKv(items, A(q).View, A(k).View, A(v).View, _kCache!.View, _vCache!.View, _ropeCos!.View, _ropeSin!.View, _batch.View, args, ra);
            Count();
        }
        else if (!inMatMul)
        {
            _storeKv(_n * nKvHeads * headDim, A(k).View, A(v).View, _kCache!.View, _vCache!.View, _batch.View, args, A(k).Cols, A(v).Cols);
            Count();
        }

        int heads = _n * nHeads;
        args.Splits = ChooseSplits(heads, headDim);
        _attention(new KernelConfig(new Index2D(heads, args.Splits), new Index2D(_group, 1)),
            A(q).View, _kCache!.View, _vCache!.View, A(output).View, (_partials ?? _kCache).View, _batch.View, args);
        Count();
        if (args.Splits > 1)
        {
            _attentionCombine(new KernelConfig(heads, _group), _partials!.View, A(output).View, args);
            Count();
        }
    }

    /// <summary>
    /// Decode has few (token, head) items: split each one's positions so the device has about four groups per
    /// multiprocessor, each range at least one chunk of group-size positions. Prefill gets one split.
    /// </summary>
    private int ChooseSplits(int items, int headDim)
    {
        int chunks = Math.Max(1, (_maxLength + _group - 1) / _group);
        int splits = _options.AttentionSplits > 0
            ? _options.AttentionSplits
            : Math.Clamp(4 * _acc.NumMultiprocessors / items, 1, Math.Min(32, chunks));
        if (splits == 1) return 1;
        long floats = (long)items * splits * (headDim + 2);
        if (floats > _partialFloats)
        {
            if (_partials is not null)
            {
                _buffers.Remove(_partials);
                _partials.Dispose();
            }
            _partials = Track(_acc.Allocate1D<float>(floats));
            _partialFloats = floats;
        }
        return splits;
    }

    public void SwiGlu(IActivation gate, IActivation up)
    {
        var g = A(gate);
        if (A(up).Cols != g.Cols) throw new ArgumentException("gate and up differ in width");
        // gate = W_gate·x and up = W_up·x pending over all batch rows, the full width: one launch computes both and the product.
        if (_pendingMmCount == 2 && _mmResidual is null && _pendingMm[0].Y == g && _pendingMm[1].Y == A(up) && _pendingMm[0].Rows == _n
            && _pendingMm[0].W.Rows == g.Cols && _pendingMm[1].W.Rows == g.Cols && _pendingMm[0].Bias is null && _pendingMm[1].Bias is null)
        {
            LaunchPendingMatMuls(swiGlu: true);
            return;
        }
        Flush();
        if (_n == 0) return;
        _swiGlu(_n * g.Cols, g.View, A(up).View);
        Count();
    }

    /// <summary>Deferred: added inside the matmul that produces y when one is pending, else into the next RmsNorm of x.</summary>
    public void Add(IActivation x, IActivation y)
    {
        var xa = A(x);
        if (A(y).Cols != xa.Cols) throw new ArgumentException("added activations differ in width");
        if (_pendingMmCount == 1 && _mmNorm is null && _mmResidual is null && _pendingMm[0].Y == A(y) && _pendingMm[0].Rows == _n
            && _pendingMm[0].W.Rows == xa.Cols && _pendingMm[0].X != xa && xa != A(y))
        {
            _mmResidual = xa;
            return;
        }
        Flush();
        if (_n == 0) return;
        _pendingX = xa;
        _pendingY = A(y);
        _pendingRows = _n;
    }

    /// <summary>Launches deferred work: an <see cref="Add"/>, matmuls (with their biases), RoPE.</summary>
    private void Flush()
    {
        if (_pendingX is { } x)
        {
            _pendingX = null;
            _add(_pendingRows * x.Cols, x.View, _pendingY!.View);
            _pendingY = null;
            Count();
        }
        if (_pendingMmCount > 0) LaunchPendingMatMuls(swiGlu: false);
        if (_pendingNorm is { } norm)
        {
            _pendingNorm = null;
            LaunchNorm(norm);
        }
        if (_gatherSrc is { } src)
        {
            var dst = _gatherDst!;
            _gatherSrc = _gatherDst = null;
            src.View.SubView((long)_gatherRow * src.Cols, src.Cols).CopyTo(dst.View.SubView(0, dst.Cols));
            Count();
        }
        for (int i = 0; i < _pendingRopeCount; i++) LaunchRope(_pendingRope[i].X, _pendingRope[i].HeadDim, _pendingRope[i].Rope);
        _pendingRopeCount = 0;
    }

    public void GatherRows(IActivation src, ReadOnlySpan<int> rows, IActivation dst)
    {
        Flush();
        var s = A(src);
        var d = A(dst);
        if (s.Cols != d.Cols || rows.Length > d.Rows) throw new ArgumentException("gather shapes differ");
        if (rows.Length == 1 && s != d)
        {
            // Deferred: a following in-place RmsNorm of the copy reads the source row directly.
            if ((uint)rows[0] >= (uint)s.Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"row {rows[0]} is outside 0..{s.Rows - 1}");
            (_gatherSrc, _gatherDst, _gatherRow) = (s, d, rows[0]);
            return;
        }
        for (int i = 0; i < rows.Length; i++)
        {
            if ((uint)rows[i] >= (uint)s.Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"row {rows[i]} is outside 0..{s.Rows - 1}");
            if (ReferenceEquals(s, d) && rows[i] == i) continue;
            s.View.SubView((long)rows[i] * s.Cols, s.Cols).CopyTo(d.View.SubView((long)i * d.Cols, d.Cols));
            Count();
        }
    }

    public void ReadRow(IActivation x, int row, Span<float> destination)
    {
        Flush();
        var xa = A(x);
        if ((uint)row >= (uint)xa.Rows) throw new ArgumentOutOfRangeException(nameof(row));
        xa.View.SubView((long)row * xa.Cols, xa.Cols).CopyToCPU(destination[..xa.Cols]);
    }

    public void ReadRows(IActivation x, int rows, Span<float> destination)
    {
        Flush();
        var xa = A(x);
        if ((uint)rows > (uint)xa.Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"{rows} rows requested of an activation with {xa.Rows}");
        if (rows == 0) return;
        long length = (long)rows * xa.Cols;
        xa.View.SubView(0, length).CopyToCPU(destination[..(int)length]);
    }

    public void WriteRows(IActivation x, ReadOnlySpan<float> source)
    {
        Flush();
        var xa = A(x);
        if (source.Length % xa.Cols != 0 || source.Length / xa.Cols > xa.Rows)
            throw new ArgumentException($"{source.Length} floats are not whole rows of an activation [{xa.Rows}, {xa.Cols}]");
        if (source.Length == 0) return;
        xa.View.SubView(0, source.Length).CopyFromCPU(source);
    }

    /// <summary>Waits for every queued kernel.</summary>
    public void Synchronize()
    {
        Flush();
        _acc.Synchronize();
    }

    public void Dispose()
    {
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
        if (_ownsDevice) _device.Dispose();
    }
}
