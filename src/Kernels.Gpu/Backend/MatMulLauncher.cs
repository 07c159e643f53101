using System.Collections.Concurrent;
using ILGPU;
using ILGPU.Runtime;
using Infer.Kernels.Gpu.Kernels;

namespace Infer.Kernels.Gpu.Backend;

/// <summary>One weight of a fused matmul launch, its output and optional bias (all batch rows, the weight's full width).</summary>
internal readonly record struct MatMulPart(GpuWeight W, GpuActivation Y, GpuWeight? Bias = null);

/// <summary>
/// Launches the matmul kernels: the plain one; <see cref="GpuKernels.MatMulFused{TF}"/> (up to three weights of one format over one
/// input, with biases, or gate/up with SwiGLU, or one weight with the residual add); <see cref="GpuKernels.MatMulNorm{TF, TV}"/> (the
/// same with the RMSNorm of the input computed in the launch, optionally with RoPE and the KV store in the epilogue).
/// </summary>
internal sealed class MatMulLauncher(DeviceState d, GpuBackendOptions options)
{
    /// <summary>Batches of at least this many tokens take the int8 GEMM where the weights have one (GpuBackendOptions.GemmMinTokens 0).</summary>
    public const int DefaultGemmMinTokens = 16;

    private readonly int _gemmMin = options.GemmMinTokens > 0 ? options.GemmMinTokens : DefaultGemmMinTokens;
    private readonly Lazy<Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int>> _quantize =
        new(() => d.Acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int>(
            GpuKernels.QuantizeQ8));
    private MemoryBuffer1D<int, Stride1D.Dense>? _xq;
    private MemoryBuffer1D<float, Stride1D.Dense>? _xd, _xs;

    /// <summary>Most floats of normalized input rows a MatMulNorm group keeps in shared memory (32 KiB).</summary>
    public const int MaxNormFloats = 8192;

    /// <summary>Whether <see cref="Norm"/> can normalize whole rows of <paramref name="x"/> with <paramref name="norm"/> for n tokens.</summary>
    public static bool NormFits(GpuActivation x, GpuWeight norm, int n) =>
        norm.Floats is not null && norm.Cols == x.Cols && Math.Min(n, GpuKernels.TokensPerTile) * x.Cols <= MaxNormFloats;

    private int Int8Flag => !options.Int8Decode ? 0 : options.BlockDecode ? 2 : 1;

    /// <summary>
    /// Whether one-token tiles of quantized weights dot an int8 copy of the activations (decode on a GPU: the GPU path of the
    /// matmuls, one weight row per group of threads; ILGPU's CPU accelerator takes whole rows per thread and keeps float32).
    /// </summary>
    public bool Int8Decode => options.Int8Decode && Slice() > 1;

    private int Slice() => options.MatMulSliceThreads > 0 ? Math.Min(options.MatMulSliceThreads, d.Group)
        : d.IsCpuAccelerator ? 1 : Math.Min(d.Group, 32);

    /// <summary>
    /// Threads per weight row and groups for a matmul over <paramref name="rows"/> rows and <paramref name="n"/> tokens by
    /// <paramref name="kernel"/> (with <paramref name="dynamicBytes"/> of dynamic shared memory per group).
    /// </summary>
    private (int Slice, KernelConfig Config) Grid(int rows, int n, Delegate kernel, int dynamicBytes = 0)
    {
        // A warp's worth of threads per row on a GPU; one thread per row on ILGPU's CPU accelerator, where barriers are costly.
        int group = d.Group;
        int slice = Slice();
        int rowsPerGroup = group / slice;
        int groups = (rows + rowsPerGroup - 1) / rowsPerGroup;
        // The kernels loop over row blocks, so groups beyond what the device runs at once would only repeat each group's
        // quantization (and norm) of x, and a second partial wave would leave most multiprocessors idle: as many as the
        // multiprocessors hold at once (GpuBackendOptions.MatMulGroupsPerSM), which the matmul kernels' registers decide (ptxas
        // for sm_90: 40 to 106 a thread, so 2 to 6 groups of 256).
        int perSm = options.MatMulGroupsPerSM > 0 ? options.MatMulGroupsPerSM
            : slice == 1 ? 2 : Resident(kernel, group, dynamicBytes);
        groups = Math.Min(groups, perSm * Math.Max(1, d.Acc.NumMultiprocessors));
        var grid = new Index2D(groups, (n + GpuKernels.TokensPerTile - 1) / GpuKernels.TokensPerTile);
        return (slice, new KernelConfig(grid, new Index2D(group, 1)));
    }

