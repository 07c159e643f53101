using System.Diagnostics;
using System.Text;

namespace Infer.ConvertWeights.Tests;

/// <summary>The built <c>convert-weights</c> executable run as a process, as a user runs it.</summary>
public sealed class ProcessTests
{
    internal static (int Code, string Out, string Err) Run(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8, StandardErrorEncoding = Encoding.UTF8,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "convert-weights.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(60_000), "convert-weights did not finish");
        return (p.ExitCode, output, err.Result);
    }

    [Theory]
    [InlineData("convert")]
    [InlineData("quantize")]
    [InlineData("synth")]
    public void EveryCommandHasItsHelp(string command)
    {
        var (code, stdout, stderr) = Run(command, "--help");
        Assert.True(code == 0, stderr);
        string help = stdout + stderr;
        Assert.Contains($"convert-weights {command}", help);
        Assert.DoesNotContain("needs a value", help);
    }
}
