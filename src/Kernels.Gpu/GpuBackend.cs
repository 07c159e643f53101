using ILGPU.Runtime;
using Infer.Kernels.Gpu.Backend;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Gpu;

/// <summary>Sizing and test knobs of a <see cref="GpuBackend"/>.</summary>
/// <param name="MaxBatch">Most tokens per batch; at least the model's batch size (LlamaModel caps it at 8192). Costs 12 bytes per token.</param>
/// <param name="AttentionSplits">Position ranges per (token, head) in attention; 0 chooses from the device and the batch.</param>
/// <param name="MatMulSliceThreads">
/// Threads sharing one weight row in a matmul (a power of two); 0: 32 on a GPU, 1 on ILGPU's CPU accelerator.
/// </param>
/// <param name="GemmMinTokens">
/// Batches of at least this many tokens multiply quantized weights (every type but F32, F16, BF16 and Q2_K) with the int8 GEMM
/// (activations quantized to int8 blocks, tensor cores on CUDA); 0: 16. int.MaxValue keeps every batch on the float32 matmuls.
/// </param>
/// <param name="MatMulGroupsPerSM">
/// Most groups per multiprocessor a matmul launch starts (its groups loop over the rows); 0: as many as a multiprocessor holds
/// (2 on ILGPU's CPU accelerator). Smaller values make the tests' launches loop; a device check compares settings through the
/// environment variable <c>INFER_GPU_MATMUL_GROUPS</c> (<see cref="ForRun"/>).
/// </param>
/// <param name="Int8Decode">
/// One-token tiles (decode) of quantized weights dot an int8 copy of the activations (dp4a on CUDA), as llama.cpp's CUDA decode does;
/// false keeps them in float32.
/// </param>
/// <param name="GemmKernel">
/// Which int8 GEMM runs the batches: 0, <c>GpuKernels.GemmQ8Wide</c> (128 × 64 tiles, 256 threads, the next stage's loads in
/// registers) where its tiles give every multiprocessor a group, else <c>GpuKernels.GemmQ8</c> (64 × 32 tiles, 128 threads; also
/// where the device's groups hold fewer than 256 threads); 1, always GemmQ8; 2, GemmQ8Wide wherever the device allows. A device
/// check compares them through the environment variable <c>INFER_GPU_GEMM</c> (<see cref="ForRun"/>).
/// </param>
/// <param name="BlockDecode">
/// With <paramref name="Int8Decode"/>, the formats whose 32-element blocks are 16-byte aligned words (Q8_0, Q4_0, Q4_K, Q5_K,
/// Q6_K) take a whole block per thread and step with 128-bit loads; false: a word per step, as the other formats. A device check
/// compares the two through the environment variable <c>INFER_GPU_BLOCKDOT</c> (<see cref="ForRun"/>).
/// </param>
/// <param name="PrefillAttention">
/// 0: batches of at least 16 tokens (prompts) attend with the tiled flash-attention kernel where their tiles each hold one sequence;
/// 1: every batch takes the per-(token, head) kernel (as decode does). A device check compares the two through the environment variable
/// <c>INFER_GPU_PREFILL_ATTN</c> (<see cref="ForRun"/>).
/// </param>
public sealed record GpuBackendOptions(int MaxBatch = 8192, int AttentionSplits = 0, int MatMulSliceThreads = 0, int GemmMinTokens = 0,
    bool Int8Decode = true, int MatMulGroupsPerSM = 0, int GemmKernel = 0, int PrefillAttention = 0, bool BlockDecode = true)
{
    /// <summary>The environment variable that turns the int8 paths off for a run when it is "0".</summary>
    public const string Int8Variable = "INFER_GPU_INT8";

    /// <summary>
    /// The options of a run (the CLI, the server, backend-ops): <paramref name="maxBatch"/>, and the int8 GEMM and int8 decode
    /// unless <see cref="Int8Variable"/> is "0", which keeps
    /// prompts and decode in float32: a comparison, or a way round a device where the int8 kernels misbehave; the knobs a device
    /// check compares: <see cref="GroupsVariable"/>, <see cref="GemmVariable"/>, <see cref="PrefillVariable"/>,
    /// <see cref="BlockDotVariable"/>. The variables come
    /// from <paramref name="settings"/> when given (tests), else from the environment.
    /// </summary>
    public static GpuBackendOptions ForRun(int maxBatch, IReadOnlyDictionary<string, string>? settings = null)
    {
        string? Get(string name) => (settings is null ? Environment.GetEnvironmentVariable(name) : settings.GetValueOrDefault(name))?.Trim();
        bool off = Get(Int8Variable) == "0";
        int groups = int.TryParse(Get(GroupsVariable), out int g) && g > 0 ? g : 0;
        int gemm = Get(GemmVariable) switch { "1" => 1, "2" => 2, _ => 0 };
        int prefill = Get(PrefillVariable) == "1" ? 1 : 0;
        return new GpuBackendOptions(maxBatch, GemmMinTokens: off ? int.MaxValue : 0, Int8Decode: !off, MatMulGroupsPerSM: groups,
            GemmKernel: gemm, PrefillAttention: prefill, BlockDecode: Get(BlockDotVariable) != "0");
    }

    /// <summary>The environment variable that sets <see cref="BlockDecode"/> for a run: "0" takes a word per step.</summary>
    public const string BlockDotVariable = "INFER_GPU_BLOCKDOT";

    /// <summary>The environment variable that picks the int8 GEMM kernel for a run: "1" the first, "2" the wide (<see cref="GemmKernel"/>).</summary>
    public const string GemmVariable = "INFER_GPU_GEMM";

    /// <summary>The environment variable that sets <see cref="PrefillAttention"/> for a run: "1" keeps prompts on the old kernel.</summary>
    public const string PrefillVariable = "INFER_GPU_PREFILL_ATTN";

    /// <summary>The environment variable that sets <see cref="MatMulGroupsPerSM"/> for a run (a positive integer; else automatic).</summary>
    public const string GroupsVariable = "INFER_GPU_MATMUL_GROUPS";
}