    private readonly ConcurrentDictionary<(Delegate, int), int> _resident = new();

    /// <summary>
    /// Groups of <paramref name="kernel"/> one multiprocessor holds at once (the accelerator's occupancy estimate: on CUDA the
    /// driver's, from the kernel's registers and shared memory); where there is none (the kernel not found, an accelerator
    /// without the estimate), half the threads it schedules.
    /// </summary>
    private int Resident(Delegate kernel, int group, int dynamicBytes)
    {
        if (_resident.TryGetValue((kernel, dynamicBytes), out int r)) return r;
        r = d.Acc.MaxNumThreadsPerMultiprocessor / group / 2;
        try
        {
            if (kernel.TryGetKernel(out var k)) r = d.Acc.EstimateMaxActiveGroupsPerMultiprocessor(k, group, dynamicBytes);
        }
        catch (NotSupportedException)
        {
            // keep the fallback
        }
        return _resident[(kernel, dynamicBytes)] = Math.Max(1, r);
    }

    public static void CheckShape(GpuWeight w, GpuActivation x, GpuActivation y)
    {
        if (x.Cols != w.Cols || y.Cols < w.Rows)
            throw new ArgumentException($"matmul shape mismatch: '{w.Name}' is [{w.Rows} x {w.Cols}], input has {x.Cols} columns, output {y.Cols}");
    }

    /// <summary>y[t, :] = W · x[t, :] for the first <paramref name="n"/> rows.</summary>
    public void Plain(GpuWeight w, GpuActivation x, GpuActivation y, int n)
    {
        CheckShape(w, x, y);
        if (n == 0) return;
        if (UsesGemm(n, w))
        {
            Gemm(x, n, [new(w, y)]);
            return;
        }
        var (slice, config) = Grid(w.Rows, n, w.Kernels.MatMul);
        var args = new MatMulArgs
        {
            Rows = w.Rows, Cols = w.Cols, Tokens = n, XStride = x.Cols, YStride = y.Cols, SliceThreads = slice, Int8 = Int8Flag,
        };
        w.Kernels.MatMul(config, w.Words.View, (w.Scales ?? d.NoScales).View, x.View, y.View, args);
        d.Count();
    }

    /// <summary>
    /// One launch over x for 1 to 3 parts of one weight format: each part's y = W·x (+ bias). With <paramref name="swiGlu"/>
    /// (two parts: gate, up) y0 = silu(W0·x) * (W1·x) and y1 = W1·x. With <paramref name="residual"/> (one part, no bias)
    /// y0 = W0·x and residual += y0.
    /// </summary>
    public void Fused(GpuActivation x, int n, ReadOnlySpan<MatMulPart> parts, bool swiGlu = false, GpuActivation? residual = null)
    {
        CheckParts(x, parts);
        if (n == 0) return;
        var p0 = parts[0];
        var p1 = parts.Length > 1 ? parts[1] : p0;
        var p2 = parts.Length > 2 ? parts[2] : p0;
        var args = new FusedMatMulArgs
        {
            Cols = x.Cols, Tokens = n, XStride = x.Cols,
            Rows0 = p0.W.Rows, Rows1 = parts.Length > 1 ? p1.W.Rows : 0, Rows2 = parts.Length > 2 ? p2.W.Rows : 0,
            YStride0 = p0.Y.Cols, YStride1 = residual?.Cols ?? p1.Y.Cols, YStride2 = p2.Y.Cols,
            Bias0 = p0.Bias is null ? 0 : 1,
            Bias1 = parts.Length > 1 && p1.Bias is not null ? 1 : 0,
            Bias2 = parts.Length > 2 && p2.Bias is not null ? 1 : 0,
            SwiGlu = swiGlu ? 1 : 0, Residual = residual is null ? 0 : 1, Int8 = Int8Flag,
        };
        var (slice, config) = Grid(args.TotalRows, n, p0.W.Kernels.MatMulFused);
        args.SliceThreads = slice;
        p0.W.Kernels.MatMulFused(config,
            p0.W.Words.View, Scales(p0.W), p1.W.Words.View, Scales(p1.W), p2.W.Words.View, Scales(p2.W),
            x.View, p0.Y.View, (residual ?? p1.Y).View, p2.Y.View, Bias(p0.Bias), Bias(p1.Bias), Bias(p2.Bias), args);
        d.Count();
    }

