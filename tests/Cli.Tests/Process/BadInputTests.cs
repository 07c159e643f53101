using System.Text.Json;
using Infer.Runtime.Gguf;
using Infer.Tests;

namespace Infer.Cli.Tests;

/// <summary>
/// What a user types wrong or points at the wrong thing (issue #12's table), each run as a process: the exit code and the
/// one message that says what is wrong.
/// </summary>
public sealed class BadInputTests : IDisposable
{
    private const string Fox = "The quick brown fox jumps over the lazy dog.";
    private readonly string _dir = Directory.CreateTempSubdirectory("infer-bad-input-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static InferProcess.Result Infer(params string[] args) => InferProcess.Run(args);

    private static JsonElement FoxCase()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.ModelDir("llama3"), "reference", "reference.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray().First(c => c.GetProperty("id").GetString() == "prompt0").Clone();
    }

    private static string GreedyFoxText() => FoxCase().GetProperty("greedy_text").GetString()!;

    [Fact]
    public void AModelBehindAChainOfSymbolicLinksRuns()
    {
        // Hugging Face's cache: snapshots/REV/model.gguf -> ../../blobs/SHA, here two links deep.
        string blob = Path.Combine(_dir, "blob.gguf");
        File.Copy(Fixtures.Model("llama3", "bf16"), blob);
        string middle = Path.Combine(_dir, "middle.gguf");
        File.CreateSymbolicLink(middle, blob);
        string link = Path.Combine(_dir, "model.gguf");
        File.CreateSymbolicLink(link, "middle.gguf"); // relative, as in the Hub's cache
        var r = Infer("run", "-m", link, "-p", Fox, "-n", "24", "--temp", "0", "-t", "2");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(GreedyFoxText(), r.Out.TrimEnd('\n'));
    }

    [Fact]
    public void ALoopOfSymbolicLinksIsNamed()
    {
        string a = Path.Combine(_dir, "a.gguf"), b = Path.Combine(_dir, "b.gguf");
        File.CreateSymbolicLink(a, b);
        File.CreateSymbolicLink(b, a);
        var r = Infer("info", "-m", a);
        Assert.Equal(1, r.Code);
        Assert.Equal($"infer info: error: {a}: too many levels of symbolic links (a loop of links?)", Assert.Single(r.ErrLines));
    }

    [Fact]
    public void ADirectoryAsTheModelSaysSo()
    {
        var r = Infer("info", "-m", _dir);
        Assert.Equal(1, r.Code);
        Assert.Equal($"infer info: error: {_dir}: is a directory, not a GGUF file", Assert.Single(r.ErrLines));
        Assert.Equal("", r.Out);
    }

    [Fact]
    public void MoreThreadsThanCoresWarnsOnceAndRuns()
    {
        int threads = Environment.ProcessorCount + 1;
        var r = Infer("logits", "-m", Fixtures.Model("llama3", "bf16"), "--ids", "1,2,3", "-t", threads.ToString(), "--device", "cpu");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal($"warning: -t {threads} is more than the {Environment.ProcessorCount} logical cores of this machine; "
            + "the extra threads make generation slower, not faster", Assert.Single(r.ErrLines));
        Assert.Contains("\"input_ids\":[1,2,3]", r.Out);
    }

    [Theory]
    [InlineData("run", "100000")]
    [InlineData("run", "-3")]
    [InlineData("bench", "513")]
    public void AnAbsurdThreadCountIsAUsageError(string command, string threads)
    {
        string[] args = command == "run" ? ["run", "-m", Fixtures.Model("llama3", "bf16"), "-p", "hi", "-t", threads]
            : ["bench", "-m", Fixtures.Model("llama3", "bf16"), "-t", threads];
        var r = Infer(args);
        Assert.Equal(2, r.Code);
        Assert.Equal($"infer {command}: --threads must be between 1 and 512 (0 or absent: one per core, {Environment.ProcessorCount} here), "
            + $"got {threads}",
            Assert.Single(r.ErrLines));
    }

