using Infer.Hub.Tests;
using Infer.Tests;

namespace Infer.Cli.Tests;

/// <summary>The command line as a user meets it, through the process: help, unknown options, llama.cpp's spellings, completion.</summary>
public sealed class CommandLineTests : IDisposable
{
    private const string Fox = "The quick brown fox jumps over the lazy dog.";
    private readonly string _dir = Directory.CreateTempSubdirectory("infer-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static InferProcess.Result Infer(params string[] args) => InferProcess.Run(args);

    private static string Llama3 => Fixtures.Model("llama3", "bf16");

    private static string Qwen3 => Fixtures.Model("qwen3", "bf16");

    [Theory]
    [InlineData("run", "-n, --n-predict <N>", "[default: 128]")]
    [InlineData("chat", "-sys, --system-prompt <TEXT>", "--ctx-overflow <stop|shift>")]
    [InlineData("info", "-hf, -hfr, --hf-repo <OWNER/REPO[:QUANT]>", "--timeout <SECONDS>")]
    [InlineData("bench", "-r, --repetitions <N>", "[default: 5]")]
    [InlineData("logits", "--ids <1,2,3>", "-ngl, --gpu-layers, --n-gpu-layers <N|all>")]
    [InlineData("tokenize", "--detokenize <1,2,3>", "-m, --model <FILE>")]
    [InlineData("template", "--messages <MESSAGES.json>", "--add-generation-prompt")]
    [InlineData("models", "--verify", "--rm <OWNER/REPO[:QUANT]>")]
    [InlineData("devices", "Usage:", "-?, -h, --help")]
    [InlineData("serve", "-np, --parallel <N>", "--port <N>")]
    [InlineData("batch", "-i, --input <REQUESTS.jsonl>", "-np, --parallel <N>")]
    [InlineData("bench-serve", "-c, --concurrency <N>", "[default: 8]")]
    public void EveryCommandHasItsOwnHelpWithOptionsAndDefaults(string command, string option, string more)
    {
        var r = Infer(command, "--help");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("", r.Err);
        Assert.Contains($"infer {command} [options]", r.Out);
        Assert.Contains(option, r.Out);
        Assert.Contains(more, r.Out);
    }

    [Fact]
    public void AnUnknownOptionIsNamedAndTakesNoValueFromTheNextOption()
    {
        var r = Infer("run", "--bogus", "-m", Llama3, "-p", "hi");
        Assert.Equal(2, r.Code);
        Assert.Equal("infer run: unknown option --bogus (see 'infer run --help')", Assert.Single(r.ErrLines));
    }

    [Theory]
    [InlineData("infer run: option -p needs a value (see 'infer run --help')", "run", "-m", "x.gguf", "-p")]
    [InlineData("infer run: -t expects an integer, got 'two'", "run", "-m", "x.gguf", "-p", "hi", "-t", "two")]
    [InlineData("infer: unknown command 'frobnicate' (see 'infer --help')", "frobnicate")]
    [InlineData("infer chat: --ctx-overflow must be stop or shift, got 'wrap'", "chat", "-m", "x.gguf", "--ctx-overflow", "wrap")]
    public void UsageErrorsAreOneLineWithExitCodeTwo(string message, params string[] args)
    {
        var r = Infer(args);
        Assert.Equal(2, r.Code);
        Assert.Equal(message, Assert.Single(r.ErrLines));
    }

    [Fact]
    public void TheBareCommandPrintsItsHelpAsAUsageError()
    {
        var r = Infer();
        Assert.Equal(2, r.Code);
        Assert.Contains("Commands:", r.Out);
        Assert.Contains("run", r.Out);
    }

    [Fact]
    public void APromptFileGivesWhatThePromptGives()
    {
        string file = Path.Combine(_dir, "prompt.txt");
        File.WriteAllText(file, Fox);
        var fromFile = Infer("run", "-m", Llama3, "-f", file, "-n", "8", "--temp", "0", "-t", "2", "--device", "cpu");
        var fromText = Infer("run", "-m", Llama3, "-p", Fox, "-n", "8", "--temp", "0", "-t", "2", "--device", "cpu");
        Assert.True(fromFile.Code == 0, fromFile.Err);
        Assert.Equal(fromText.Out, fromFile.Out);
        Assert.NotEqual("\n", fromFile.Out);
    }

    [Fact]
    public void ListDevicesIsInferDevices()
    {
        var list = Infer("--list-devices");
        Assert.True(list.Code == 0, list.Err);
        Assert.Equal(Infer("devices").Out, list.Out);
        Assert.Contains("cpu", list.Out);
    }

    [Fact]
    public void GpuLayersAllPutsEveryLayerOnTheGpu()
    {
        // ILGPU's CPU accelerator stands in for the GPU.
        var r = Infer("logits", "-m", Llama3, "--ids", "1,2,3", "--device", "cpu-ilgpu", "-ngl", "all");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains(r.ErrLines, l => l.StartsWith("offloaded 2/2 layers", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("--context-shift", 0)]
    [InlineData("--no-context-shift", 1)]
    public void ContextShiftIsCtxOverflowShift(string option, int code)
    {
        string turns = string.Concat(Enumerable.Range(1, 6).Select(i => $"Tell me about the number {i}, please.\n"));
        var r = InferProcess.Run(["chat", "-m", Qwen3, "-c", "64", "-n", "4", "--temp", "0", "-t", "2", "--device", "cpu", option], turns);
        Assert.True(r.Code == code, r.Err);
        if (code == 0) Assert.Contains(r.ErrLines, l => l.StartsWith("[context shift: dropped the", StringComparison.Ordinal));
        else Assert.Contains(r.ErrLines, l => l.Contains("does not fit the context of 64 tokens"));
    }

    [Theory]
    [InlineData("/clear")]
    [InlineData("/reset")]
    public void ClearIsReset(string command)
    {
        var r = InferProcess.Run(["chat", "-m", Qwen3, "-n", "2", "--temp", "0", "-t", "2", "--device", "cpu"], $"Hi\n{command}\n");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("conversation reset", Assert.Single(r.ErrLines));
    }

    [Fact]
    public void VerboseAddsTheStackTrace()
    {
        string missing = Path.Combine(_dir, "missing.gguf");
        var quiet = Infer("info", "-m", missing);
        var verbose = Infer("info", "-m", missing, "-v");
        Assert.Equal(1, quiet.Code);
        Assert.Equal(1, verbose.Code);
        Assert.Single(quiet.ErrLines);
        Assert.Equal(quiet.ErrLines[0], verbose.ErrLines[0]);
        Assert.Contains(verbose.ErrLines, l => l.TrimStart().StartsWith("at Infer.Runtime.Gguf.GgufFile", StringComparison.Ordinal));
    }

    [Fact]
    public void TabCompletionSuggestsOptions()
    {
        // System.CommandLine's [suggest:POSITION] directive, which dotnet-suggest's shell scripts call.
        var r = Infer("[suggest:8]", "run --te");
        Assert.True(r.Code == 0, r.Err);
        var words = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Contains("--temp", words);
        Assert.Contains("--temperature", words);
        Assert.DoesNotContain("--top-k", words);
    }

    [Fact]
    public async Task HfTokenIsSentLikeHfToken()
    {
        await using var hub = new FakeHub();
        hub.AddRepo("test/gated", requiredToken: "hf_secret").Files["tiny-Q8_0.gguf"] = new FakeFile(File.ReadAllBytes(Qwen3));
        var env = new Dictionary<string, string?> { ["HF_ENDPOINT"] = hub.Endpoint, ["INFER_CACHE"] = Path.Combine(_dir, "cache") };
        var without = InferProcess.Run(["info", "-hf", "test/gated:Q8_0"], "", env);
        Assert.Equal(1, without.Code);
        Assert.Contains("No HF_TOKEN is set", without.Err);
        var with = InferProcess.Run(["info", "-hf", "test/gated:Q8_0", "-hft", "hf_secret"], "", env);
        Assert.True(with.Code == 0, with.Err);
        Assert.Contains("architecture:    qwen3", with.Out);
    }
}
