using System.Runtime.InteropServices;
using System.Text.Json;
using Infer.BackendOps.Cases;
using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Tests;

namespace Infer.BackendOps.Tests;

/// <summary>
/// backend-ops in-process on ILGPU's CPU accelerator: the quick grid passes (every operation of the seam, fused ones
/// included, GPU against the F32 reference at 1e-7), and the harness does fail when a result is wrong or never written.
/// </summary>
public sealed class BackendOpsTests
{
    private static readonly string[] Ops =
    [
        "EMBED", "RMS_NORM", "ADD", "ADD_BIAS", "SWIGLU", "GATHER_ROWS", "ROPE", "MUL_MAT", "ATTENTION",
        "NORM_QKV_ROPE", "MATMUL_ADD", "NORM_GATE_UP", "NORM_MATMUL_ROWS",
    ];

    /// <summary>backend-ops in-process: its exit code and what it wrote to stdout and stderr.</summary>
    internal static (int Rc, string Out, string Err) Run(params string[] args)
    {
        var (o, e) = (new StringWriter(), new StringWriter());
        int rc = Program.Run(args, o, e);
        return (rc, o.ToString(), e.ToString());
    }

    internal static string Temp(string name) => Path.Combine(Path.GetTempPath(), $"backend-ops-{Guid.NewGuid():N}-{name}");

    [Fact]
    public void QuickGridPassesOnTheCpuAccelerator()
    {
        string json = Temp("test.json");
        var (rc, output, err) = Run("test", "--device", "cpu-ilgpu", "--quick", "--json", json);
        Assert.True(rc == 0, output + err);
        foreach (var op in Ops) Assert.Contains($"  {op} ", output);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var cases = doc.RootElement.GetProperty("devices")[0].GetProperty("cases").EnumerateArray().ToList();
        Assert.True(cases.Count >= 90, $"{cases.Count} cases");
        foreach (var c in cases)
        {
            Assert.True(c.GetProperty("ok").GetBoolean(), c.ToString());
            var gpu = c.GetProperty("comparisons").EnumerateArray().Where(x => x.GetProperty("what").GetString()!.StartsWith("gpu")).ToList();
            Assert.NotEmpty(gpu);
            Assert.All(gpu, x => Assert.True(x.GetProperty("nmse").GetDouble() <= 1e-7));
        }
        Assert.Contains($"{cases.Count}/{cases.Count} cases passed", output);
    }

    /// <summary>
    /// Batches that take the GPU's int8 GEMM (on a CPU accelerator with 128-thread groups, as a GPU's): every quantized weight type
    /// through MUL_MAT and each fused operation's GEMM route passes, held to test-backend-ops' <c>mul_mat</c> bound (the activations are
    /// rounded to int8 blocks), and the GPU's error shows the GEMM did run (above float32's 1e-7 bound); the norm outputs stay at 1e-7.
    /// </summary>
    [Fact]
    public void Int8GemmBatchesPassAtTheMulMatBound()
    {
        var small = Geometry.Small;
        OpCase[] grid =
        [
            .. new[] { GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K }.Select(t => new MatMulCase(t, 67, 512, 40)),
            new NormQkvRopeCase(GgmlType.Q4_K, GgmlType.Q6_K, small, false, false, 0, 20, KvCacheType.F16),
            new NormQkvRopeCase(GgmlType.Q8_0, GgmlType.Q8_0, small, true, false, 3, 17),
            new NormGateUpCase(GgmlType.Q4_0, GgmlType.Q4_0, 256, 512, 33),
            new MatMulAddCase(GgmlType.Q6_K, 256, 512, 18),
        ];
        var o = new StringWriter();
        var wide = new ILGPU.Runtime.CPU.CPUDevice(numThreadsPerWarp: 32, numWarpsPerMultiprocessor: 4, numMultiprocessors: 2);
        var report = TestRunner.Run(new DeviceRequest(DeviceKind.IlgpuCpu, 0), new TestOptions([], [], null, false, 1, 2), o, grid, wide);
        Assert.True(report.Failed == 0, o.ToString());
        foreach (var c in report.Cases)
            foreach (var x in c.Comparisons.Where(x => x.What.StartsWith("gpu ", StringComparison.Ordinal) && !x.What.Contains("xb")
                && !x.What.Contains("untouched")))
            {
                Assert.Equal(Bound.MulMatQ8, x.Bound);
                Assert.True(x.Nmse is > 1e-7 and <= 5e-4, $"{c.Op} {c.Shape} {x.What}: {x.Nmse:E2}");
            }
    }

