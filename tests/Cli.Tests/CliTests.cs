using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Infer.Tests;

namespace Infer.Cli.Tests;

/// <summary>The <c>infer</c> commands, run in-process through <see cref="Program.Run"/> with captured output.</summary>
public class CliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("infer-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static (int Code, string Out, string Err) Infer(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private static JsonElement Case(string model, string id)
    {
        var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.ModelDir(model), "reference", "reference.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray().First(c => c.GetProperty("id").GetString() == id);
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    [Theory]
    [InlineData("llama2-spm", "llama", "untied")]
    [InlineData("qwen3", "qwen3", "Q/K norm")]
    public void InfoSummarizesTheModel(string model, string arch, string feature)
    {
        var (code, stdout, _) = Infer("info", "-m", Fixtures.Model(model, "bf16"));
        Assert.Equal(0, code);
        Assert.Contains($"architecture:    {arch}", stdout);
        Assert.Contains("parameters:", stdout);
        Assert.Contains("BF16", stdout);
        Assert.Contains(feature == "untied" ? "separate output" : feature, stdout);
    }

    /// <summary>
    /// info names the Q8_0 tiles the process runs: the generated AVX512-VNNI ones where this CPU has them, the intrinsics ones
    /// with INFER_CPU_JIT=0 (read once per process, so a separate process each).
    /// </summary>
    [Fact]
    public void InfoNamesTheGeneratedQ8_0TilesAndInferCpuJitTurnsThemOff()
    {
        Assert.SkipUnless(Kernels.Cpu.Quants.QuantKernels.Generated,
            "no generated Q8_0 tiles on this CPU: " + Kernels.Cpu.Quants.QuantKernels.GeneratedUnavailable);
        string[] args = ["info", "-m", Fixtures.Model("llama3", "q8_0")];
        var on = InferProcess.Run(args);
        Assert.True(on.Code == 0, on.Err);
        Assert.Contains("avx512-vnni tiles (generated)", on.Out);
        var off = InferProcess.Run(args, environment: new Dictionary<string, string?> { ["INFER_CPU_JIT"] = "0" });
        Assert.True(off.Code == 0, off.Err);
        Assert.Contains("Q8_0 x", off.Out);
        Assert.DoesNotContain("generated", off.Out);
    }

    /// <summary>With a float32 KV cache (-ctk/-ctv f32): the fixtures' 1e-3 bound of float32 activations.</summary>
    [Fact]
    public void LogitsCommandMatchesTransformers()
    {
        var c = Case("qwen2", "prompt0");
        string outFile = Path.Combine(_dir, "l.f32");
        var ids = string.Join(",", Ints(c.GetProperty("input_ids")));
        var (code, stdout, stderr) = Infer("logits", "-m", Fixtures.Model("qwen2", "bf16"), "--ids", ids, "--out", outFile, "--greedy", "24",
            "-t", "2",
            "-ctk", "f32", "--cache-type-v", "f32");
        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal(Ints(c.GetProperty("input_ids")), Ints(json.RootElement.GetProperty("input_ids")));
        Assert.Equal(Ints(c.GetProperty("greedy_new_ids")), Ints(json.RootElement.GetProperty("greedy_ids")));
        var ours = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(outFile)).ToArray();
        string referenceFile = Path.Combine(Fixtures.ModelDir("qwen2"), "reference", c.GetProperty("last_logits_file").GetString()!);
        var reference = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(referenceFile)).ToArray();
        Assert.Equal(reference.Length, ours.Length);
        Assert.True(reference.Zip(ours, (a, b) => Math.Abs(a - b)).Max() <= 1e-3);
    }

    /// <summary>
    /// The default KV cache is f16 (llama.cpp's): within ModelFixtureTests' f16 bound (5e-3; 2.5e-3 on this case) and
    /// transformers' greedy tokens; q8_0 within its 0.1.
    /// </summary>
    [Theory]
    [InlineData(null, 5e-3)]
    [InlineData("q8_0", 0.1)]
    public void LogitsWithANarrowerCacheStayWithinItsBound(string? type, double bound)
    {
        var c = Case("qwen2", "prompt0");
        string outFile = Path.Combine(_dir, "l.f32");
        var ids = string.Join(",", Ints(c.GetProperty("input_ids")));
        string[] cache = type is null ? [] : ["-ctk", type, "-ctv", type];
        var (code, stdout, stderr) = Infer(["logits", "-m", Fixtures.Model("qwen2", "bf16"), "--ids", ids, "--out", outFile, "--greedy", "24",
            "-t", "2",
            "--device", "cpu", .. cache]);
        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        if (type is null) Assert.Equal(Ints(c.GetProperty("greedy_new_ids")), Ints(json.RootElement.GetProperty("greedy_ids")));
        var ours = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(outFile)).ToArray();
        var reference = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(Path.Combine(Fixtures.ModelDir("qwen2"), "reference",
            c.GetProperty("last_logits_file").GetString()!))).ToArray();
        double diff = reference.Zip(ours, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(diff <= bound, $"{type ?? "default"} cache: max |dlogit| {diff}, bound {bound}");
    }

    [Theory]
    [InlineData("-ctk", "q4_0", "must be f32, f16, q8_0")]
    [InlineData("-ctv", "f16,q8_0", "-ctv must be f32, f16, q8_0, got 'f16,q8_0'")]
    public void CacheTypeOptionsRejectWhatTheyCannotDo(string option, string value, string message)
    {
        var (code, _, stderr) = Infer("run", "-m", Fixtures.Model("qwen2", "bf16"), "-p", "hi", "-n", "1", option, value);
        Assert.Equal(2, code);
        Assert.Contains(message, stderr);
    }

    [Theory]
    [InlineData("llama2-spm", "prompt1")]
    [InlineData("llama3", "prompt1")]
    public void LogitsFromPromptTokenizesLikeTransformers(string model, string id)
    {
        var c = Case(model, id);
        var (code, stdout, stderr) = Infer("logits", "-m", Fixtures.Model(model, "bf16"), "--prompt", c.GetProperty("prompt").GetString()!);
        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal(Ints(c.GetProperty("input_ids")), Ints(json.RootElement.GetProperty("input_ids")));
    }

    [Fact]
    public void TokenizeRoundTrips()
    {
        var c = Case("qwen3", "prompt1");
        string model = Fixtures.Model("qwen3", "bf16");
        var (code, stdout, _) = Infer("tokenize", "-m", model, "-p", c.GetProperty("prompt").GetString()!);
        Assert.Equal(0, code);
        using var json = JsonDocument.Parse(stdout);
        var ids = Ints(json.RootElement.GetProperty("ids"));
        Assert.Equal(Ints(c.GetProperty("input_ids")), ids);
        var (code2, text, _) = Infer("tokenize", "-m", model, "--detokenize", string.Join(",", ids));
        Assert.Equal(0, code2);
        Assert.Equal(c.GetProperty("prompt").GetString() + "\n", text.Replace("\r\n", "\n"));
    }

    [Fact]
    public void RunGeneratesGreedyText()
    {
        var (code, stdout, stderr) = Infer("run", "-m", Fixtures.Model("llama3", "bf16"), "-p", "The quick brown fox jumps over the lazy dog.",
            "-n", "24", "--temp", "0");
        Assert.True(code == 0, stderr);
        // transformers' greedy continuation of this prompt (reference.json prompt0 greedy_text)
        var c = Case("llama3", "prompt0");
        Assert.Equal(c.GetProperty("greedy_text").GetString(), stdout.TrimEnd('\n'));
        Assert.Contains("tokens/s", stderr);
    }

    [Fact]
    public void CorruptFileGivesOneLineAndNonZeroExit()
    {
        byte[] bytes = File.ReadAllBytes(Fixtures.Model("llama2-spm", "q8_0"));
        string path = Path.Combine(_dir, "cut.gguf");
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var (code, stdout, stderr) = Infer("info", "-m", path);
        Assert.NotEqual(0, code);
        Assert.Equal("", stdout);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.Contains("cut.gguf", stderr);
    }

    /// <summary>NaN weights (a corrupt file that parses) make NaN logits: one line naming them and exit 1, not a token picked at random.</summary>
    [Fact]
    public void NaNWeightsGiveOneLineAndNonZeroExit()
    {
        string source = Fixtures.Model("llama2-spm", "bf16");
        long offset;
        using (var file = Runtime.Gguf.GgufFile.Open(source))
            offset = file.Tensors.Single(t => t.Name == "blk.0.attn_q.weight").FileOffset;
        byte[] bytes = File.ReadAllBytes(source);
        for (int i = 0; i < 64; i += 2) { bytes[offset + i] = 0xC0; bytes[offset + i + 1] = 0x7F; } // bf16 NaN
        string path = Path.Combine(_dir, "nan.gguf");
        File.WriteAllBytes(path, bytes);
        var (code, _, stderr) = Infer("run", "-m", path, "-p", "Hello there", "-n", "4", "--temp", "0");
        Assert.Equal(1, code);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.Contains("logit of NaN", stderr);
    }

    [Fact]
    public void MissingFileGivesOneLine()
    {
        var (code, _, stderr) = Infer("info", "-m", Path.Combine(_dir, "missing.gguf"));
        Assert.Equal(1, code);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.Contains("not found", stderr);
    }

    [Fact]
    public void UnknownArchitectureListsTheSupportedOnes()
    {
        byte[] bytes = File.ReadAllBytes(Fixtures.Model("llama2-spm", "bf16"));
        byte[] needle = [.. Encoding.ASCII.GetBytes("general.architecture"), 8, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, .. Encoding.ASCII.GetBytes("llama")];
        int at = bytes.AsSpan().IndexOf(needle);
        Assert.True(at > 0);
        Encoding.ASCII.GetBytes("gpt_j").CopyTo(bytes, at + needle.Length - 5);
        string path = Path.Combine(_dir, "gptj.gguf");
        File.WriteAllBytes(path, bytes);
        var (code, _, stderr) = Infer("info", "-m", path);
        Assert.Equal(1, code);
        Assert.Contains("'gpt_j' is not supported", stderr);
        Assert.Contains("llama, qwen2, qwen3", stderr);
    }

    [Theory]
    [InlineData("frobnicate")]
    [InlineData("run", "-m")]
    [InlineData("run", "-m", "x.gguf", "--bogus", "1")]
    public void UsageErrorsExitWithTwo(params string[] args)
    {
        var (code, _, stderr) = Infer(args);
        Assert.Equal(2, code);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void PromptLongerThanTheContextIsAnError()
    {
        var (code, _, stderr) = Infer("run", "-m", Fixtures.Model("llama2-spm", "bf16"), "-c", "4", "-p", "one two three four five six seven");
        Assert.Equal(1, code);
        Assert.Contains("context is full", stderr);
    }

    [Fact]
    public void DeviceCudaWithoutAGpuSaysSoOnceAndRunsOnTheCpu()
    {
        // CI machines have no GPU; where one is present this run goes to it and the line is not printed.
        var (code, stdout, stderr) = Infer("run", "--device", "cuda", "-m", Fixtures.Model("llama3", "bf16"),
            "-p", "The quick brown fox jumps over the lazy dog.", "-n", "24", "--temp", "0");
        Assert.True(code == 0, stderr);
        var c = Case("llama3", "prompt0");
        Assert.Equal(c.GetProperty("greedy_text").GetString(), stdout.TrimEnd('\n'));
        if (!Infer("devices").Out.Contains("cuda:"))
            Assert.Single(stderr.Split('\n'), l => l.Contains("no CUDA device found; running on the CPU backend"));
    }

    [Theory]
    [InlineData("-ngl")]
    [InlineData("--gpu-layers")]
    public void GpuLayersSplitsTheModelBetweenGpuAndCpu(string option)
    {
        // ILGPU's CPU accelerator stands in for the GPU: layer 0 runs there, layer 1 and the output on the CPU backend.
        var (code, stdout, stderr) = Infer("run", "--device", "cpu-ilgpu", option, "1", "-m", Fixtures.Model("llama3", "bf16"),
            "-p", "The quick brown fox jumps over the lazy dog.", "-n", "24", "--temp", "0");
        Assert.True(code == 0, stderr);
        Assert.Equal(Case("llama3", "prompt0").GetProperty("greedy_text").GetString(), stdout.TrimEnd('\n'));
        Assert.Single(stderr.Split('\n'),
            l => l.StartsWith("offloaded 1/2 layers: layer 0 on gpu (cpu-ilgpu:0") && l.Contains("; layer 1 and the output on cpu (CPU,"));
        Assert.DoesNotContain(stderr.Split('\n'), l => l.Contains("KV cache")); // both parts keep the default f16 cache
    }

    [Fact]
    public void ZeroGpuLayersRunOnTheCpuWithoutLookingForAGpu()
    {
        var (code, stdout, stderr) = Infer("logits", "--device", "cuda", "-ngl", "0", "-m", Fixtures.Model("llama3", "bf16"), "--ids", "1,2,3");
        Assert.True(code == 0, stderr);
        Assert.Contains("input_ids", stdout);
        Assert.Equal("", stderr);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("two")]
    public void BadGpuLayerCountIsAUsageError(string value)
    {
        var (code, _, stderr) = Infer("run", "-m", Fixtures.Model("llama3", "bf16"), "-p", "hi", "-ngl", value);
        Assert.Equal(2, code);
        Assert.Contains("--gpu-layers", stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void DevicesListsTheCpu()
    {
        var (code, stdout, _) = Infer("devices");
        Assert.Equal(0, code);
        Assert.Contains("cpu", stdout);
    }

    [Fact]
    public void BenchPrintsOneRowPerTestWithTheRoofline()
    {
        var (code, stdout, stderr) = Infer("bench", "-m", Fixtures.Model("llama3", "q8_0"), "-p", "8", "-n", "4", "-r", "2", "-t", "2",
            "--device", "cpu");
        Assert.True(code == 0, stderr);
        var rows = stdout.Split('\n').Where(l => l.StartsWith("| llama", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, rows.Count);
        Assert.Contains("| pp8 |", rows[0]);
        Assert.Contains("| tg4 |", rows[1]);
        Assert.Contains("%", rows[1]); // the fraction of the measured read bandwidth
        Assert.Contains("measured read bandwidth:", stdout);
        if (OperatingSystem.IsLinux()) Assert.Contains("resident memory after the tests: ", stdout);
    }

    [Fact]
    public void BenchProfileListsOperationsPerTokenAsJson()
    {
        var (code, stdout, stderr) = Infer("bench", "-m", Fixtures.Model("llama3", "q8_0"), "-p", "8", "-n", "2", "-r", "1", "-t", "2",
            "--device", "cpu", "--no-bandwidth", "--profile", "-o", "json");
        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        var profile = json.RootElement.GetProperty("profile").EnumerateArray().ToList();
        Assert.Equal(["pp8", "tg2"], profile.Select(p => p.GetProperty("test").GetString()));
        var tg = profile[1].GetProperty("operations").EnumerateArray()
            .ToDictionary(o => o.GetProperty("operation").GetString()!, o => o.GetProperty("calls").GetInt64());
        Assert.Equal(2, tg["embed"]); // one per generated token (one timed run)
        Assert.Contains(tg.Keys, k => k.StartsWith("matmul ffn_down ", StringComparison.Ordinal));
    }

    [Fact]
    public void BenchDepthRunsTheTestsAfterAContext()
    {
        var (code, stdout, stderr) = Infer("bench", "-m", Fixtures.Model("llama3", "q8_0"), "-p", "4", "-n", "2", "-d", "9", "-r", "1", "-t", "2",
            "--device", "cpu", "--no-bandwidth", "-o", "json");
        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        var tests = json.RootElement.GetProperty("results").EnumerateArray().Select(r => r.GetProperty("test").GetString()).ToList();
        Assert.Equal(["pp4 @ d9", "tg2 @ d9"], tests);
    }

    /// <summary>Comma lists run every combination in turn, in llama-bench's order, with its field names (jsonl: one object per test).</summary>
    [Fact]
    public void BenchListsRunEveryCombination()
    {
        var (code, stdout, stderr) = Infer("bench", "-m", Fixtures.Model("llama3", "q8_0"), "-p", "4,8", "-n", "2", "-d", "0,5", "-r", "1",
            "-t", "1,2", "-ctk", "f16,q8_0", "--device", "cpu", "--no-bandwidth", "-o", "jsonl");
        Assert.True(code == 0, stderr);
        var rows = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var expected = from t in new[] { 1, 2 }
                       from k in new[] { "f16", "q8_0" }
                       from d in new[] { 0, 5 }
                       from test in new[] { (4, 0), (8, 0), (0, 2) }
                       select (t, k, d, test.Item1, test.Item2);
        Assert.Equal(expected, rows.Select(r => (r.GetProperty("n_threads").GetInt32(), r.GetProperty("type_k").GetString(),
            r.GetProperty("n_depth").GetInt32(), r.GetProperty("n_prompt").GetInt32(), r.GetProperty("n_gen").GetInt32())));
        foreach (var r in rows)
        {
            Assert.Equal("f16", r.GetProperty("type_v").GetString());
            Assert.True(r.GetProperty("avg_ts").GetDouble() > 0);
            Assert.Equal(1, r.GetProperty("samples_ts").GetArrayLength());
        }
    }

    [Fact]
    public void BenchCsvHasLlamaBenchColumnsAndJsonTheMemory()
    {
        var (code, stdout, stderr) = Infer("bench", "-m", Fixtures.Model("llama3", "q8_0"), "-p", "4", "-n", "2", "-r", "1", "-t", "1",
            "--device", "cpu", "--no-bandwidth", "-o", "csv");
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        var header = lines[0].Split(',');
        foreach (var field in new[] { "model_filename", "n_threads", "type_k", "type_v", "n_prompt", "n_gen", "n_depth", "avg_ns", "avg_ts",
            "stddev_ts" })
            Assert.Contains(field, header);
        Assert.Equal(header.Length, lines[1].Split("\",\"").Length);

        (code, stdout, stderr) = Infer("bench", "-m", Fixtures.Model("llama3", "q8_0"), "-p", "4", "-n", "2", "-r", "1", "-t", "1",
            "--device", "cpu", "--no-bandwidth", "-o", "json");
        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        var memory = json.RootElement.GetProperty("memory");
        using (var file = Runtime.Gguf.GgufFile.Open(Fixtures.Model("llama3", "q8_0")))
        {
            // the tensor data section, less at most one alignment of padding per tensor
            long data = file.Length - file.DataOffset;
            Assert.InRange(memory.GetProperty("weights_bytes").GetInt64(), data - (long)file.Alignment * file.Tensors.Count, data);
        }
        // 2 layers x 2 (K, V) x 1 KV head x 5 positions (4 + 1, as -p 4 needs) x 32 halves x 2 bytes
        Assert.Equal(2 * 2 * 5 * 32 * 2, memory.GetProperty("kv_cache_bytes").GetInt64());
        if (OperatingSystem.IsLinux()) Assert.True(memory.GetProperty("rss_after_tests_bytes").GetInt64() > 0);
    }

    /// <summary>
    /// The model column names the file's type from general.file_type as llama-bench does ("Q4_K - Medium" for a Q4_K_M file whose
    /// small tensors are Q8_0 or Q6_K), not the type holding the most bytes: a copy of the Q8_0 fixture that says it is a Q4_K_M
    /// file is labelled so.
    /// </summary>
    [Fact]
    public void BenchNamesTheTypeFromTheFileType()
    {
        string path = Path.Combine(_dir, "says-q4_k_m.gguf");
        using (var src = Runtime.Gguf.GgufFile.Open(Fixtures.Model("llama3", "q8_0")))
        using (var w = new Runtime.Gguf.GgufWriter(path))
        {
            Assert.Equal(7, src.TryGetInt("general.file_type")); // llama.cpp's LLAMA_FTYPE_MOSTLY_Q8_0
            foreach (string key in src.MetadataKeys)
            {
                var v = src.Metadata[key];
                w.Add(key, v.Type, key == "general.file_type" ? 15u : v.Value); // LLAMA_FTYPE_MOSTLY_Q4_K_M
            }
            foreach (var t in src.Tensors) w.AddTensor(t.Name, t.Type, t.Dims.ToArray());
            w.WriteHeader();
            foreach (var t in src.Tensors) w.WriteTensorData(t.Span);
            w.Commit();
        }
        foreach (var (file, type) in new[] { (Fixtures.Model("llama3", "q8_0"), "Q8_0"), (path, "Q4_K - Medium") })
        {
            var (code, stdout, stderr) = Infer("bench", "-m", file, "-p", "4", "-n", "0", "-r", "1", "-t", "1", "--device", "cpu",
                "--no-bandwidth", "-o", "json");
            Assert.True(code == 0, stderr);
            using var json = JsonDocument.Parse(stdout);
            string model = json.RootElement.GetProperty("model").GetString()!;
            Assert.Matches($"^llama .+ {System.Text.RegularExpressions.Regex.Escape(type)}( \\(repacked\\))?$", model);
        }
    }

    [Fact]
    public void BenchRejectsBadCounts()
    {
        var (code, _, stderr) = Infer("bench", "-m", Fixtures.Model("llama3", "q8_0"), "-r", "0", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("-r", stderr);
    }
}