    /// <summary>
    /// <see cref="Fused"/> (no biases, no residual) with xb = norm(src) computed inside the launch: src rows start
    /// <paramref name="srcOffset"/> floats into <paramref name="src"/> (a single gathered row), xb is written too, and the parts
    /// multiply xb. With <paramref name="rope"/> enabled (three parts: Q, K, V), q and k are rotated and k, v stored in the cache.
    /// The third part may be in another format where <see cref="MixedFits"/> says so.
    /// </summary>
    public void Norm(GpuActivation src, long srcOffset, GpuWeight norm, float eps, GpuActivation xb, int n, ReadOnlySpan<MatMulPart> parts,
        bool swiGlu = false, RopeStoreViews rope = default)
    {
        CheckParts(xb, parts, mixedThird: parts.Length == 3 && MixedFits(parts[0].W, parts[2].W));
        if (!NormFits(src, norm, n) || xb.Cols != src.Cols)
            throw new ArgumentException($"'{norm.Name}' cannot be fused into a matmul over rows of {src.Cols}");
        if (n == 0) return;
        var p0 = parts[0];
        var p1 = parts.Length > 1 ? parts[1] : p0;
        var p2 = parts.Length > 2 ? parts[2] : p0;
        var args = new FusedMatMulArgs
        {
            Cols = src.Cols, Tokens = n, XStride = src.Cols, XbStride = xb.Cols, Eps = eps,
            Rows0 = p0.W.Rows, Rows1 = parts.Length > 1 ? p1.W.Rows : 0, Rows2 = parts.Length > 2 ? p2.W.Rows : 0,
            YStride0 = p0.Y.Cols, YStride1 = p1.Y.Cols, YStride2 = p2.Y.Cols,
            SwiGlu = swiGlu ? 1 : 0,
            RopeRows = rope.Enabled != 0 ? (rope.Heads + rope.KvHeads) * rope.PerHead + p2.W.Rows : 0, Int8 = Int8Flag,
        };
        if (rope.Enabled == 0)
        {
            // Views the kernel never reads still need valid buffers.
            rope.Cos = rope.Sin = rope.Cache.K = rope.Cache.V = d.NoFloats.View;
            rope.Cache.K16 = rope.Cache.V16 = d.NoScales.View;
            rope.Cache.K8 = rope.Cache.V8 = d.NoQuants.View;
            rope.Batch = d.Batch.View;
        }
        var kernel = p2.W.Type == p0.W.Type ? p0.W.Kernels.MatMulNorm : p0.W.Kernels.MixedNorm[p2.W.Type].Value;
        int dynamicFloats = Math.Min(n, GpuKernels.TokensPerTile) * src.Cols;
        var (slice, grid) = Grid(args.TotalRows, n, kernel, dynamicFloats * sizeof(float));
        args.SliceThreads = slice;
        var config = new KernelConfig(grid.GridDim, grid.GroupDim, SharedMemoryConfig.RequestDynamic<float>(dynamicFloats));
        var srcView = src.View.SubView(srcOffset, src.View.Length - srcOffset);
        kernel(config,
            p0.W.Words.View, Scales(p0.W), p1.W.Words.View, Scales(p1.W), p2.W.Words.View, Scales(p2.W),
            srcView, norm.Floats!.View, xb.View, p0.Y.View, p1.Y.View, p2.Y.View, args, rope);
        d.Count();
    }

    /// <summary>The int8 GEMM's threshold in tokens, or null where the device cannot run it (groups under 128 threads).</summary>
    public int? GemmMinTokens => GemmError is null && d.Acc.MaxNumThreadsPerGroup >= GpuKernels.GemmThreads ? _gemmMin : null;

    /// <summary>
    /// Why the int8 GEMM is off on this device: its kernels failed to compile for it (the batches then run on the float32
    /// matmuls); null while none has failed.
    /// </summary>
    public string? GemmError { get; private set; }

    /// <summary>
    /// Whether a batch of <paramref name="n"/> tokens multiplies <paramref name="w"/> with the int8 GEMM (quantized weights but
    /// Q2_K). A device whose groups hold fewer than <see cref="GpuKernels.GemmThreads"/> threads (ILGPU's CPU accelerator as the backend
    /// opens it by default) keeps the float32 matmuls.
    /// </summary>
    public bool UsesGemm(int n, GpuWeight w) =>
        GemmMinTokens is int min && n >= min && w.Kernels.Gemm is { } gemm && Compiles(gemm) && (!Wide || Compiles(w.Kernels.GemmWide!));