    [Fact]
    public void AContextBeyondMemoryFailsBeforeAllocatingAndSaysHowMuch()
    {
        // llama3 fixture, the default f16 cache: 2 layers x 1 KV head x (32 halves of K + 32 of V) = 256 bytes per token: 1G tokens
        // need 238.4 GiB (+ 7.5 GiB of attention scores, one row per thread): more than any machine this runs on has.
        var r = Infer("run", "-m", Fixtures.Model("llama3", "bf16"), "-p", "hi", "-c", "1000000000", "-t", "2", "--device", "cpu");
        Assert.Equal(1, r.Code);
        string line = r.ErrLines[^1];
        Assert.StartsWith("infer run: error: a context of 1000000000 tokens needs 245.9 GiB for the KV cache "
            + "(2 layers x 1 KV heads x (64 + 64) bytes per token, f16)", line);
        Assert.Matches(@"but only \d+\.\d GiB of memory is available: use a smaller -c \(at most about \d+\)$", line);
        Assert.Equal(2, r.ErrLines.Length); // the warning about the trained context, then the error
        Assert.StartsWith("warning: a context of 1000000000 tokens is beyond the 4096 the model was trained for", r.ErrLines[0]);
    }

    [Fact]
    public void AContextBeyondTheTrainedOneWarnsAndRuns()
    {
        var r = Infer("logits", "-m", Fixtures.Model("llama3", "bf16"), "--ids", "1,2,3", "-c", "8192", "-t", "2", "--device", "cpu");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("warning: a context of 8192 tokens is beyond the 4096 the model was trained for; expect worse text past that",
            Assert.Single(r.ErrLines));
    }

    /// <summary>The llama2-spm fixture with its vocabulary cut to 100 tokens; the embedding keeps its 32000 rows.</summary>
    private string ShortVocabulary()
    {
        string path = Path.Combine(_dir, "short-vocab.gguf");
        using var src = GgufFile.Open(Fixtures.Model("llama2-spm", "bf16"));
        using (var w = new GgufWriter(path))
        {
            foreach (string key in src.MetadataKeys)
            {
                var v = src.Metadata[key];
                if (v.Value is GgufArray { Length: 32000 } array)
                {
                    var values = Array.CreateInstance(array.Values.GetType().GetElementType()!, 100);
                    Array.Copy(array.Values, values, 100);
                    w.Add(key, v.Type, new GgufArray(array.ElementType, values));
                }
                else
                {
                    w.Add(key, v.Type, v.Value);
                }
            }
            foreach (var t in src.Tensors) w.AddTensor(t.Name, t.Type, t.Dims.ToArray());
            w.WriteHeader();
            foreach (var t in src.Tensors) w.WriteTensorData(t.Span);
            w.Commit();
        }
        return path;
    }

    [Theory]
    [InlineData("info")]
    [InlineData("run")]
    public void AVocabularyShorterThanTheEmbeddingIsNamedAtLoad(string command)
    {
        string path = ShortVocabulary();
        string[] args = command == "info" ? ["info", "-m", path] : ["run", "-m", path, "-p", "hi", "-t", "2", "--device", "cpu"];
        var r = Infer(args);
        Assert.Equal(1, r.Code);
        Assert.Equal($"infer {command}: error: {path}: the vocabulary ('tokenizer.ggml.tokens') has 100 tokens but tensor 'token_embd.weight' "
            + "has 32000 rows: they must match", Assert.Single(r.ErrLines));
        Assert.Equal("", r.Out);
    }

    [Theory]
    [InlineData("-n", "-5", "-n must be a number of tokens, or -1 for no limit; got -5")]
    [InlineData("--temp", "-1", "--temp must be 0 (greedy) or positive, got -1")]
    [InlineData("--top-k", "-2", "--top-k must be 0 (off) or positive, got -2")]
    public void NegativeCountsAreUsageErrors(string option, string value, string message)
    {
        var r = Infer("run", "-m", Fixtures.Model("llama3", "bf16"), "-p", "hi", option, value);
        Assert.Equal(2, r.Code);
        Assert.Equal($"infer run: {message}", Assert.Single(r.ErrLines));
    }

    [Fact]
    public void MinusOneTokensGeneratesUntilTheContextIsFull()
    {
        // transformers' tokenization of the prompt (with BOS) in a context of 20: exactly 20 - that many more fit.
        int prompt = FoxCase().GetProperty("input_ids").GetArrayLength();
        var r = Infer("run", "-m", Fixtures.Model("llama3", "bf16"), "-p", Fox, "-n", "-1", "-c", "20", "--temp", "0", "--ignore-eos",
            "-t", "2", "--device", "cpu");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains($"prompt: {prompt} tokens", r.Err);
        Assert.Contains($"generation: {20 - prompt} tokens", r.Err);
    }
}
