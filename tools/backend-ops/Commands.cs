using System.CommandLine;
using ILGPU;
using Infer.Kernels.Gpu;

namespace Infer.BackendOps;

/// <summary>
/// The command tree of <c>backend-ops</c> (System.CommandLine, as <c>infer</c> and <c>convert-weights</c>): every command with its
/// options, defaults, checks and <c>--help</c>. A bad value is a usage error before anything runs; the actions call
/// <see cref="Program"/>, <see cref="FixtureChecks"/>, <see cref="PtxCheck"/> and <see cref="Report"/>.
/// </summary>
internal static class Commands
{
    private const string Operations = "EMBED RMS_NORM ADD ADD_BIAS SWIGLU GATHER_ROWS ROPE MUL_MAT ATTENTION NORM_QKV_ROPE MATMUL_ADD "
        + "NORM_GATE_UP NORM_MATMUL_ROWS";

    private const string Types = "f32 f16 bf16 q8_0 q4_0 q4_k q5_k q6_k q3_k q2_k iq4_xs q4_1 q5_0 q5_1 iq4_nl";

    private const string DeviceNames = "cuda|opencl|cpu-ilgpu|auto|cuda:N|opencl:N";

    public static RootCommand Root(TextWriter stdout, TextWriter stderr) =>
        new("backend-ops: checks every operation of the backend seam on a GPU against the CPU backend (test), times them (perf), "
            + "checks the fixture models (fixtures, check-logits), compiles the kernels to PTX (ptx) and writes the device check's "
            + "report (report); modelled on llama.cpp's test-backend-ops")
        {
            TestCommand(stdout, stderr), PerfCommand(stdout, stderr), FixturesCommand(stdout), CheckLogitsCommand(stdout),
            CaseIdsCommand(stdout), PtxCommand(stdout, stderr), DevicesCommand(stdout), ReportCommand(stdout),
        };

    private static Command TestCommand(TextWriter stdout, TextWriter stderr)
    {
        var device = Device(DeviceNames);
        var (ops, types, quick, threads, json) = (OpFilter(), TypeFilter(), Quick(), Threads(), Json("the results"));
        var shape = new Option<string?>("--params", "-p")
        {
            Description = "only the shapes whose description contains SHAPE (m=33, ctx=512, ...)", HelpName = "SHAPE",
        };
        var seed = Count("--seed", "random seed of the inputs", 1234);
        var maxSeconds = Count("--max-seconds", "start no case after N seconds (the rest are 'not run'); 0: no limit", 0);
        var list = new Option<bool>("--list") { Description = "list the cases the filters keep, and run none" };
        var command = new Command("test", "every backend operation (fused ones included) over a grid of shapes and weight types, on the GPU "
            + "backend and the CPU backend, against a CPU reference with the weights dequantized to F32: one line per case, exit 1 on a failure")
        {
            device, ops, types, shape, quick, seed, threads, maxSeconds, json, list,
        };
        command.SetAction(r =>
        {
            var options = new TestOptions(r.GetValue(ops)!, r.GetValue(types)!, r.GetValue(shape), r.GetValue(quick), r.GetValue(seed),
                r.GetValue(threads), r.GetValue(maxSeconds));
            return Program.Test(options, r.GetValue(device)!, r.GetValue(json), r.GetValue(list), stdout, stderr);
        });
        return command;
    }

    private static Command PerfCommand(TextWriter stdout, TextWriter stderr)
    {
        var device = Device($"{DeviceNames}|cpu (the CPU backend)");
        var (ops, types, quick, threads, json) = (OpFilter(), TypeFilter(), Quick(), Threads(), Json("the timings"));
        var model = new Option<string?>("--model")
        {
            Description = "only the shapes of Llama-3.2-1B or Llama-3.1-8B [default: both; tiny with --quick]", HelpName = "1b|8b",
        }.Check(v => v is null or "1b" or "8b" or "tiny" ? null : $"--model must be 1b, 8b or tiny, got '{v}'").Suggest("1b", "8b", "tiny");
        var command = new Command("perf", "time per operation at the decode (1 token) and prefill (512 tokens) shapes of Llama-3.2-1B and "
            + "Llama-3.1-8B: GB/s (weights + activations moved) and GFLOP/s, median of repeats after a warm-up")
        {
            device, ops, types, model, quick, threads, json,
        };
        command.SetAction(r => Program.Perf(new PerfOptions(r.GetValue(ops)!, r.GetValue(types)!, r.GetValue(model), r.GetValue(quick),
            r.GetValue(threads)), r.GetValue(device)!, r.GetValue(json), stdout, stderr));
        return command;
    }

