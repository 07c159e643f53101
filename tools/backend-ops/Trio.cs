using System.Runtime.InteropServices;
using Infer.Kernels.Cpu;
using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.BackendOps;

/// <summary>A weight loaded on each side of a <see cref="Trio"/>; <see cref="Values"/> holds what every side decodes it to.</summary>
internal sealed class Weight3(IWeight[] sides, GgmlType type, float[] values)
{
    public IWeight this[int side] => sides[side];
    public GgmlType Type { get; } = type;

    /// <summary>The weight as float32 (dequantized by the scalar reference): (rows, cols).</summary>
    public float[] Values { get; } = values;
}

/// <summary>An activation allocated on each side of a <see cref="Trio"/>.</summary>
internal sealed class Act3(IActivation[] sides)
{
    public IActivation this[int side] => sides[side];
    public int Rows => sides[0].Rows;
    public int Cols => sides[0].Cols;
}

/// <summary>
/// The backends a case runs on, side by side: the GPU backend under test; the CPU backend with the same weights (which
/// quantizes activations for quantized weights); and the reference, a CPU backend whose weights are the same values
/// dequantized to F32, so that it computes every operation in float32 from exactly what the GPU decodes. The GPU is held to
/// <see cref="Bound.F32"/> against the reference; the CPU backend to its own bound.
/// </summary>
internal sealed unsafe class Trio : IDisposable
{
    public const int GpuSide = 0, CpuSide = 1, RefSide = 2;
    public static readonly string[] SideNames = ["gpu", "cpu", "ref"];

    private readonly List<nint> _native = [];
    private readonly IBackend[] _sides;

    /// <param name="device">the accelerator (not owned).</param>
    /// <param name="maxBatch">most tokens per batch on every side.</param>
    /// <param name="threads">CPU worker threads (0: all cores).</param>
    public Trio(GpuDevice device, int maxBatch, int threads)
    {
        Gpu = new GpuBackend(device, GpuBackendOptions.ForRun(maxBatch), ownsDevice: false);
        try
        {
            Cpu = new CpuBackend(threads, maxBatch, repack: true);
            Ref = new CpuBackend(threads, maxBatch, repack: false);
        }
        catch
        {
            Dispose();
            throw;
        }
        _sides = [Gpu, Cpu, Ref];
        MaxBatch = maxBatch;
    }

    public GpuBackend Gpu { get; }
    public CpuBackend Cpu { get; } = null!;
    public CpuBackend Ref { get; } = null!;
    public int MaxBatch { get; }

    /// <summary>Weight bytes held on the sides so far (freed only with the trio).</summary>
    public long LoadedBytes { get; private set; }

    public IBackend this[int side] => _sides[side];

    /// <summary>Quantizes <paramref name="values"/> (rows, cols) to <paramref name="type"/> and loads it on every side.</summary>
    public Weight3 Weight(string name, GgmlType type, int rows, int cols, float[] values)
    {
        byte[] bytes = Data.Quantize(type, values, rows, cols);
        LoadedBytes += bytes.LongLength + 4L * values.LongLength;
        float[] decoded = type == GgmlType.F32 ? values : Data.Dequantize(type, bytes, rows, cols);
        var gpu = Gpu.UploadWeight(name, type, rows, cols, bytes);
        var cpu = Cpu.CreateWeight(name, type, rows, cols, Pin(bytes));
        var reference = Ref.CreateWeight(name, GgmlType.F32, rows, cols, Pin(MemoryMarshal.AsBytes(decoded.AsSpan())));
        return new Weight3([gpu, cpu, reference], type, decoded);
    }

    /// <summary>A float32 vector (norm weights, biases) on every side.</summary>
    public Weight3 Vector(string name, float[] values) => Weight(name, GgmlType.F32, 1, values.Length, values);

    public Act3 Act(int rows, int cols) => new([Gpu.Allocate(rows, cols), Cpu.Allocate(rows, cols), Ref.Allocate(rows, cols)]);

    /// <summary>Writes the same rows (row-major) to every side.</summary>
    public void Write(Act3 a, float[] rows)
    {
        for (int s = 0; s < _sides.Length; s++) _sides[s].WriteRows(a[s], rows);
    }

    /// <summary>Fills the first <paramref name="rows"/> rows with NaN on every side, so an element an operation misses shows.</summary>
    public void Poison(Act3 a, int rows)
    {
        var nan = new float[rows * a.Cols];
        nan.AsSpan().Fill(float.NaN);
        Write(a, nan);
    }

