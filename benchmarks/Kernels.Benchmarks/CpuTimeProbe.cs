using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Benchmarks;

/// <summary>
/// Kernel rates by the CPU time of the calling thread (<c>CLOCK_THREAD_CPUTIME_ID</c>), not wall time, so the figures hold on a
/// machine shared with other work (a descheduled thread accrues no CPU time). Each figure is the median of several repeats on one
/// thread; the data are sized to stay in L2, so the kernel is measured, not DRAM.
/// <c>Kernels.Benchmarks cputime tile|gemv|dram|peak [types...]</c>, or <c>cputime model FILE</c> (see <see cref="Model"/>).
/// </summary>
public static unsafe partial class CpuTimeProbe
{
    private const int Repeats = 7;

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out TimeSpec time);

    /// <summary>Seconds of CPU time this thread has used.</summary>
    public static double ThreadSeconds()
    {
        const int ThreadCpuTime = 3; // CLOCK_THREAD_CPUTIME_ID
        if (ClockGetTime(ThreadCpuTime, out var t) != 0) throw new InvalidOperationException("clock_gettime failed");
        return t.Seconds + t.Nanoseconds * 1e-9;
    }

    public static int Run(string[] args)
    {
        string mode = args.Length > 1 ? args[1] : "tile";
        if (mode == "model")
        {
            Model(args);
            return 0;
        }
        var types = args.Skip(2).Select(Enum.Parse<GgmlType>).ToArray();
        if (types.Length == 0) types = [GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];
        Console.WriteLine($"isa: avx-vnni {AvxVnni.IsSupported}, avx512bw {Avx512BW.IsSupported}, avx2 {Avx2.IsSupported}");
        switch (mode)
        {
            case "peak": Peak(); break;
            case "tile": foreach (var t in types) Tile(t); break;
            case "gemv": foreach (var t in types) Gemv(t); break;
            case "dram": foreach (var t in types) { GemvDram(t, false); GemvDram(t, true); } break;
            default: Console.Error.WriteLine("modes: tile, gemv, peak"); return 2;
        }
        return 0;
    }

    /// <summary>Runs <paramref name="body"/> until it has used about 0.15 s of CPU, <see cref="Repeats"/> times; the median rate.</summary>
    private static double Rate(double workPerCall, Action body)
    {
        body();
        var rates = new double[Repeats];
        for (int r = 0; r < Repeats; r++)
        {
            double t0 = ThreadSeconds(), t;
            long calls = 0;
            do
            {
                body();
                calls++;
            }
            while ((t = ThreadSeconds() - t0) < 0.15);
            rates[r] = workPerCall * calls / t;
        }
        Array.Sort(rates);
        return rates[Repeats / 2];
    }

    /// <summary>The GEMM tile: 64 weight rows × 4096 columns × 64 tokens, GMAC/s on one thread.</summary>
    private static void Tile(GgmlType type)
    {
        // defaults stay in L2; PROBE_ROWS / PROBE_COLS / PROBE_TOKENS size it like a model's matmul (weights then come from L3)
        int rows = Env("PROBE_ROWS", 64), cols = Env("PROBE_COLS", 4096), tokens = Env("PROBE_TOKENS", 64);
        // each level, then its intrinsics-only twin where the level takes generated tiles
        var kernels = Enum.GetValues<QuantKernels.IsaLevel>()
            .SelectMany(l => new[] { (Level: l, Kernel: QuantKernels.Get(type, l)), (Level: l, Kernel: QuantKernels.Get(type, l, false)) })
            .DistinctBy(p => (p.Level, p.Kernel.Isa));
        foreach (var (level, k) in kernels)
        {
            if (k.RepackedTile == null) { Console.WriteLine($"{type,-5} {level,-7} {k.Isa,-10} no tile"); continue; }
            using var data = new ProbeData(k, rows, cols, tokens);
            int tt = k.TileTokens;
            nint groupStride = (nint)(8 * k.RowBytes(cols));
            float* scales = (float*)NativeMemory.AlignedAlloc((nuint)(cols / k.BlockSize * k.TileScaleFloats * 4), 64);
            double gmac = Rate(1e-9 * rows * cols * (tokens / tt * tt), () =>
            {
                for (int r = 0; r < rows; r += QuantKernel.TileRows)
                {
                    byte* g = data.Packed + r * k.RowBytes(cols);
                    k.RepackedTileScales(cols, g, groupStride, scales);
                    for (int t = 0; t + tt <= tokens; t += tt)
                        k.RepackedTile(cols, g, groupStride, scales, data.Act + t * data.ActBytes, (nint)data.ActBytes, data.Y + t * rows + r, rows);
                }
            });
            NativeMemory.AlignedFree(scales);
            Console.WriteLine($"{type,-5} {level,-7} {k.Isa,-10} tile {QuantKernel.TileRows}x{tt}: {gmac,6:F1} GMAC/s");
        }
    }

    private static int Env(string name, int fallback) => int.TryParse(Environment.GetEnvironmentVariable(name), out int v) ? v : fallback;

    /// <summary>The repacked GEMV (or the plain dot): 64 rows × 4096 columns against one token, GB/s of weights on one thread.</summary>
    private static void Gemv(GgmlType type)
    {
        const int rows = 64, cols = 4096;
        foreach (var level in Enum.GetValues<QuantKernels.IsaLevel>())
        {
            var k = QuantKernels.Get(type, level);
            using var data = new ProbeData(k, rows, cols, 1);
            long rowBytes = k.RowBytes(cols);
            double gbs = Rate(1e-9 * rows * rowBytes, () =>
            {
                if (k.RepackedDot != null)
                    for (int r = 0; r < rows; r += 8) k.RepackedDot(cols, data.Packed + r * rowBytes, data.Act, data.Y + r);
                else
                    for (int r = 0; r < rows; r++) data.Y[r] = k.Dot(cols, data.Plain + r * rowBytes, data.Act);
            });
            double plain = Rate(1e-9 * rows * rowBytes, () =>
            {
                for (int r = 0; r < rows; r++) data.Y[r] = k.Dot(cols, data.Plain + r * rowBytes, data.Act);
            });
            Console.WriteLine($"{type,-5} {level,-7} {k.Isa,-10} {(k.RepackedDot != null ? "repacked" : "plain   ")} gemv: {gbs,6:F1} GB/s"
                + $" (plain dot {plain,5:F1})");
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int MAdvise(nint address, nuint length, int advice);

    /// <summary>
    /// The repacked GEMV over 256 MB of weights (DRAM, not cache) against one token, GB/s on one thread by CPU time (a thread
    /// stalled on memory accrues CPU time), with the weights on 4 KiB pages or on 2 MiB pages (madvise MADV_HUGEPAGE).
    /// </summary>
    private static void GemvDram(GgmlType type, bool hugePages)
    {
        const int cols = 4096;
        var k = QuantKernels.Get(type);
        long rowBytes = k.RowBytes(cols);
        int rows = (int)(256L * 1024 * 1024 / rowBytes) / 8 * 8;
        nuint bytes = (nuint)(rows * rowBytes);
        const int huge = 2 * 1024 * 1024;
        nuint size = (bytes + huge - 1) / huge * huge;
        byte* w = (byte*)NativeMemory.AlignedAlloc(size, huge);
        if (hugePages) MAdvise((nint)w, size, 14); // MADV_HUGEPAGE
        using var data = new ProbeData(k, 64, cols, 1);
        for (long r = 0; r < rows; r += 64) Buffer.MemoryCopy(data.Packed, w + r * rowBytes, 64 * rowBytes, Math.Min(64, rows - r) * rowBytes);
        float* y = (float*)NativeMemory.AlignedAlloc((nuint)rows * 4, 64);
        double gbs = Rate(1e-9 * rows * rowBytes, () =>
        {
            for (int r = 0; r < rows; r += 8) k.RepackedDot(cols, w + r * rowBytes, data.Act, y + r);
        });
        Console.WriteLine($"{type,-5} {k.Isa,-10} repacked gemv, 256 MB, {(hugePages ? "2 MiB" : "4 KiB")} pages: {gbs,6:F1} GB/s");
        NativeMemory.AlignedFree(y);
        NativeMemory.AlignedFree(w);
    }

    /// <summary>Random weights (plain and repacked) and quantized activations in aligned native memory.</summary>
    private sealed class ProbeData : IDisposable
    {
        public byte* Plain, Packed, Act;
        public float* Y;
        public long ActBytes;

        public ProbeData(QuantKernel k, int rows, int cols, int tokens)
        {
            long rowBytes = k.RowBytes(cols);
            ActBytes = k.ActivationRowBytes(cols);
            Plain = (byte*)NativeMemory.AlignedAlloc((nuint)(rows * rowBytes), 64);
            Packed = (byte*)NativeMemory.AlignedAlloc((nuint)(rows * rowBytes), 64);
            Act = (byte*)NativeMemory.AlignedAlloc((nuint)(tokens * ActBytes), 64);
            Y = (float*)NativeMemory.AlignedAlloc((nuint)(tokens * rows * 4), 64);
            var rng = new Random(1);
            var row = new float[cols];
            for (int r = 0; r < rows; r++)
            {
                for (int i = 0; i < cols; i++) row[i] = (float)(rng.NextDouble() * 0.04 - 0.02);
                RowCodec.Quantize(k.Type, row, new Span<byte>(Plain + r * rowBytes, (int)rowBytes));
            }
            if (k.Repack != null)
                for (int r = 0; r < rows; r += 8) k.Repack(Plain + r * rowBytes, (nint)rowBytes, Packed + r * rowBytes, cols);
            fixed (float* x = row)
                for (int t = 0; t < tokens; t++)
                {
                    for (int i = 0; i < cols; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
                    k.QuantizeActivations(x, Act + t * ActBytes, cols);
                }
        }

        public void Dispose()
        {
            NativeMemory.AlignedFree(Plain);
            NativeMemory.AlignedFree(Packed);
            NativeMemory.AlignedFree(Act);
            NativeMemory.AlignedFree(Y);
        }
    }
}
