using System.Diagnostics;
using System.Text;
using Infer.Tests;

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

    [Fact]
    public void ConvertWritesTheOutfile()
    {
        string dir = Directory.CreateTempSubdirectory("convert-process-").FullName;
        try
        {
            string output = Path.Combine(dir, "out.gguf");
            var (code, _, stderr) = Run("convert", Path.Combine(Fixtures.ModelDir("llama2-spm"), "hf"), "--outfile", output, "--outtype", "bf16");
            Assert.True(code == 0, stderr);
            Assert.EndsWith($"wrote {output}", stderr.TrimEnd('\n'));
            using var file = Infer.Runtime.Gguf.GgufFile.Open(output);
            using var reference = Infer.Runtime.Gguf.GgufFile.Open(Fixtures.Model("llama2-spm", "bf16"));
            Assert.Equal(reference.Tensors.Select(t => (t.Name, t.ShapeString)).Order(), file.Tensors.Select(t => (t.Name, t.ShapeString)).Order());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("convert-weights: unknown command 'frobnicate' (see 'convert-weights --help')", "frobnicate")]
    [InlineData("convert-weights quantize: missing IN.gguf OUT.gguf TYPE (see 'convert-weights quantize --help')", "quantize", "a.gguf")]
    [InlineData("convert-weights convert: unknown option --bogus (see 'convert-weights convert --help')",
        "convert", "dir", "--bogus", "-o", "x.gguf")]
    public void UsageErrorsAreOneLineWithExitCodeTwo(string message, params string[] args)
    {
        var (code, _, stderr) = Run(args);
        Assert.Equal(2, code);
        Assert.Equal(message, stderr.TrimEnd('\n'));
    }
}