    /// <summary>A MUL_MAT whose GPU side never runs, or whose GPU result is off by one part in a thousand, fails.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WrongOrUnwrittenResultsFail(bool skipGpu)
    {
        var o = new StringWriter();
        var options = new TestOptions([], [], null, true, 1, 2);
        var report = TestRunner.Run(new DeviceRequest(DeviceKind.IlgpuCpu, 0), options, o, [new BrokenMatMul(skipGpu)]);
        Assert.Equal(1, report.Failed);
        Assert.Contains("FAIL", o.ToString());
        var gpu = report.Cases[0].Comparisons.Single(c => c.What == "gpu y");
        Assert.False(gpu.Ok);
        if (skipGpu) Assert.True(double.IsNaN(gpu.Nmse));
        else Assert.InRange(gpu.Nmse, 1e-7, 1e-5);
    }

    private sealed class BrokenMatMul(bool skipGpu) : OpCase
    {
        public override string Op => "MUL_MAT";
        public override string Shape => "broken";
        public override int Batch => 2;

        public override List<Comparison> Run(Trio t, Random rng)
        {
            var w = t.Weight("w", GgmlType.Q8_0, 9, 64, Data.Uniform(rng, 9 * 64));
            var x = t.Act(2, 64);
            var y = t.Act(2, 9);
            t.Write(x, Data.Uniform(rng, 128));
            t.SetTokens(2);
            t.Poison(y, 2);
            t.Run((b, s) =>
            {
                if (!(skipGpu && s == Trio.GpuSide)) b.MatMul(w[s], x[s], y[s]);
            });
            if (!skipGpu)
            {
                var r = t.Read(Trio.GpuSide, y, 2);
                for (int i = 0; i < r.Length; i++) r[i] *= 1.001f;
                t.Gpu.WriteRows(y[Trio.GpuSide], r);
            }
            return [.. t.Compare("y", y, 2, null)];
        }
    }

    [Fact]
    public void FiltersPickOperationsAndTypes()
    {
        var (rc, output, _) = Run("test", "--device", "cpu-ilgpu", "--quick", "-o", "mul_mat", "-t", "q4_k,q6_k");
        Assert.Equal(0, rc);
        var lines = output.Split('\n').Where(l => l.StartsWith("  ")).ToList();
        Assert.Equal(8, lines.Count);
        Assert.All(lines, l => Assert.Matches(@"^  MUL_MAT +q[46]_k ", l));
    }

    [Theory]
    [InlineData(2, "test", "--device", "cpu")]
    [InlineData(2, "test", "--device", "tpu")]
    [InlineData(2, "test", "--bogus", "1")]
    [InlineData(2, "frobnicate")]
    [InlineData(4, "test", "--device", "opencl:7")]
    public void BadArgumentsAndMissingDevicesExitWithTheirCodes(int expected, params string[] args)
    {
        var (rc, _, err) = Run(args);
        Assert.Equal(expected, rc);
        Assert.Matches(@"^backend-ops( test)?: [^\n]+\n$", err.ReplaceLineEndings("\n")); // one line, naming the command
    }

    [Fact]
    public void PerfTimesTheQuickShapes()
    {
        string json = Temp("perf.json");
        var (rc, output, err) = Run("perf", "--device", "cpu-ilgpu", "--quick", "-o", "MUL_MAT,NORM_GATE_UP", "--json", json);
        Assert.True(rc == 0, output + err);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var rows = doc.RootElement.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(3, rows.Count);
        foreach (var r in rows)
        {
            double us = r.GetProperty("Microseconds").GetDouble();
            Assert.True(us > 0);
            // GB/s is the bytes the operation must move over its median time.
            Assert.Equal(r.GetProperty("Bytes").GetInt64() / (us * 1e-6) / 1e9, r.GetProperty("GBs").GetDouble(), 6);
            Assert.Equal(1, r.GetProperty("Launches").GetInt64()); // each of these is one launch on the GPU backend
        }
    }

