using System.Text.Json;

namespace Infer.BackendOps;

/// <summary>
/// <c>backend-ops</c>, modelled on llama.cpp's test-backend-ops: checks every operation of the backend seam on a GPU
/// against the CPU backend (<c>test</c>), times them (<c>perf</c>), checks whole fixture models (<c>fixtures</c>,
/// <c>check-logits</c>) and writes the device check's report (<c>report</c>). <see cref="Run"/> is the entry point the
/// tests call in-process.
/// </summary>
public static class Program
{
    /// <summary>Exit code when a check ran and something failed.</summary>
    public const int ExitFailed = 1;

    /// <summary>Exit code for a usage error.</summary>
    public const int ExitUsage = 2;

    /// <summary>Exit code when the device asked for is not present (the device check reports the step as skipped).</summary>
    public const int ExitNoDevice = 4;

    public const string Usage = """
        usage:
          backend-ops test [--device cuda|opencl|cpu-ilgpu|auto|cuda:N|opencl:N] [-o OP[,OP]] [-t TYPE[,TYPE]] [-p SHAPE]
                           [--quick] [--seed N] [--threads N] [--max-seconds N] [--json FILE] [--list]
              every backend operation (fused ones included) over a grid of shapes and weight types, on the GPU backend and
              the CPU backend, against a CPU reference with the weights dequantized to F32: one line per case, exit 1 on a failure
          backend-ops perf [--device ...|cpu] [-o OP[,OP]] [-t TYPE[,TYPE]] [--model 1b|8b] [--quick] [--json FILE]
              time per operation at the decode (1 token) and prefill (512 tokens) shapes of Llama-3.2-1B and Llama-3.1-8B:
              GB/s (weights + activations moved) and GFLOP/s, median of repeats after a warm-up
          backend-ops fixtures --fixtures DIR [--device ...] [--model NAME[,NAME]] [--case ID[,ID]] [--json FILE]
              the fixture models on the GPU: bf16 within 1e-3 of transformers with its greedy tokens, q8_0 within llama.cpp's
              distance, bf16 split with -ngl 1 (GPU, then CPU), bf16 with the f16 KV cache within 5e-3 and the q8_0 within 0.1
          backend-ops check-logits --model-dir DIR --case ID --logits FILE [--ids-json FILE] [--bound B]
              compares `infer logits --out FILE` (and its printed JSON) with a fixture case
          backend-ops case-ids --model-dir DIR --case ID
              prints a fixture case's input ids as 1,2,3 (for `infer logits --ids`)
          backend-ops ptx [--arch sm_90] [--isa 7.8] [--opt 1|2] [--out DIR] [--ptxas PATH | --no-assemble] [--json FILE]
              every kernel compiled to PTX without a device, written to DIR and assembled by NVIDIA's ptxas when found
              (--ptxas, $PTXAS or PATH): registers, spills and shared memory per kernel, exit 1 when ptxas rejects one
          backend-ops devices
          backend-ops report --steps FILE --out DIR
              the device check's gpu-check.md and gpu-check.json from its step table and the JSON each step wrote

        operations: EMBED RMS_NORM ADD ADD_BIAS SWIGLU GATHER_ROWS ROPE MUL_MAT ATTENTION NORM_QKV_ROPE MATMUL_ADD
                    NORM_GATE_UP NORM_MATMUL_ROWS
        types: f32 f16 bf16 q8_0 q4_0 q4_k q6_k
        """;

    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            stdout.WriteLine(Usage);
            return args.Length == 0 ? ExitUsage : 0;
        }
        try
        {
            var a = new Options(args.Skip(1));
            int rc = args[0] switch
            {
                "test" => Test(a, stdout, stderr),
                "perf" => Perf(a, stdout, stderr),
                "fixtures" => FixtureChecks.Run(a, stdout),
                "check-logits" => FixtureChecks.CheckLogits(a, stdout),
                "case-ids" => FixtureChecks.CaseIds(a, stdout),
                "devices" => Devices(a, stdout),
                "ptx" => PtxCheck.Run(a, stdout, stderr),
                "report" => Report.Write(a, stdout),
                _ => throw new UsageException($"unknown command '{args[0]}' (run 'backend-ops --help')"),
            };
            return rc;
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"backend-ops: {e.Message}");
            return ExitUsage;
        }
        catch (NoDeviceException e)
        {
            stderr.WriteLine($"backend-ops: {e.Message}");
            return ExitNoDevice;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidDataException
                                   or JsonException or Infer.Runtime.ModelFormatException or NotSupportedException)
        {
            stderr.WriteLine($"backend-ops: error: {e.Message}");
            return ExitFailed;
        }
    }

    private static int Test(Options a, TextWriter stdout, TextWriter stderr)
    {
        var options = new TestOptions(a.List("-o", "--op"), a.List("-t", "--type"), a.Value("-p", "--params"), a.Flag("--quick"),
            a.Int("--seed", 1234), a.Int("--threads", 0), a.Int("--max-seconds", 0));
        string device = a.Value("--device", "-b") ?? "auto";
        string? json = a.Value("--json");
        bool list = a.Flag("--list");
        a.EnsureAllUsed();
        if (list)
        {
            var cases = Cases.Grid.All(options.Quick).Where(c => options.Keeps(c.Op, c.Type, c.Shape)).ToList();
            foreach (var c in cases) stdout.WriteLine($"  {c.Op,-16} {c.Type,-10} {c.Shape}");
            stdout.WriteLine($"{cases.Count} cases");
            return 0;
        }
        var reports = new List<DeviceReport>();
        foreach (var request in DeviceChoice.Resolve(device, stderr))
            reports.Add(TestRunner.Run(request, options, stdout));
        if (json is not null) WriteJson(json, new { command = "test", devices = reports.Select(Report.ToJson) });
        int passed = reports.Sum(r => r.Passed), failed = reports.Sum(r => r.Failed), notRun = reports.Sum(r => r.NotRun);
        stdout.WriteLine($"{reports.Count} device{(reports.Count == 1 ? "" : "s")}: {passed} passed, {failed} failed"
            + (notRun > 0 ? $", {notRun} not run" : ""));
        return failed > 0 || notRun > 0 || passed == 0 ? ExitFailed : 0;
    }

    private static int Perf(Options a, TextWriter stdout, TextWriter stderr)
    {
        var options = new PerfOptions(a.List("-o", "--op"), a.List("-t", "--type"), a.Value("--model"), a.Flag("--quick"), a.Int("--threads", 0));
        string device = a.Value("--device", "-b") ?? "auto";
        string? json = a.Value("--json");
        a.EnsureAllUsed();
        var rows = device.Trim().ToLowerInvariant() == "cpu"
            ? PerfRunner.RunCpu(options, stdout)
            : DeviceChoice.Resolve(device, stderr).SelectMany(r => PerfRunner.Run(r, options, stdout)).ToList();
        if (json is not null) WriteJson(json, new { command = "perf", results = rows });
        return rows.Count > 0 ? 0 : ExitFailed;
    }

    private static int Devices(Options a, TextWriter stdout)
    {
        a.EnsureAllUsed();
        DeviceChoice.Describe(stdout);
        return 0;
    }

    internal static void WriteJson(string path, object value)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        File.WriteAllText(path, JsonSerializer.Serialize(value, JsonOptions));
    }

    internal static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };
}
