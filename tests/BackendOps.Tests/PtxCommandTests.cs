using Infer.CommandLine;
using static Infer.BackendOps.Tests.BackendOpsTests;

namespace Infer.BackendOps.Tests;

/// <summary>
/// <c>backend-ops ptx</c>: every kernel's PTX for Hopper is written without a device, and, where NVIDIA's ptxas is
/// here (<c>scripts/get-ptxas</c>, $PTXAS or PATH), every kernel assembles for sm_90 without spilling.
/// </summary>
public sealed class PtxCommandTests
{
    private const int Kernels = 105; // GpuKernels.EntryPoints(): the count KernelCompileTests holds

    [Fact]
    public void WritesOnePtxFilePerKernelForTheArchitectureAskedFor()
    {
        string dir = Temp("ptx");
        var (rc, output, err) = Run("ptx", "--out", dir, "--no-assemble");
        Assert.True(rc == 0, output + err);
        string[] files = Directory.GetFiles(dir, "*.ptx");
        Assert.Equal(Kernels, files.Length);
        foreach (var f in files)
        {
            string ptx = File.ReadAllText(f);
            Assert.Contains(".target sm_", ptx); // ILGPU 1.5.3 writes sm_80 for sm_90 (newer targets add nothing it emits)
            Assert.Contains(".version 7.8", ptx);
        }
        Assert.Contains("MatMul-Q8_0Words-.ptx", files.Select(Path.GetFileName));
        Assert.Contains($"{Kernels} kernels at O2 for sm_90 (PTX ISA 7.8, .target sm_", output);
        Assert.Contains($") in {dir}: not assembled", output);
    }

    [Theory]
    [InlineData("--arch", "90", "--arch expects sm_XY")]
    [InlineData("--isa", "8", "--isa expects MAJOR.MINOR")]
    [InlineData("--bogus", "1", "unknown option --bogus")]
    [InlineData("--ptxas", "/nonexistent/ptxas", "--ptxas: no such file")]
    [InlineData("--opt", "3", "--opt expects 1 or 2")]
    public void BadArgumentsAreUsageErrors(string option, string value, string message)
    {
        var (rc, _, err) = Run("ptx", option, value);
        Assert.Equal(ExitCodes.Usage, rc);
        Assert.Contains(message, err);
    }

    /// <summary>A stand-in ptxas (a shell script): what it prints is parsed per kernel, and its refusal fails the command.</summary>
    [Theory]
    [InlineData(0, "ptxas info    : Used 40 registers, 1024 bytes smem, 400 bytes cmem[0]\n"
        + "ptxas info    : 8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads")]
    [InlineData(1, "ptxas fatal   : Unresolved extern function 'x'")]
    public void PtxasOutputIsParsedAndItsFailuresFail(int exitCode, string says)
    {
        Assert.SkipUnless(!OperatingSystem.IsWindows() && File.Exists("/bin/sh"), "needs /bin/sh for the stand-in ptxas");
        string dir = Temp("ptx");
        Directory.CreateDirectory(dir);
        string fake = Path.Combine(dir, "ptxas");
        File.WriteAllText(fake, $"#!/bin/sh\nprintf '%s\\n' \"{says.Replace("\n", "\" \"")}\" >&2\nexit {exitCode}\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(fake, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var (rc, output, err) = Run("ptx", "--out", Path.Combine(dir, "out"), "--ptxas", fake, "--json", Path.Combine(dir, "ptx.json"));
        if (exitCode == 0)
        {
            Assert.True(rc == 0, output + err);
            Assert.Contains("  Add                                   40 regs  spill 12/16 B  smem   1024 B  stack 8 B  SPILLS", output);
            Assert.Contains($"{Kernels} assembled, 0 failed", output);
        }
        else
        {
            Assert.Equal(Program.ExitFailed, rc);
            Assert.Contains("  Add                                  FAIL  ptxas fatal   : Unresolved extern function 'x'", output);
            Assert.Contains($"0 assembled, {Kernels} failed", output);
        }
        Assert.Contains("\"registers\"", File.ReadAllText(Path.Combine(dir, "ptx.json")), StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void EveryKernelAssemblesForHopperWithoutSpills()
    {
        string fetched = Path.Combine(Infer.Tests.Fixtures.RepoRoot, ".tools", "cuda", "ptxas");
        string? ptxas = PtxCheck.FindPtxas() ?? (File.Exists(fetched) ? fetched : null);
        Assert.SkipWhen(ptxas is null, "NVIDIA's ptxas is not here: scripts/get-ptxas fetches it (or set PTXAS)");
        string dir = Temp("ptx");
        var (rc, output, err) = Run("ptx", "--out", dir, "--arch", "sm_90", "--isa", "7.8", "--ptxas", ptxas!);
        Assert.True(rc == 0, output + err);
        Assert.Contains($"{Kernels} assembled, 0 failed", output);
        Assert.DoesNotContain("SPILLS", output);
        Assert.Equal(Kernels, Directory.GetFiles(dir, "*.cubin").Length);
    }
}