    [Fact]
    public void FixturesPassOnTheCpuAccelerator()
    {
        var (rc, output, err) = Run("fixtures", "--fixtures", Fixtures.Root, "--device", "cpu-ilgpu", "--model", "llama2-spm", "--case", "prompt0");
        Assert.True(rc == 0, output + err);
        Assert.Contains("bf16  llama2-spm  prompt0  gpu ", output);
        Assert.Contains("bf16  llama2-spm  prompt0  -ngl 1 ", output);
        Assert.Contains("bf16  llama2-spm  prompt0  gpu f16 max|dlogit| ", output); // the default f16 KV cache, within 5e-3
        Assert.Contains("q8_0  llama2-spm  prompt0  gpu ", output);
        Assert.Contains("bf16  llama2-spm  prompt0  gpu q8_0 max|dlogit| ", output); // within 0.1
        Assert.Contains("5/5 fixture checks passed", output);
    }

    [Fact]
    public void CheckLogitsComparesWithTheFixtureCase()
    {
        string dir = Fixtures.ModelDir("llama3");
        string logits = Temp("logits.f32"), ids = Temp("ids.json");
        var reference = File.ReadAllBytes(Path.Combine(dir, "reference", "prompt1.last_logits.f32"));
        File.WriteAllBytes(logits, reference);
        using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "reference", "reference.json"))))
        {
            var greedy = doc.RootElement.GetProperty("cases").EnumerateArray().Single(c => c.GetProperty("id").GetString() == "prompt1")
                .GetProperty("greedy_new_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            File.WriteAllText(ids, "a notice first\n" + JsonSerializer.Serialize(new { input_ids = new[] { 1 }, greedy_ids = greedy }));
        }
        Assert.Equal(0, Run("check-logits", "--model-dir", dir, "--case", "prompt1", "--logits", logits, "--ids-json", ids).Rc);

        var floats = MemoryMarshal.Cast<byte, float>(reference.AsSpan()).ToArray();
        floats[5] += 0.01f;
        File.WriteAllBytes(logits, MemoryMarshal.AsBytes(floats.AsSpan()).ToArray());
        var (rc, output, _) = Run("check-logits", "--model-dir", dir, "--case", "prompt1", "--logits", logits);
        Assert.Equal(1, rc);
        Assert.Contains("FAIL", output);
    }

    [Fact]
    public void ReportTabulatesTheSteps()
    {
        string dir = Temp("report");
        Directory.CreateDirectory(dir);
        Assert.Equal(0, Run("test", "--device", "cpu-ilgpu", "--quick", "-o", "ADD", "--json", Path.Combine(dir, "ops.json")).Rc);
        File.WriteAllText(Path.Combine(dir, "bench.json"), """
            {"model":"llama 1.24 B Q4_0","backend":"all 16 layers on gpu","kernel_launches_per_token":98,
             "results":[{"test":"pp512","tokens_per_second":41000.5,"stddev":12.0},{"test":"tg128","tokens_per_second":1250.0,"stddev":3.5}]}
            """);
        File.WriteAllLines(Path.Combine(dir, "steps.tsv"),
        [
            "test-cuda\tok\t0\t12.5\tops.json\ttest-cuda.log",
            "bench-1b.q4_0\tok\t0\t30\tbench.json\tbench.log",
            "synth-8b.q8_0\ttimeout\t124\t120\t-\tsynth.log",
        ]);
        string outDir = Path.Combine(dir, "out");
        var (rc, _, err) = Run("report", "--steps", Path.Combine(dir, "steps.tsv"), "--out", outDir);
        Assert.True(rc == 0, err);
        string md = File.ReadAllText(Path.Combine(outDir, "gpu-check.md"));
        Assert.Contains("| test-cuda | ok | 0 | 12 | cpu-ilgpu:0 CPUAccelerator", md);
        Assert.Contains("| synth-8b.q8_0 | timeout | 124 | 120 |", md);
        Assert.Contains("| 1b.q4_0 | all 16 layers on gpu | pp512 41000.5 ± 12.0 | tg128 1250.0 ± 3.5 | 98 | 39000 / 1200 | 38964 / 595 |", md);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "gpu-check.json")));
        var steps = doc.RootElement.GetProperty("steps");
        Assert.Equal(3, steps.GetArrayLength());
        Assert.Equal(JsonValueKind.Null, steps[2].GetProperty("result").ValueKind);
        Assert.Equal("test", steps[0].GetProperty("result").GetProperty("command").GetString());
    }
}