    public float[] Read(int side, Act3 a, int rows)
    {
        var r = new float[rows * a.Cols];
        _sides[side].ReadRows(a[side], rows, r);
        return r;
    }

    public void SetBatch(int[] tokens, int[] positions, int[] sequences)
    {
        foreach (var b in _sides) b.SetBatch(tokens, positions, sequences);
    }

    /// <summary>A batch of <paramref name="n"/> tokens 0..n-1 at positions 0..n-1 of sequence 0.</summary>
    public void SetTokens(int n)
    {
        var ids = Enumerable.Range(0, n).ToArray();
        SetBatch(ids, ids, new int[n]);
    }

    public void CreateKvCache(KvCacheConfig config)
    {
        foreach (var b in _sides) b.CreateKvCache(config);
    }

    /// <summary>Runs an operation on every side: <paramref name="op"/>(backend, side).</summary>
    public void Run(Action<IBackend, int> op)
    {
        for (int s = 0; s < _sides.Length; s++) op(_sides[s], s);
        Gpu.Synchronize();
    }

    /// <summary>
    /// The first <paramref name="rows"/> rows (columns [0, <paramref name="cols"/>), all when -1) of <paramref name="a"/>: the GPU
    /// against the reference at <paramref name="gpuBound"/> (<see cref="Bound.F32"/> unless given: see <see cref="GpuBound"/>); with
    /// <paramref name="cpuBound"/>, the CPU backend against it too. With <paramref name="floor"/> (one per compared value), the
    /// comparisons at <see cref="Bound.MulMatQ8"/> count each reference value as at least that in their denominator
    /// (<see cref="Comparison.Normalized"/>).
    /// </summary>
    public IEnumerable<Comparison> Compare(string what, Act3 a, int rows, Bound? cpuBound, int cols = -1, Bound? gpuBound = null,
        float[]? floor = null)
    {
        var reference = Columns(Read(RefSide, a, rows), a.Cols, cols);
        var g = gpuBound ?? Bound.F32;
        yield return Comparison.Of($"gpu {what}", Columns(Read(GpuSide, a, rows), a.Cols, cols), reference, g, FloorFor(g));
        if (cpuBound is { } b) yield return Comparison.Of($"cpu {what}", Columns(Read(CpuSide, a, rows), a.Cols, cols), reference, b, FloorFor(b));

        float[]? FloorFor(Bound bound) => bound == Bound.MulMatQ8 ? floor : null;
    }

    /// <summary>
    /// The GPU backend's bound for a batch of <paramref name="n"/> tokens over weights of these types: float32 arithmetic, except
    /// where the batch takes the GPU's int8 GEMM (a quantized weight, at least its threshold of tokens, a device that runs it) or
    /// its int8 decode (quantized weights on the GPU path: one-token tiles, at any batch of 4k + 1 tokens): there the
    /// activations are rounded to int8 blocks as on the CPU backend, and test-backend-ops' <c>mul_mat</c> bound applies.
    /// </summary>
    public Bound GpuBound(int n, params GgmlType[] types) =>
        (Gpu.Int8GemmMinTokens is int min && n >= min && CpuBound(types) == Bound.MulMatQ8)
        || (Gpu.Int8Decode && CpuBound(types) == Bound.MulMatQ8) ? Bound.MulMatQ8 : Bound.F32;

    /// <summary>The CPU backend's bound for a case whose weights have these types: float unless one is quantized.</summary>
    public static Bound CpuBound(params GgmlType[] types) =>
        types.Any(t => t is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16)) ? Bound.MulMatQ8 : Bound.F32;

    private static float[] Columns(float[] rows, int stride, int cols)
    {
        if (cols < 0 || cols == stride) return rows;
        int n = rows.Length / stride;
        var r = new float[n * cols];
        for (int i = 0; i < n; i++) rows.AsSpan(i * stride, cols).CopyTo(r.AsSpan(i * cols));
        return r;
    }

    /// <summary>A native copy that lives as long as the trio (the CPU backends read weights in place).</summary>
    private byte* Pin(ReadOnlySpan<byte> bytes)
    {
        byte* p = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes.Length, 64), 64);
        _native.Add((nint)p);
        bytes.CopyTo(new Span<byte>(p, bytes.Length));
        return p;
    }

    public void Dispose()
    {
        Gpu?.Dispose();
        Cpu?.Dispose();
        Ref?.Dispose();
        foreach (var p in _native) NativeMemory.AlignedFree((void*)p);
        _native.Clear();
    }
}