    /// <summary>
    /// Whether batches may take <see cref="GpuKernels.GemmQ8Wide{TF}"/> (GpuBackendOptions.GemmKernel 0 or 2, on devices whose groups
    /// hold 256 threads) rather than <see cref="GpuKernels.GemmQ8{TF}"/>.
    /// </summary>
    private bool Wide => options.GemmKernel != 1 && d.Acc.MaxNumThreadsPerGroup >= GpuKernels.WideThreads;

    /// <summary>
    /// Whether a launch of <paramref name="rowTiles"/> 128-row tiles times <paramref name="n"/> tokens takes the wide kernel: always
    /// with GemmKernel 2; with 0 (automatic) only where its 128 × 64 tiles still give every multiprocessor a group (Llama-3.2-1B's
    /// attn_output, 2048 rows, at 512 tokens makes 128 wide tiles but 512 of the first kernel's 64 × 32).
    /// </summary>
    private bool WideFor(long rowTiles, int n) => Wide && (options.GemmKernel == 2
        || rowTiles * ((n + GpuKernels.WideTokens - 1) / GpuKernels.WideTokens) >= d.Acc.NumMultiprocessors);

    /// <summary>Which int8 GEMM kernel the batches take (for the backend's status line).</summary>
    public string GemmKernelName => Wide
        ? $"GemmQ8Wide, {GpuKernels.WideRows} x {GpuKernels.WideTokens} tiles"
            + (options.GemmKernel == 0 ? " where they fill the device, else GemmQ8" : "") + $"; {GpuBackendOptions.GemmVariable}=1 for GemmQ8"
        : $"GemmQ8, {GpuKernels.GemmRows} x {GpuKernels.GemmTokens} tiles";

    /// <summary>
    /// Compiles the GEMM of a format and the activation quantizer on first use; a failure turns the GEMM off (<see cref="GemmError"/>).
    /// </summary>
    private bool Compiles<T>(Lazy<T> gemm)
    {
        if (gemm.IsValueCreated && _quantize.IsValueCreated) return true;
        try
        {
            _ = _quantize.Value;
            _ = gemm.Value;
            return true;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            GemmError = $"{e.GetType().Name}: {e.Message}";
            return false;
        }
    }

    /// <summary>
    /// y = W·x for each part (no biases) with <see cref="GpuKernels.GemmQ8Wide{TF}"/> (or <see cref="GpuKernels.GemmQ8{TF}"/>: see
    /// <see cref="Wide"/>): x quantized to int8 blocks once (<see cref="GpuKernels.QuantizeQ8"/>), then one launch per run of up to
    /// three consecutive parts of one format (<see cref="GemmParts"/>: Q, K and V, or gate and up, share a launch, so small K and V
    /// weights fill the device together). With <paramref name="residual"/> (one part): residual += y as well, in the same launch.
    /// </summary>
    public void Gemm(GpuActivation x, int n, ReadOnlySpan<MatMulPart> parts, GpuActivation? residual = null)
    {
        foreach (var p in parts)
        {
            CheckShape(p.W, x, p.Y);
            if (p.W.Kernels.Gemm is null || p.Bias is not null || p.W.Cols % 32 != 0)
                throw new ArgumentException($"'{p.W.Name}' ({p.W.Type}) has no int8 GEMM without a bias");
        }
        if (residual is not null && (parts.Length != 1 || residual.Cols < parts[0].W.Rows))
            throw new ArgumentException("a GEMM adds into a residual for one weight whose rows the residual holds");
        if (n == 0) return;
        int blocks = x.Cols / 32;
        EnsureScratch(ref _xq, (long)n * x.Cols / 4);
        EnsureScratch(ref _xd, (long)n * blocks);
        EnsureScratch(ref _xs, (long)n * blocks);
        int total = n * blocks, group = GpuKernels.GemmThreads; // eight threads a block (the GEMM needs groups of 128 anyway)
        _quantize.Value(new KernelConfig((int)(((long)total * 8 + group - 1) / group), group), x.View, _xq!.View, _xd!.View, _xs!.View, x.Cols,
            x.Cols, total);
        d.Count();
        for (int i = 0; i < parts.Length;)
        {
            int j = i + 1;
            while (j < parts.Length && j - i < 3 && parts[j].W.Type == parts[i].W.Type) j++;
            GemmRun(parts.Slice(i, j - i), x.Cols, n, residual);
            i = j;
        }
    }

