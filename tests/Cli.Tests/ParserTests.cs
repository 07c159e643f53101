using System.CommandLine;

namespace Infer.Cli.Tests;

/// <summary>What System.CommandLine must do for our command lines: llama.cpp's multi-letter single-dash options, negative values.</summary>
public sealed class ParserTests
{
    private static ParseResult ParseInfer(params string[] args)
    {
        var io = new CliContext(TextWriter.Null, TextWriter.Null, TextReader.Null, false);
        return Program.BuildRoot(io, Program.VerboseOption()).Parse(args);
    }

    [Fact]
    public void MultiLetterSingleDashAliasesParseBesideOneLetterOnes()
    {
        // -np next to -n and -p, -sys next to -s, -ngl next to -n: each is its own option, never a bundle of letters.
        var n = new Option<int>("--n-predict", "-n");
        var p = new Option<string>("--prompt", "-p");
        var np = new Option<int>("--parallel", "-np");
        var s = new Option<ulong>("--seed", "-s");
        var sys = new Option<string>("--system-prompt", "-sys");
        var ngl = new Option<string>("--gpu-layers", "-ngl");
        var hf = new Option<string>("--hf-repo", "-hf");
        var command = new RootCommand { n, p, np, s, sys, ngl, hf };
        var r = command.Parse(["-np", "4", "-n", "-1", "-p", "hi", "-sys", "be brief", "-s", "7", "-ngl", "all", "-hf", "Qwen/Qwen3-0.6B-GGUF:Q8_0"]);
        Assert.Empty(r.Errors);
        Assert.Equal(4, r.GetValue(np));
        Assert.Equal(-1, r.GetValue(n));
        Assert.Equal("hi", r.GetValue(p));
        Assert.Equal("be brief", r.GetValue(sys));
        Assert.Equal(7UL, r.GetValue(s));
        Assert.Equal("all", r.GetValue(ngl));
        Assert.Equal("Qwen/Qwen3-0.6B-GGUF:Q8_0", r.GetValue(hf));
    }

    [Theory]
    [InlineData("run", "-hf", "a/b:Q8_0", "-ngl", "3", "-t", "2", "-p", "x")]
    [InlineData("chat", "-hf", "a/b", "-sys", "be brief", "-ngl", "all", "-s", "5", "-n", "-1")]
    [InlineData("bench", "-hf", "a/b", "-ngl", "0", "-p", "8", "-n", "4", "-d", "0", "-r", "1")]
    [InlineData("run", "-m", "x.gguf", "-hft", "hf_abc", "-hff", "x-Q8_0.gguf", "-f", "prompt.txt", "-dev", "cpu", "-v")]
    [InlineData("serve", "-hf", "a/b", "-np", "4", "-ngl", "all", "-c", "512", "--port", "8080")]
    public void InfersCommandsTakeLlamaCppsSpellings(params string[] args)
    {
        var r = ParseInfer(args);
        Assert.Empty(r.Errors.Select(e => e.Message));
        Assert.Equal(args[0], r.CommandResult.Command.Name);
    }

    [Fact]
    public void ValuesReachTheirOptions()
    {
        var r = ParseInfer("chat", "-hf", "a/b", "-sys", "be brief", "-ngl", "all", "-s", "5", "-n", "-1", "--context-shift");
        Assert.Equal("be brief", r.GetValue<string?>("--system-prompt"));
        Assert.Equal("all", r.GetValue<string?>("--gpu-layers"));
        Assert.Equal(5UL, r.GetValue<ulong>("--seed"));
        Assert.Equal(-1, r.GetValue<int>("--n-predict"));
        Assert.True(r.GetValue<bool>("--context-shift"));
    }
}
