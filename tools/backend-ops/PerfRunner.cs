using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Infer.Kernels.Cpu;
using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.BackendOps;

/// <summary>What <c>backend-ops perf</c> times.</summary>
/// <param name="Ops">operation names to time (empty: all).</param>
/// <param name="Types">weight types to time (empty: all).</param>
/// <param name="Model">"1b", "8b" or null for both.</param>
/// <param name="Quick">one weight type, a tiny model's decode shapes, few repeats and no rotation (CI, the CPU accelerator).</param>
/// <param name="Threads">threads of the CPU backend's baseline sweep (0: all cores).</param>
public sealed record PerfOptions(IReadOnlyList<string> Ops, IReadOnlyList<string> Types, string? Model, bool Quick, int Threads);

/// <summary>One timed operation: median time per call, bytes and FLOPs it must move and do, and the rates they give.</summary>
public sealed record PerfRow(string Device, string Model, string Op, string Type, string Shape, int Tokens, double Microseconds,
    long Bytes, long Flops, double GBs, double GFlops, long Launches);

/// <summary>The layer shapes of a model timed by <c>perf</c>.</summary>
internal sealed record ModelShape(string Name, int Dim, int Ff, int Heads, int KvHeads, int HeadDim, int Vocab)
{
    public int QDim => Heads * HeadDim;
    public int KvDim => KvHeads * HeadDim;

    public static readonly ModelShape Llama1B = new("1b", 2048, 8192, 32, 8, 64, 128256);
    public static readonly ModelShape Llama8B = new("8b", 4096, 14336, 32, 8, 128, 128256);

    /// <summary>A small shape for --quick (tests, the CPU accelerator).</summary>
    public static readonly ModelShape Tiny = new("tiny", 256, 512, 4, 2, 64, 1000);
}

/// <summary>
/// <c>backend-ops perf</c>: each operation at the decode (1 token) and prefill (512 tokens) shapes of Llama-3.2-1B and
/// Llama-3.1-8B. Timing: three warm-up calls and a synchronize; the calls per repeat doubled until a repeat lasts 5 ms; the
/// median over 7 repeats of (calls + synchronize) / calls. The calls rotate over enough copies of the weights (256 MiB in all)
/// that they come from device memory, not the L2 cache, as in a real forward pass.
/// </summary>
public static class PerfRunner
{
    private const long RotationBytes = 256L << 20;

    public static List<PerfRow> Run(DeviceRequest request, PerfOptions options, TextWriter output)
    {
        using var device = DeviceChoice.Open(request);
        output.WriteLine($"Timing on {device.Info.Id} {device.Info.Name}");
        return Sweep(options, output, device.Info.Id, () =>
        {
            var gpu = new GpuBackend(device, GpuBackendOptions.ForRun(512), ownsDevice: false);
            return new Target(gpu, (n, t, r, c, b) => gpu.UploadWeight(n, t, r, c, b), gpu.Synchronize, () => gpu.Launches);
        });
    }

    /// <summary>The same sweep on the CPU backend (a baseline on the same machine).</summary>
    public static unsafe List<PerfRow> RunCpu(PerfOptions options, TextWriter output)
    {
        output.WriteLine($"Timing on the CPU backend ({Environment.ProcessorCount} cores)");
        return Sweep(options, output, "cpu", () =>
        {
            var cpu = new CpuBackend(options.Threads, 512);
            var pinned = new List<nint>();
            return new Target(cpu, (n, t, r, c, b) => cpu.CreateWeight(n, t, r, c, Pin(pinned, b)), () => { }, () => 0, pinned);
        });
    }

    private static unsafe byte* Pin(List<nint> pinned, byte[] bytes)
    {
        byte* p = (byte*)NativeMemory.AlignedAlloc((nuint)bytes.Length, 64);
        pinned.Add((nint)p);
        bytes.CopyTo(new Span<byte>(p, bytes.Length));
        return p;
    }