    private static Command FixturesCommand(TextWriter stdout)
    {
        var root = new Option<string>("--fixtures")
        {
            Description = "the fixtures folder (its models/ hold one folder per model)", HelpName = "DIR", Required = true,
        };
        var device = Device(DeviceNames);
        var models = ListOption("--model", "only these fixture models", "NAME[,NAME]");
        var cases = ListOption("--case", "only these cases of reference.json", "ID[,ID]");
        var (threads, json) = (Threads(), Json("the results"));
        var command = new Command("fixtures", "the fixture models on the GPU: bf16 within 1e-3 of transformers with its greedy tokens, q8_0 "
            + "within llama.cpp's distance, bf16 split with -ngl 1 (GPU, then CPU), bf16 with the f16 KV cache within 5e-3 and the q8_0 within 0.1")
        {
            root, device, models, cases, threads, json,
        };
        command.SetAction(r => FixtureChecks.Run(r.GetValue(root)!, r.GetValue(device)!, r.GetValue(models)!, r.GetValue(cases)!,
            r.GetValue(threads), r.GetValue(json), stdout));
        return command;
    }

    private static Command CheckLogitsCommand(TextWriter stdout)
    {
        var (dir, id) = (ModelDir(), Case());
        var logits = new Option<string>("--logits") { Description = "the logits `infer logits --out` wrote", HelpName = "FILE", Required = true };
        var idsJson = new Option<string?>("--ids-json")
        {
            Description = "what `infer logits --greedy N` printed: its greedy ids must be the reference's", HelpName = "FILE",
        };
        var bound = new Option<double>("--bound")
        {
            Description = "the largest |logit difference| that passes", HelpName = "B", DefaultValueFactory = _ => FixtureChecks.Bf16Bound,
        }.Check(v => v >= 0 && double.IsFinite(v) ? null : $"--bound must be a non-negative number, got {v}");
        var command = new Command("check-logits", "compares `infer logits --out FILE` (and its printed JSON) with a fixture case")
        {
            dir, id, logits, idsJson, bound,
        };
        command.SetAction(r => FixtureChecks.CheckLogits(r.GetValue(dir)!, r.GetValue(id)!, r.GetValue(logits)!, r.GetValue(idsJson),
            r.GetValue(bound), stdout));
        return command;
    }

    private static Command CaseIdsCommand(TextWriter stdout)
    {
        var (dir, id) = (ModelDir(), Case());
        var command = new Command("case-ids", "prints a fixture case's input ids as 1,2,3 (for `infer logits --ids`)") { dir, id };
        command.SetAction(r => FixtureChecks.CaseIds(r.GetValue(dir)!, r.GetValue(id)!, stdout));
        return command;
    }

    private static Command PtxCommand(TextWriter stdout, TextWriter stderr)
    {
        var arch = new Option<string>("--arch")
        {
            Description = "the architecture to assemble for", HelpName = "sm_XY", DefaultValueFactory = _ => "sm_90",
        }.Check(PtxCheck.ArchProblem);
        var isa = new Option<string>("--isa")
        {
            Description = "the PTX ISA version", HelpName = "MAJOR.MINOR", DefaultValueFactory = _ => "7.8",
        }.Check(PtxCheck.IsaProblem);
        var opt = new Option<string>("--opt")
        {
            Description = "ILGPU's optimization level [default: INFER_GPU_OPT's, as a device gets]", HelpName = "1|2",
            DefaultValueFactory = _ => GpuContextFactory.KernelOptimization() == OptimizationLevel.O1 ? "1" : "2",
        }.Check(PtxCheck.OptProblem).Suggest("1", "2");
        var outDir = new Option<string?>("--out")
        {
            Description = "where the .ptx (and .cubin) files go [default: a temporary folder]", HelpName = "DIR",
        };
        var ptxas = new Option<string?>("--ptxas") { Description = "NVIDIA's assembler [default: $PTXAS, then PATH]", HelpName = "PATH" };
        var noAssemble = new Option<bool>("--no-assemble") { Description = "write the PTX only, even where ptxas is found" };
        var json = Json("registers, spills and shared memory per kernel");
        var command = new Command("ptx", "every kernel compiled to PTX without a device, written to DIR and assembled by NVIDIA's ptxas when "
            + "found: registers, spills and shared memory per kernel, exit 1 when ptxas rejects one")
        {
            arch, isa, opt, outDir, ptxas, noAssemble, json,
        };
        command.SetAction(r => PtxCheck.Run(new PtxOptions(r.GetValue(arch)!, r.GetValue(isa)!, r.GetValue(opt)!, r.GetValue(outDir),
            r.GetValue(ptxas), !r.GetValue(noAssemble), r.GetValue(json)), stdout, stderr));
        return command;
    }