/// <summary>
/// The ILGPU implementation of the backend seam. Weights are uploaded per tensor in their own format (F32, F16, BF16, Q8_0, Q4_0,
/// Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) and decoded inside the kernels; every product and sum is float32,
/// except with quantized weights in batches of at least <see cref="GpuBackendOptions.GemmMinTokens"/> tokens (prefill: the int8
/// GEMM, tensor cores on CUDA) and in one-token tiles on a GPU (decode: <see cref="GpuBackendOptions.Int8Decode"/>, dp4a), where the
/// activations are quantized to int8 blocks and each block is summed exactly, as the CPU backend's quantized dots do. Activations, the batch and
/// the KV cache live on the device: per forward only the batch ids go in and the requested logit rows come out. Kernels are resolved per weight at
/// load time. Every call launches its work at once (in stream order); the fused operations of the seam are where launches merge:
/// <list type="bullet">
/// <item><see cref="NormQkvRope"/>: one MatMulNorm launch (norm, Q/K/V, RoPE and the KV store in the epilogue) when the three weights
/// share a format (or V's format is paired with Q and K's, as Q4_K_M's Q6_K with Q4_K) and there are no biases or per-head norms;
/// else the norm, the Q/K/V matmuls (fused per run of one format, with their biases), the per-head norms, and one launch for
/// RoPE and the store. A q8_0 KV cache part adds one launch that stores its blocks.</item>
/// <item><see cref="MatMulAdd"/>: the residual add in the matmul's epilogue.</item>
/// <item><see cref="NormGateUp"/>: norm, gate, up and SwiGLU in one launch.</item>
/// <item><see cref="NormMatMulRows"/>: for one row, the gather, its norm and the output matmul in one launch.</item>
/// </list>
/// A llama decode step launches 1 (embed) + 5 per layer + 1 (output), attention split over positions or not. A batch on the int8 GEMM
/// quantizes each matmul input once, runs Q, K and V (gate and up) as one GEMM launch per run of one format, adds the residual in
/// the GEMM's stores, and runs the norms, biases and SwiGLU as their own launches.
/// </summary>
public sealed class GpuBackend : IBackend
{
    private readonly GpuDevice _device;
    private readonly bool _ownsDevice;
    private readonly DeviceState _state;
    private readonly WeightUploader _weights;
    private readonly RowLaunchers _rows;
    private readonly MatMulLauncher _matMul;
    private readonly AttentionLauncher _attention;

