using Infer.CommandLine;
using static Infer.BackendOps.Tests.BackendOpsTests;

namespace Infer.BackendOps.Tests;

/// <summary>
/// backend-ops' command line (System.CommandLine through Infer.CommandLine): usage errors are one line and exit 2 before anything
/// runs, every command has its --help, lists are comma-separated, and every call the device check makes still parses.
/// </summary>
public sealed class CommandLineTests
{
    private static readonly string[] Commands = ["test", "perf", "fixtures", "check-logits", "case-ids", "ptx", "devices", "report"];

    public static TheoryData<string> EveryCommand => [.. Commands];

    /// <summary>The calls of scripts/gpu-check and docs/GPU-CHECK.md, with their paths made up.</summary>
    public static TheoryData<string> DeviceCheckCalls =>
    [
        "devices",
        "test --device cuda --quick --max-seconds 120 --json /w/test-cuda.json",
        "test --device cuda --quick --max-seconds 90 --json /w/test-cuda-o1.json",
        "test --device cuda --max-seconds 240 --json /w/test-cuda-full.json",
        "test --device opencl --max-seconds 1 --json /w/test-opencl.json",
        "fixtures --fixtures /w/fixtures --device cuda --json /w/fixtures.json",
        "case-ids --model-dir /w/fixtures/models/llama2-spm --case prompt0",
        "check-logits --model-dir /w/m --case prompt0 --logits /w/cli.f32 --ids-json /w/cli-ids.json --bound 5e-3",
        "perf --device cuda --quick --json /w/perf.json",
        "report --steps /w/steps.tsv --out /w/out",
        "ptx --json ptx.json",
        "ptx --out /w/ptx --arch sm_90 --isa 7.8 --opt 1 --ptxas /w/ptxas",
        "test -b cpu-ilgpu -o MUL_MAT -t q4_k -p m=33 --seed 7 --threads 2 --list",
    ];

    [Theory]
    [MemberData(nameof(DeviceCheckCalls))]
    public void TheDeviceCheckCallsParse(string line)
    {
        string[] args = line.Split(' ');
        var result = BackendOps.Commands.Root(TextWriter.Null, TextWriter.Null).Parse(args);
        Assert.Empty(result.Errors);
        Assert.Equal(args[0], result.CommandResult.Command.Name);
    }

    [Theory]
    [MemberData(nameof(EveryCommand))]
    public void AnUnknownOptionIsOneLineNamingIt(string command)
    {
        var (rc, output, err) = Run(command, "--bogus", "1");
        Assert.Equal(ExitCodes.Usage, rc);
        Assert.Equal("", output);
        Assert.Equal($"backend-ops {command}: unknown option --bogus (see 'backend-ops {command} --help')", err.TrimEnd());
    }

    [Theory]
    [InlineData("test", "--seed")]
    [InlineData("test", "--threads")]
    [InlineData("test", "--max-seconds")]
    [InlineData("perf", "--threads")]
    [InlineData("fixtures --fixtures fx", "--threads")]
    [InlineData("check-logits --model-dir m --case c --logits f", "--bound")]
    public void NegativeNumbersAreUsageErrors(string command, string option)
    {
        var (rc, output, err) = Run([.. command.Split(' '), option, "-1"]);
        Assert.Equal(ExitCodes.Usage, rc);
        Assert.Equal("", output);
        Assert.Contains($"{option} must ", err);
        Assert.Single(err.TrimEnd().Split('\n'));
    }

    [Theory]
    [InlineData("test --seed x", "--seed expects an integer, got 'x'")]
    [InlineData("test --json", "option --json needs a value")]
    [InlineData("report --steps s", "missing --out")]
    [InlineData("case-ids --case prompt0", "missing --model-dir")]
    [InlineData("perf --model 3b", "--model must be 1b, 8b or tiny, got '3b'")]
    [InlineData("test -o ADD extra", "unexpected argument 'extra'")]
    [InlineData("tset", "unknown command 'tset'")]
    public void MalformedCallsAreUsageErrors(string line, string message)
    {
        var (rc, _, err) = Run(line.Split(' '));
        Assert.Equal(ExitCodes.Usage, rc);
        Assert.Contains(message, err);
    }

    [Theory]
    [MemberData(nameof(EveryCommand))]
    public void EveryCommandHasItsHelp(string command)
    {
        var (rc, output, err) = Run(command, "--help");
        Assert.Equal(0, rc);
        Assert.Equal("", err);
        Assert.Contains($" {command} [options]", output); // after the executable's name (here the test host's)
    }

    [Fact]
    public void HelpNamesTheAliases()
    {
        var (rc, output, _) = Run("test", "-h");
        Assert.Equal(0, rc);
        foreach (var alias in new[] { "-b, --device", "-o, --op", "-t, --type", "-p, --params", "--max-seconds", "--list" })
            Assert.Contains(alias, output);
        Assert.Contains("NORM_MATMUL_ROWS", output); // the operations -o takes
    }

    [Fact]
    public void TheBareToolPrintsItsCommandsAndExitsWithTheUsageCode()
    {
        var (rc, output, _) = Run();
        Assert.Equal(ExitCodes.Usage, rc);
        foreach (var command in Commands) Assert.Contains($"  {command} ", output);
    }

    /// <summary>-o MUL_MAT,ADD, -o MUL_MAT -o ADD and --op=MUL_MAT,ADD pick the same cases.</summary>
    [Fact]
    public void ListsAreCommaSeparatedOrRepeated()
    {
        var comma = Run("test", "--quick", "--list", "-o", "MUL_MAT,ADD", "-t", "q8_0, f32");
        Assert.Equal(0, comma.Rc);
        Assert.Contains("  ADD ", comma.Out);
        Assert.Contains("  MUL_MAT ", comma.Out);
        Assert.Equal(comma, Run("test", "--quick", "--list", "-o", "MUL_MAT", "--op", "ADD", "-t", "q8_0", "--type", "f32"));
        Assert.Equal(comma, Run("test", "--quick", "--list", "--op=MUL_MAT,ADD", "--type=q8_0,f32"));
    }
}