    private static Command DevicesCommand(TextWriter stdout)
    {
        var command = new Command("devices", "one line per accelerator ILGPU sees: architecture, PTX ISA, OpenCL device type");
        command.SetAction(_ =>
        {
            DeviceChoice.Describe(stdout);
            return 0;
        });
        return command;
    }

    private static Command ReportCommand(TextWriter stdout)
    {
        var steps = new Option<string>("--steps") { Description = "the device check's step table (steps.tsv)", HelpName = "FILE", Required = true };
        var outDir = new Option<string>("--out") { Description = "where gpu-check.md and gpu-check.json go", HelpName = "DIR", Required = true };
        var command = new Command("report", "the device check's gpu-check.md and gpu-check.json from its step table and the JSON each step wrote")
        {
            steps, outDir,
        };
        command.SetAction(r => Report.Write(r.GetValue(steps)!, r.GetValue(outDir)!, stdout));
        return command;
    }

    /// <summary>--device/-b (-b: test-backend-ops' backend option).</summary>
    private static Option<string> Device(string helpName) => new Option<string>("--device", "-b")
    {
        Description = "the accelerators to check; auto: every CUDA device and OpenCL GPU, ILGPU's CPU accelerator when there is none",
        HelpName = helpName, DefaultValueFactory = _ => "auto",
    }.Suggest("auto", "cuda", "opencl", "cpu-ilgpu");

    private static Option<string[]> OpFilter() => ListOption("--op", $"only these operations: {Operations}", "OP[,OP]", "-o");

    private static Option<string[]> TypeFilter() =>
        ListOption("--type", $"only the cases with these weight (or KV cache) types: {Types}", "TYPE[,TYPE]", "-t");

    private static Option<bool> Quick() => new("--quick") { Description = "the small grid (the shapes CI runs)" };

    private static Option<int> Threads() => Count("--threads", "threads of the CPU backend; 0: one per core", 0);

    private static Option<string?> Json(string what) => new("--json") { Description = $"write {what} as JSON to FILE", HelpName = "FILE" };

    private static Option<string> ModelDir() =>
        new("--model-dir") { Description = "a fixture model's folder (with reference/reference.json)", HelpName = "DIR", Required = true };

    private static Option<string> Case() => new("--case") { Description = "the id of a case in reference.json", HelpName = "ID", Required = true };

    /// <summary>A number that must not be negative.</summary>
    private static Option<int> Count(string name, string description, int fallback) =>
        new Option<int>(name) { Description = description, HelpName = "N", DefaultValueFactory = _ => fallback }
            .Check(v => v >= 0 ? null : $"{name} must not be negative, got {v}");

    private const StringSplitOptions SplitOptions = StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries;

    /// <summary>Comma-separated values (<c>-t q4_k,q6_k</c>); the option may also be given more than once. Empty when absent.</summary>
    private static Option<string[]> ListOption(string name, string description, string helpName, params string[] aliases) =>
        new(name, aliases)
        {
            Description = description, HelpName = helpName, DefaultValueFactory = _ => [],
            CustomParser = r => [.. r.Tokens.SelectMany(t => t.Value.Split(',', SplitOptions))],
        };
}