    /// <param name="device">The accelerator to run on (see <see cref="GpuContextFactory.Select"/>).</param>
    /// <param name="options">sizing and test knobs.</param>
    /// <param name="ownsDevice">Dispose <paramref name="device"/> with the backend.</param>
    public GpuBackend(GpuDevice device, GpuBackendOptions? options = null, bool ownsDevice = true)
    {
        _device = device;
        _ownsDevice = ownsDevice;
        var o = options ?? new GpuBackendOptions();
        if (o.MaxBatch < 1) throw new ArgumentOutOfRangeException(nameof(options), "MaxBatch must be at least 1");
        if (o.MatMulSliceThreads < 0 || (o.MatMulSliceThreads & (o.MatMulSliceThreads - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(options), "MatMulSliceThreads must be 0 or a power of two");
        if (o.MatMulGroupsPerSM < 0) throw new ArgumentOutOfRangeException(nameof(options), "MatMulGroupsPerSM must not be negative");
        if (o.PrefillAttention is not (0 or 1)) throw new ArgumentOutOfRangeException(nameof(options), "PrefillAttention must be 0 or 1");
        if (o.AttentionSplits < 0) throw new ArgumentOutOfRangeException(nameof(options), "AttentionSplits must not be negative");
        _state = new DeviceState(device.Accelerator, o.MaxBatch);
        try
        {
            _weights = new WeightUploader(_state);
            _rows = new RowLaunchers(_state);
            _matMul = new MatMulLauncher(_state, o);
            _attention = new AttentionLauncher(_state, o);
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
    public long Launches => _state.Launches;

    /// <summary>
    /// Batches of at least this many tokens multiply quantized weights (all but Q2_K) with the int8 GEMM (activations rounded
    /// to int8 blocks); null where this device cannot run it (ILGPU's CPU accelerator as opened by default).
    /// </summary>
    public int? Int8GemmMinTokens => _matMul.GemmMinTokens;

    /// <summary>Whether decode dots quantized weights against int8 activations (GpuBackendOptions.Int8Decode on a GPU path).</summary>
    public bool Int8Decode => _matMul.Int8Decode;

    /// <summary>Why the int8 GEMM is off: its kernels did not compile for this device; null while none failed.</summary>
    public string? Int8GemmError => _matMul.GemmError;

    /// <summary>One line on the int8 GEMM of prompts: from how many tokens it runs, or why it does not.</summary>
    public string Int8GemmStatus => Int8GemmError is { } e ? $"int8 GEMM off ({e}): prompts run on the float32 matmuls"
        : Int8GemmMinTokens is int.MaxValue ? $"int8 GEMM off (GemmMinTokens; {GpuBackendOptions.Int8Variable}=0): prompts run on the float32 matmuls"
        : Int8GemmMinTokens is int min ? $"int8 GEMM ({_matMul.GemmKernelName}) for batches of {min}+ tokens over quantized weights but Q2_K"
        : "int8 GEMM off (this device's groups hold fewer than 128 threads): prompts run on the float32 matmuls";

    /// <summary>Attention launches that took the tiled prefill kernel (GpuKernels.AttentionPrefill) so far.</summary>
    internal long PrefillAttentionLaunches => _attention.PrefillLaunches;

    /// <summary>Launches since the last <see cref="SetBatch"/>: after a forward pass, that pass's count.</summary>
    public int LaunchesThisBatch => _state.LaunchesThisBatch;

    /// <summary>Bytes of weights uploaded so far.</summary>
    public long WeightBytes => _weights.WeightBytes;

    /// <summary>Weight types this backend runs.</summary>
    public static bool IsSupported(GgmlType type) => WeightUploader.IsSupported(type);

    private static GpuActivation A(IActivation a) => (GpuActivation)a;
    private static GpuWeight W(IWeight w) => (GpuWeight)w;
    private int Rows(int rows) => rows < 0 ? _state.N : rows;

    // ---- buffers ----

    public IWeight LoadWeight(GgufTensor tensor) => _weights.LoadWeight(tensor);

    /// <summary>Uploads a weight [rows, cols] given in its GGUF encoding (rows of ggml blocks).</summary>
    public IWeight UploadWeight(string name, GgmlType type, int rows, int cols, ReadOnlySpan<byte> data) =>
        _weights.UploadWeight(name, type, rows, cols, data);

    public IActivation Allocate(int rows, int cols)
    {
        if (rows < 1 || cols < 1) throw new ArgumentOutOfRangeException(nameof(rows), $"activation [{rows}, {cols}] is empty");
        var buffer = _state.Track(_state.Acc.Allocate1D<float>((long)rows * cols));
        buffer.MemSetToZero();
        return new GpuActivation { Rows = rows, Cols = cols, Buffer = buffer };
    }

    /// <summary>Copies host rows into an activation (tests).</summary>
    public void Write(IActivation x, ReadOnlySpan<float> data) => A(x).View.SubView(0, data.Length).CopyFromCPU(data);

    /// <summary>The GPU kernels store and read a float32, IEEE-half or q8_0 cache.</summary>
    public bool SupportsKvCacheType(KvCacheType type) => AttentionLauncher.Supports(type);

    public void CreateKvCache(KvCacheConfig config) => _attention.CreateKvCache(config);

    public void SetBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> sequences) =>
        _state.SetBatch(tokens, positions, sequences);

    // ---- primitives: one launch each (GatherRows: one copy per row) ----

    public void Embed(IWeight table, IActivation x) => _rows.Embed(W(table), A(x));

    public void RmsNorm(IActivation x, IWeight weight, float eps, IActivation y, int rows = -1) =>
        _rows.RmsNorm(A(x), W(weight), eps, A(y), Rows(rows));

    public void MatMul(IWeight w, IActivation x, IActivation y, int rows = -1) => _matMul.Plain(W(w), A(x), A(y), Rows(rows));

    public void AddBias(IActivation y, IWeight bias) => _rows.AddBias(A(y), W(bias));

    public void Rope(IActivation x, int headDim, RopeConfig rope) => _attention.Rope(A(x), headDim, rope);

    public void StoreKv(int layer, IActivation k, IActivation v) => _attention.StoreKv(layer, A(k), A(v));

    public void Attention(int layer, IActivation q, IActivation output, AttentionShape shape) => _attention.Attend(layer, A(q), A(output), shape);

    public void SwiGlu(IActivation gate, IActivation up) => _rows.SwiGlu(A(gate), A(up));

    public void Add(IActivation x, IActivation y) => _rows.Add(A(x), A(y));

    public void GatherRows(IActivation src, ReadOnlySpan<int> rows, IActivation dst) => _rows.GatherRows(A(src), rows, A(dst));

    // ---- fused operations ----

    public void NormQkvRope(int layer, IActivation x, QkvWeights w, AttentionShape shape, IActivation xb, IActivation q, IActivation k, IActivation v)
    {
        var (xa, xba, qa, ka, va) = (A(x), A(xb), A(q), A(k), A(v));
        var (wq, wk, wv) = (W(w.Wq), W(w.Wk), W(w.Wv));
        int n = _state.N;
        bool oneFormat = wq.Type == wk.Type && MatMulLauncher.MixedFits(wq, wv); // V may differ where a kernel pairs them (Q4_K_M)
        bool normFits = MatMulLauncher.NormFits(xa, W(w.Norm), n) && xba.Cols == xa.Cols;
        bool gemm = _matMul.UsesGemm(n, wq) && _matMul.UsesGemm(n, wk) && _matMul.UsesGemm(n, wv);
        if (gemm)
        {
            // a prefill batch: the norm, the int8 GEMMs over one quantized copy of xb, the biases, RoPE and the store
            _rows.RmsNorm(xa, W(w.Norm), shape.Eps, xba, n);
            _matMul.Gemm(xba, n, [new(wq, qa), new(wk, ka), new(wv, va)]);
            if (w.Bq is not null) _rows.AddBias(qa, W(w.Bq));
            if (w.Bk is not null) _rows.AddBias(ka, W(w.Bk));
            if (w.Bv is not null) _rows.AddBias(va, W(w.Bv));
        }
        else if (oneFormat && normFits && w.Bq is null && w.QNorm is null && qa.Cols == shape.QDim && ka.Cols == shape.KvDim
            && wq.Rows == shape.QDim && wk.Rows == shape.KvDim && wv.Rows == shape.KvDim)
        {
            // norm → Q, K, V → RoPE → KV store: one launch
            _matMul.Norm(xa, 0, W(w.Norm), shape.Eps, xba, n, [new(wq, qa), new(wk, ka), new(wv, va)], rope: _attention.EpilogueViews(layer, shape));
            _attention.StoreBlocksAfterRope(layer, ka, va); // a q8_0 cache part: one more launch
            return;
        }
        else
        {
            // Biases do not fit MatMulNorm: the norm runs alone, then the biased matmuls. Otherwise the norm joins the first run of one format.
            bool normInMatMul = normFits && w.Bq is null;
            if (!normInMatMul) _rows.RmsNorm(xa, W(w.Norm), shape.Eps, xba, n);
            Span<MatMulPart> parts = [new(wq, qa, B(w.Bq)), new(wk, ka, B(w.Bk)), new(wv, va, B(w.Bv))]; // on the stack
            for (int i = 0; i < 3;)
            {
                int j = i + 1;
                while (j < 3 && parts[j].W.Type == parts[i].W.Type) j++;
                var run = parts.Slice(i, j - i);
                if (i == 0 && normInMatMul) _matMul.Norm(xa, 0, W(w.Norm), shape.Eps, xba, n, run);
                else if (run.Length == 1 && run[0].Bias is null) _matMul.Plain(run[0].W, xba, run[0].Y, n);
                else _matMul.Fused(xba, n, run);
                i = j;
            }
        }
        if (w.QNorm is not null)
        {
            _rows.RmsNorm(qa, W(w.QNorm), shape.Eps, qa, n); // per head: q_norm(q.view(heads, headDim))
            _rows.RmsNorm(ka, W(w.KNorm!), shape.Eps, ka, n);
        }
        _attention.RopeStoreKv(layer, qa, ka, va, shape);
    }

    public void MatMulAdd(IWeight w, IActivation x, IActivation y, IActivation residual)
    {
        var (wa, xa, ya, ra) = (W(w), A(x), A(y), A(residual));
        if (wa.Rows == ra.Cols && ya.Cols >= ra.Cols && xa != ra && ra != ya)
        {
            if (_matMul.UsesGemm(_state.N, wa)) _matMul.Gemm(xa, _state.N, [new(wa, ya)], residual: ra); // the add in the GEMM's stores
            else _matMul.Fused(xa, _state.N, [new(wa, ya)], residual: ra);
            return;
        }
        _matMul.Plain(wa, xa, ya, _state.N);
        _rows.Add(ra, ya);
    }

    public void NormGateUp(IActivation x, GateUpWeights w, float eps, IActivation xb, IActivation gate, IActivation up)
    {
        var (xa, xba, ga, ua, wg, wu) = (A(x), A(xb), A(gate), A(up), W(w.Gate), W(w.Up));
        int n = _state.N;
        bool oneFormat = wg.Type == wu.Type && wg.Rows == ga.Cols && wu.Rows == ga.Cols && ua.Cols == ga.Cols;
        if (_matMul.UsesGemm(n, wg) && _matMul.UsesGemm(n, wu))
        {
            // a prefill batch: the norm, both int8 GEMMs over one quantized copy of xb, SwiGLU
            _rows.RmsNorm(xa, W(w.Norm), eps, xba, n);
            _matMul.Gemm(xba, n, [new(wg, ga), new(wu, ua)]);
            _rows.SwiGlu(ga, ua);
            return;
        }
        if (MatMulLauncher.NormFits(xa, W(w.Norm), n) && xba.Cols == xa.Cols)
        {
            if (oneFormat)
            {
                _matMul.Norm(xa, 0, W(w.Norm), eps, xba, n, [new(wg, ga), new(wu, ua)], swiGlu: true); // one launch
                return;
            }
            _matMul.Norm(xa, 0, W(w.Norm), eps, xba, n, [new(wg, ga)]);
        }
        else
        {
            _rows.RmsNorm(xa, W(w.Norm), eps, xba, n);
            if (oneFormat)
            {
                _matMul.Fused(xba, n, [new(wg, ga), new(wu, ua)], swiGlu: true);
                return;
            }
            _matMul.Plain(wg, xba, ga, n);
        }
        _matMul.Plain(wu, xba, ua, n);
        _rows.SwiGlu(ga, ua);
    }

    public void NormMatMulRows(IActivation x, ReadOnlySpan<int> rows, IWeight norm, float eps, IWeight w, IActivation xRows, IActivation y)
    {
        var (xa, xr, ya, nw) = (A(x), A(xRows), A(y), W(norm));
        if (rows.Length == 1 && xa != xr && MatMulLauncher.NormFits(xa, nw, 1) && xr.Cols == xa.Cols)
        {
            // The gathered row is normalized where it lies and multiplied: one launch, which also writes xRows[0].
            if ((uint)rows[0] >= (uint)xa.Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"row {rows[0]} is outside 0..{xa.Rows - 1}");
            _matMul.Norm(xa, (long)rows[0] * xa.Cols, nw, eps, xr, 1, [new(W(w), ya)]);
            return;
        }
        _rows.GatherRows(xa, rows, xr);
        _rows.RmsNorm(xr, nw, eps, xr, rows.Length);
        _matMul.Plain(W(w), xr, ya, rows.Length);
    }

    // ---- fusions below the seam's, for tests and tools (each one launch) ----

    /// <summary>x += r; y = norm(x): one launch.</summary>
    internal void AddRmsNorm(IActivation x, IActivation r, IWeight weight, float eps, IActivation y) =>
        _rows.RmsNorm(A(x), W(weight), eps, A(y), _state.N, residual: A(r));

    /// <summary>Up to three matmuls of one format over x, each with an optional bias: one launch.</summary>
    internal void MatMuls(IActivation x, ReadOnlySpan<(IWeight W, IActivation Y, IWeight? Bias)> parts)
    {
        Span<MatMulPart> p = new MatMulPart[parts.Length];
        for (int i = 0; i < parts.Length; i++) p[i] = new(W(parts[i].W), A(parts[i].Y), parts[i].Bias is { } b ? W(b) : null);
        _matMul.Fused(A(x), _state.N, p);
    }

    /// <summary>y = W·x for each part on the int8 GEMM: the quantization, then one launch per run of one format.</summary>
    internal void Gemms(IActivation x, ReadOnlySpan<(IWeight W, IActivation Y)> parts)
    {
        Span<MatMulPart> p = new MatMulPart[parts.Length];
        for (int i = 0; i < parts.Length; i++) p[i] = new(W(parts[i].W), A(parts[i].Y));
        _matMul.Gemm(A(x), _state.N, p);
    }

    /// <summary>gate = silu(Wg·x) * (Wu·x), up = Wu·x: one launch.</summary>
    internal void GateUpSwiGlu(IActivation x, IWeight wGate, IWeight wUp, IActivation gate, IActivation up) =>
        _matMul.Fused(A(x), _state.N, [new(W(wGate), A(gate)), new(W(wUp), A(up))], swiGlu: true);

    /// <summary>xb = norm(x), then up to three matmuls of xb (or gate/up with SwiGLU): one launch.</summary>
    internal void NormMatMuls(IActivation x, IWeight norm, float eps, IActivation xb, ReadOnlySpan<(IWeight W, IActivation Y)> parts,
        bool swiGlu = false)
    {
        Span<MatMulPart> p = new MatMulPart[parts.Length];
        for (int i = 0; i < parts.Length; i++) p[i] = new(W(parts[i].W), A(parts[i].Y));
        _matMul.Norm(A(x), 0, W(norm), eps, A(xb), _state.N, p, swiGlu);
    }

    /// <summary>RoPE of q and k, k and v stored in the cache: one launch.</summary>
    internal void RopeStoreKv(int layer, IActivation q, IActivation k, IActivation v, AttentionShape shape) =>
        _attention.RopeStoreKv(layer, A(q), A(k), A(v), shape);

    /// <summary>dst[0] = norm(x[row]): one launch.</summary>
    internal void NormRow(IActivation x, int row, IWeight norm, float eps, IActivation dst) =>
        _rows.RmsNorm(A(x), W(norm), eps, A(dst), 1, srcOffset: (long)row * A(x).Cols);

    private static GpuWeight? B(IWeight? w) => w is null ? null : W(w);

    // ---- host transfers ----

    public void ReadRow(IActivation x, int row, Span<float> destination)
    {
        var xa = A(x);
        if ((uint)row >= (uint)xa.Rows) throw new ArgumentOutOfRangeException(nameof(row));
        xa.View.SubView((long)row * xa.Cols, xa.Cols).CopyToCPU(destination[..xa.Cols]);
    }

    public void ReadRows(IActivation x, int rows, Span<float> destination)
    {
        var xa = A(x);
        if ((uint)rows > (uint)xa.Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"{rows} rows requested of an activation with {xa.Rows}");
        if (rows == 0) return;
        long length = (long)rows * xa.Cols;
        xa.View.SubView(0, length).CopyToCPU(destination[..(int)length]);
    }

    public void WriteRows(IActivation x, ReadOnlySpan<float> source)
    {
        var xa = A(x);
        if (source.Length % xa.Cols != 0 || source.Length / xa.Cols > xa.Rows)
            throw new ArgumentException($"{source.Length} floats are not whole rows of an activation [{xa.Rows}, {xa.Cols}]");
        if (source.Length == 0) return;
        xa.View.SubView(0, source.Length).CopyFromCPU(source);
    }

    /// <summary>Waits for every queued kernel.</summary>
    public void Synchronize() => _state.Acc.Synchronize();

    public void Dispose()
    {
        _state?.Dispose();
        if (_ownsDevice) _device.Dispose();
    }
}