    private static List<PerfRow> Sweep(PerfOptions o, TextWriter output, string device, Func<Target> create)
    {
        var rows = new List<PerfRow>();
        ModelShape[] models = o.Model switch
        {
            null => o.Quick ? [ModelShape.Tiny] : [ModelShape.Llama1B, ModelShape.Llama8B],
            "1b" => [ModelShape.Llama1B],
            "8b" => [ModelShape.Llama8B],
            "tiny" => [ModelShape.Tiny],
            _ => throw new UsageException($"--model must be 1b, 8b or tiny, got '{o.Model}'"),
        };
        GgmlType[] types = o.Quick ? [GgmlType.Q4_0]
            : [GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.F16, GgmlType.BF16];
        types = [.. types.Where(t => o.Types.Count == 0 || o.Types.Contains(OpName(t), StringComparer.OrdinalIgnoreCase))];
        int[] tokens = o.Quick ? [1] : [1, 512];
        output.WriteLine($"  {"op",-16} {"type",-6} {"shape",-44} {"n",4} {"us/call",10} {"GB/s",8} {"GFLOP/s",9} {"launches",8}");
        void Emit(PerfRow r)
        {
            rows.Add(r);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {r.Op,-16} {r.Type,-6} {r.Shape,-44} {r.Tokens,4} {r.Microseconds,10:F1} {r.GBs,8:G4} {r.GFlops,9:G4} {r.Launches,8}"));
            output.Flush();
        }
        foreach (var m in models)
        {
            foreach (var type in types)
            {
                using var target = create();
                var sweep = new PerfOps(target, m, type, o.Quick ? 1 : RotationBytes, o.Quick, device);
                foreach (int n in tokens)
                    foreach (var row in sweep.WeightOps(n, o.Ops)) Emit(row);
            }
            if (o.Types.Count == 0 || o.Types.Contains("f32", StringComparer.OrdinalIgnoreCase))
            {
                using var target = create();
                var sweep = new PerfOps(target, m, GgmlType.F32, 1, o.Quick, device);
                foreach (var row in sweep.AttentionOps(o.Ops)) Emit(row);
            }
        }
        return rows;
    }

    internal static string OpName(GgmlType t) => GgmlTypeInfo.Name(t).ToLowerInvariant();

    /// <summary>
    /// Median seconds per call of <paramref name="call"/>(i), i counting calls (to rotate inputs), and the launches of one call.
    /// </summary>
    internal static (double Seconds, long Launches) Time(Target target, Action<int> call, bool quick)
    {
        long before = target.Launches();
        call(0);
        long launches = target.Launches() - before;
        call(1);
        call(2);
        target.Sync();
        double minSeconds = quick ? 5e-4 : 5e-3;
        int k = 1, i = 3;
        double elapsed;
        while (true)
        {
            long t0 = Stopwatch.GetTimestamp();
            for (int j = 0; j < k; j++) call(i++);
            target.Sync();
            elapsed = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            if (elapsed >= minSeconds || k >= 1 << 14) break;
            k *= 2;
        }
        var reps = new double[quick ? 3 : 7];
        for (int r = 0; r < reps.Length; r++)
        {
            long t0 = Stopwatch.GetTimestamp();
            for (int j = 0; j < k; j++) call(i++);
            target.Sync();
            reps[r] = Stopwatch.GetElapsedTime(t0).TotalSeconds / k;
        }
        Array.Sort(reps);
        return (reps[reps.Length / 2], launches);
    }
}

/// <summary>A backend being timed: how weights go onto it, how to wait for it, and its launch counter.</summary>
internal sealed class Target(IBackend backend, Func<string, GgmlType, int, int, byte[], IWeight> upload, Action sync, Func<long> launches,
    List<nint>? pinned = null) : IDisposable
{
    public IBackend B => backend;
    public IWeight Upload(string name, GgmlType type, int rows, int cols, byte[] bytes) => upload(name, type, rows, cols, bytes);
    public void Sync() => sync();
    public long Launches() => launches();

    public unsafe void Dispose()
    {
        backend.Dispose();
        foreach (var p in pinned ?? []) NativeMemory.AlignedFree((void*)p);
    }
}