    /// <summary>One GEMM launch over 1 to 3 weights of one format (the first the kernel's own arguments, the others its GemmParts).</summary>
    private void GemmRun(ReadOnlySpan<MatMulPart> run, int cols, int n, GpuActivation? residual)
    {
        static int Tiles(int rows, int tile) => (rows + tile - 1) / tile;
        var p0 = run[0];
        var p1 = run.Length > 1 ? run[1] : p0;
        var p2 = run.Length > 2 ? run[2] : p0;
        long wideTiles = 0;
        foreach (var p in run) wideTiles += Tiles(p.W.Rows, GpuKernels.WideRows);
        bool wide = WideFor(wideTiles, n);
        var (rowTile, tokenTile, threads) = wide ? (GpuKernels.WideRows, GpuKernels.WideTokens, GpuKernels.WideThreads)
            : (GpuKernels.GemmRows, GpuKernels.GemmTokens, GpuKernels.GemmThreads);
        int t0 = Tiles(p0.W.Rows, rowTile), t1 = run.Length > 1 ? Tiles(p1.W.Rows, rowTile) : 0;
        int t2 = run.Length > 2 ? Tiles(p2.W.Rows, rowTile) : 0;
        var more = new GemmParts
        {
            W1 = p1.W.Words.View, S1 = Scales(p1.W), Y1 = p1.Y.View, W2 = p2.W.Words.View, S2 = Scales(p2.W), Y2 = p2.Y.View,
            R = (residual ?? p0.Y).View, Rows1 = p1.W.Rows, Rows2 = p2.W.Rows, YStride1 = p1.Y.Cols, YStride2 = p2.Y.Cols,
            Tiles0 = t0, Tiles1 = t1,
        };
        var args = new GemmArgs
        {
            Rows = p0.W.Rows, Cols = cols, Tokens = n, YStride = p0.Y.Cols, Add = residual is null ? 0 : 1, RStride = residual?.Cols ?? 0,
        };
        var grid = new Index2D(t0 + t1 + t2, Tiles(n, tokenTile));
        (wide ? p0.W.Kernels.GemmWide! : p0.W.Kernels.Gemm!).Value(new KernelConfig(grid, new Index2D(threads, 1)), p0.W.Words.View,
            Scales(p0.W), _xq!.View, _xd!.View, _xs!.View, p0.Y.View, args, more);
        d.Count();
    }

    private void EnsureScratch<T>(ref MemoryBuffer1D<T, Stride1D.Dense>? buffer, long length) where T : unmanaged
    {
        if (buffer is not null && buffer.Length >= length) return;
        d.Release(buffer);
        buffer = d.Track(d.Acc.Allocate1D<T>(Math.Max(length, 1)));
    }

    private ArrayView<ushort> Scales(GpuWeight w) => (w.Scales ?? d.NoScales).View;

    private ArrayView<float> Bias(GpuWeight? b) => (b?.Floats ?? d.NoFloats).View;

    /// <summary>Whether <see cref="Norm"/> takes <paramref name="third"/> in its own format beside parts of <paramref name="first"/>'s.</summary>
    public static bool MixedFits(GpuWeight first, GpuWeight third) =>
        third.Type == first.Type || first.Kernels.MixedNorm.ContainsKey(third.Type);

    private static void CheckParts(GpuActivation x, ReadOnlySpan<MatMulPart> parts, bool mixedThird = false)
    {
        if (parts.Length is < 1 or > 3) throw new ArgumentException($"a fused matmul takes 1 to 3 weights, got {parts.Length}");
        for (int i = 0; i < parts.Length; i++)
        {
            var p = parts[i];
            CheckShape(p.W, x, p.Y);
            if (p.W.Type != parts[0].W.Type && !(i == 2 && mixedThird))
                throw new ArgumentException($"fused weights differ in type: '{p.W.Name}' and '{parts[0].W.Name}'");
            if (p.Bias is { } b && (b.Floats is null || b.Cols != p.W.Rows))
                throw new ArgumentException($"bias '{b.Name}' ({b.Cols}) does not match '{p.W.Name}' ({p.W.Rows} rows)");
        }
    }
}
