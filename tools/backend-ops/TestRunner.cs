using System.Diagnostics;
using System.Globalization;
using ILGPU.Runtime.CPU;
using Infer.BackendOps.Cases;
using Infer.Kernels.Gpu;

namespace Infer.BackendOps;

/// <summary>What <c>backend-ops test</c> runs: the case filters and the grid.</summary>
/// <param name="Ops">operation names to keep (empty: all).</param>
/// <param name="Types">weight types to keep: a case is kept when one of its types is listed (empty: all).</param>
/// <param name="ShapeFilter">substring of the shape to keep, or null.</param>
/// <param name="Quick">the small grid CI runs.</param>
/// <param name="Seed">seed of the random inputs.</param>
/// <param name="Threads">CPU threads of the reference backends (0: all cores).</param>
/// <param name="MaxSeconds">start no case after this many seconds (0: no limit); the cases left count as not run.</param>
public sealed record TestOptions(IReadOnlyList<string> Ops, IReadOnlyList<string> Types, string? ShapeFilter, bool Quick, int Seed, int Threads,
    int MaxSeconds = 0)
{
    public bool Keeps(string op, string type, string shape) =>
        (Ops.Count == 0 || Ops.Any(o => o.Equals(op, StringComparison.OrdinalIgnoreCase)))
        && (Types.Count == 0 || type.Split('+').Any(t => Types.Any(f => f.Equals(t, StringComparison.OrdinalIgnoreCase))))
        && (ShapeFilter is null || shape.Contains(ShapeFilter, StringComparison.OrdinalIgnoreCase));
}

/// <summary>The results of one device.</summary>
/// <param name="Device">its <c>--device</c> id (<c>cuda:0</c>).</param>
/// <param name="Description">its id, name and memory, as printed in the summary line.</param>
/// <param name="Cases">one result per case run, in the order run.</param>
/// <param name="NotRun">cases left when the time limit was reached.</param>
public sealed record DeviceReport(string Device, string Description, IReadOnlyList<CaseResult> Cases, int NotRun = 0)
{
    public int Passed => Cases.Count(c => c.Ok);
    public int Failed => Cases.Count - Passed;
}

/// <summary>
/// <c>backend-ops test</c>: every case of the grid on one accelerator, each printed as one line as it finishes (so a hang shows
/// after the last case printed). Cases of one operation share a <see cref="Trio"/>; an exception fails its case and the
/// trio is rebuilt for the next.
/// </summary>
public static class TestRunner
{
    public static DeviceReport Run(DeviceRequest request, TestOptions options, TextWriter output) =>
        Run(request, options, output, Grid.All(options.Quick));

    /// <summary>Runs <paramref name="grid"/> (filtered by <paramref name="options"/>) instead of the built-in grid.</summary>
    internal static DeviceReport Run(DeviceRequest request, TestOptions options, TextWriter output, IEnumerable<OpCase> grid,
        CPUDevice? ilgpuCpu = null)
    {
        var cases = grid.Where(c => options.Keeps(c.Op, c.Type, c.Shape)).ToList();
        using var device = DeviceChoice.Open(request, ilgpuCpu);
        string description = $"{device.Info.Id} {device.Info.Name} ({device.Info.MemoryBytes / (1 << 20)} MiB, "
            + $"{device.Info.Multiprocessors} multiprocessors)";
        output.WriteLine($"Testing {cases.Count} cases on {description} against the CPU backend (reference: weights dequantized to F32)");
        output.Flush();
        var results = new List<CaseResult>();
        Trio? trio = null;
        string? group = null;
        int notRun = 0;
        try
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            foreach (var c in cases)
            {
                if (options.MaxSeconds > 0 && clock.Elapsed.TotalSeconds > options.MaxSeconds)
                {
                    notRun = cases.Count - results.Count;
                    output.WriteLine($"stopped after {options.MaxSeconds} s (--max-seconds): {notRun} cases not run");
                    break;
                }
                // A new trio per operation, and when the weights held reach 4 GiB (the backends free only when disposed).
                if (trio is null || group != c.Op || trio.LoadedBytes > 4L << 30)
                {
                    trio?.Dispose();
                    trio = null;
                    group = c.Op;
                    int batch = Math.Max(1, cases.Where(x => x.Op == c.Op).Max(x => x.Batch));
                    trio = new Trio(device, batch, options.Threads);
                }
                var result = RunCase(trio, c, options.Seed);
                if (result.Error is not null)
                {
                    trio.Dispose(); // the device may hold a failed launch: start the next case afresh
                    trio = null;
                }
                results.Add(result);
                output.WriteLine(Format(result));
                output.Flush();
            }
        }
        finally
        {
            trio?.Dispose();
        }
        var report = new DeviceReport(device.Info.Id, description, results, notRun);
        output.WriteLine($"{report.Passed}/{results.Count} cases passed on {description}{(report.Failed > 0 ? $"; {report.Failed} FAILED" : "")}"
            + (notRun > 0 ? $"; {notRun} not run" : ""));
        return report;
    }

    private static CaseResult RunCase(Trio trio, OpCase c, int seed)
    {
        long t0 = Stopwatch.GetTimestamp();
        try
        {
            var rng = new Random(StableHash(seed, $"{c.Op} {c.Type} {c.Shape}"));
            var comparisons = c.Run(trio, rng);
            return new CaseResult(c.Op, c.Type, c.Shape, comparisons, null, Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new CaseResult(c.Op, c.Type, c.Shape, [], $"{e.GetType().Name}: {e.Message}", Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
    }

    /// <summary>
    /// <c>  MUL_MAT  q4_0  m=33,k=288,n=5  NMSE 1.2e-15 &lt;= 1e-7 (f32)  cpu 3.4e-06 &lt;= 5e-4 (mul_mat_q8)  OK</c>: the worst GPU
    /// comparison, the worst CPU one, and on failure the failing ones by name.
    /// </summary>
    public static string Format(CaseResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        string head = $"  {r.Op,-16} {r.Type,-10} {r.Shape,-56}";
        if (r.Error is not null) return $"{head} ERROR {r.Error}  FAIL";
        var gpu = r.Comparisons.Where(c => c.What.StartsWith("gpu", StringComparison.Ordinal)).MaxBy(Ratio);
        var cpu = r.Comparisons.Where(c => c.What.StartsWith("cpu", StringComparison.Ordinal)).MaxBy(Ratio);
        string line = head;
        if (gpu is not null) line += string.Create(inv, $" NMSE {Num(gpu.Nmse)} <= {gpu.Bound}");
        if (cpu is not null) line += string.Create(inv, $"  cpu {Num(cpu.Nmse)} <= {cpu.Bound}");
        if (r.Ok) return line + "  OK";
        return line + "  FAIL: " + string.Join("; ", r.Comparisons.Where(c => !c.Ok).Select(c => $"{c.What} {Num(c.Nmse)}"));

        static double Ratio(Comparison c) => double.IsNaN(c.Nmse) ? double.PositiveInfinity : c.Nmse / c.Bound.Value;
    }

    /// <summary>FNV-1a of the case's name with the seed: the same inputs on every run and machine (string hashes are randomized).</summary>
    private static int StableHash(int seed, string text)
    {
        uint h = 2166136261u ^ (uint)seed;
        foreach (char ch in text) h = (h ^ ch) * 16777619u;
        return (int)(h & 0x7FFFFFFF);
    }

    private static string Num(double v) => double.IsNaN(v) ? "NaN" : v.ToString("0.00e+00", CultureInfo.InvariantCulture);
}
