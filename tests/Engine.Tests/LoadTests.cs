using Infer.Kernels.Cpu;
using Infer.Kernels.Gpu;
using Infer.Runtime;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Runtime.Sampling;
using Infer.Tests;

namespace Infer.Engine.Tests;

/// <summary>
/// <see cref="LoadedModel.Load"/>: where the layers go for each device and <c>-ngl</c> choice, what it says about it, and
/// that the model it returns reproduces the fixtures' references (transformers' greedy tokens for BF16 files, llama.cpp's
/// distance from transformers for Q8_0 ones).
/// </summary>
public sealed class LoadTests : IDisposable
{
    /// <summary>The fixtures' bound for BF16 weights with float32 activations (as ModelFixtureTests).</summary>
    private const double Bf16LogitTolerance = 1e-3;

    /// <summary>The same with the default f16 KV cache (as ModelFixtureTests.F16CacheLogitTolerance).</summary>
    private const double F16CacheLogitTolerance = 5e-3;

    /// <summary>A q8_0 KV cache part: the CPU backend's fixture bound (at most 0.069 measured there).</summary>
    private const double Q8_0CacheLogitTolerance = 0.1;

    private readonly string _dir = Directory.CreateTempSubdirectory("engine-load-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static bool HasGpu() =>
        GpuContextFactory.ListDevices().Any(d => d.Kind is DeviceKind.Cuda or DeviceKind.OpenCL);

    /// <summary>The last prompt position's logits, then <paramref name="n"/> greedy tokens, on one session.</summary>
    private static (float[] Logits, int[] Greedy) Run(LoadedModel m, int[] input, int n, int sequence = 0)
    {
        var session = m.CreateSession(sequence);
        session.Append(input);
        var logits = (float[])session.Logits.Clone();
        var ids = new int[n];
        for (int i = 0; i < n; i++)
        {
            ids[i] = Sampler.ArgMax(session.Logits);
            session.Append(ids[i]);
        }
        return (logits, ids);
    }

    private static double MaxAbsDiff(float[] a, float[] b)
    {
        Assert.Equal(b.Length, a.Length);
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }

    private static void AssertRisesToOne(List<double> values)
    {
        Assert.NotEmpty(values);
        for (int i = 1; i < values.Count; i++) Assert.True(values[i] >= values[i - 1], $"progress fell from {values[i - 1]} to {values[i]}");
        Assert.Equal(1.0, values[^1]);
    }

    [Fact]
    public void DefaultsPutEveryLayerOnTheGpuOrSayOnceThatTheCpuRunsIt()
    {
        var c = ReferenceCase.Find("qwen3", "prompt1");
        var progress = new Recorder();
        var upload = new Recorder();
        var log = new Recorder();
        using var m = LoadedModel.Load(new ModelLoadOptions(Fixtures.Model("qwen3", "bf16"))
        {
            Progress = progress,
            UploadProgress = upload,
            Log = log.Log,
        });

        var range = Assert.Single(m.Model.Placement);
        Assert.Equal((0, m.Config.BlockCount), (range.First, range.Count));
        AssertRisesToOne(progress.Values);
        if (HasGpu())
        {
            // the GPU keeps the default f16 cache too
            Assert.IsType<GpuBackend>(range.Backend);
            Assert.Equal([$"offloaded 2/2 layers: {m.Model.DescribePlacement()}"], log.Lines);
            Assert.Equal(progress.Values, upload.Values);
            Assert.Equal((KvCacheType.F16, KvCacheType.F16), (range.KType, range.VType));
        }
        else
        {
            Assert.IsType<CpuBackend>(range.Backend);
            Assert.Empty(log.Lines); // auto without a GPU: the CPU backend, without a line about it
            Assert.Empty(upload.Values);
            Assert.Equal((KvCacheType.F16, KvCacheType.F16), (range.KType, range.VType)); // llama.cpp's default
        }
        Assert.Equal(Math.Min(m.Config.ContextLength, 4096), m.Model.ContextLength);
        Assert.Equal(512, m.Model.BatchSize);

        var (logits, greedy) = Run(m, c.InputIds, c.GreedyNewIds.Length);
        double diff = MaxAbsDiff(logits, c.LoadLogits());
        double bound = range.KType == KvCacheType.F32 ? Bf16LogitTolerance : F16CacheLogitTolerance;
        Assert.True(diff <= bound, $"{c}: max |dlogit| = {diff}, bound {bound} ({m.Model.DescribeKvCache()})");
        Assert.Equal(c.GreedyNewIds, greedy);
    }

    [Fact]
    public void ZeroGpuLayersRunOnTheCpuWithoutLookingForAGpu()
    {
        var c = ReferenceCase.Find("llama3", "prompt0");
        var upload = new Recorder();
        var log = new Recorder();
        using var m = LoadedModel.Load(new ModelLoadOptions(Fixtures.Model("llama3", "q8_0"))
        {
            Device = new DeviceRequest(DeviceKind.Cuda),
            GpuLayers = 0,
            Threads = 2,
            ContextLength = 128,
            UploadProgress = upload,
            Log = log.Log,
        });

        var range = Assert.Single(m.Model.Placement);
        var cpu = Assert.IsType<CpuBackend>(range.Backend);
        Assert.Equal(2, cpu.ThreadCount);
        Assert.Equal((0, m.Config.BlockCount), (range.First, range.Count));
        Assert.Empty(log.Lines);
        Assert.Empty(upload.Values);
        Assert.Equal(128, m.Model.ContextLength);

        double llamaCpp = ReferenceCase.LlamaCppQ8Differences("llama3")[c.Id];
        double bound = Math.Max(1.25 * llamaCpp, llamaCpp + 0.02);
        var (logits, _) = Run(m, c.InputIds, 0);
        var reference = c.LoadLogits();
        double diff = MaxAbsDiff(logits, reference);
        Assert.True(diff <= bound, $"{c}: max |dlogit| = {diff}, bound {bound} (llama.cpp: {llamaCpp})");
        if (c.Top1Top2Gap > 0.05) Assert.Equal(Sampler.ArgMax(reference), Sampler.ArgMax(logits));
    }

    /// <summary>Auto with a layer count asks for a GPU: without one the model runs on the CPU and one line says why.</summary>
    [Fact]
    public void GpuLayersWithoutAGpuSayWhyOnce()
    {
        if (HasGpu()) Assert.Skip("this machine has a GPU: the layers go there");
        var log = new Recorder();
        using var m = LoadedModel.Load(new ModelLoadOptions(Fixtures.Model("llama3", "bf16"))
        {
            GpuLayers = 1,
            Threads = 2,
            ContextLength = 64,
            BatchSize = 16,
            Log = log.Log,
        });
        Assert.IsType<CpuBackend>(Assert.Single(m.Model.Placement).Backend);
        Assert.Equal("no GPU (CUDA or OpenCL) device found; running on the CPU backend", Assert.Single(log.Lines));
    }

    [Fact]
    public void GpuLayersSplitTheModelAndSayWhere()
    {
        // ILGPU's CPU accelerator stands in for the GPU: the embedding and layer 0 there, layer 1 and the output on the CPU.
        var c = ReferenceCase.Find("llama3", "prompt0");
        var upload = new Recorder();
        var log = new Recorder();
        using var m = LoadedModel.Load(new ModelLoadOptions(Fixtures.Model("llama3", "bf16"))
        {
            Device = new DeviceRequest(DeviceKind.IlgpuCpu),
            GpuLayers = 1,
            Threads = 2,
            ContextLength = 128,
            BatchSize = 64,
            CacheTypeK = KvCacheType.F32, // both parts float32: the 1e-3 bound is float32 attention's
            CacheTypeV = KvCacheType.F32,
            UploadProgress = upload,
            Log = log.Log,
        });

        Assert.Equal(2, m.Model.Placement.Count);
        Assert.IsType<GpuBackend>(m.Model.Placement[0].Backend);
        Assert.Equal((0, 1), (m.Model.Placement[0].First, m.Model.Placement[0].Count));
        Assert.IsType<CpuBackend>(m.Model.Placement[1].Backend);
        Assert.Equal((1, 1), (m.Model.Placement[1].First, m.Model.Placement[1].Count));
        string line = Assert.Single(log.Lines);
        Assert.StartsWith("offloaded 1/2 layers: layer 0 on gpu (cpu-ilgpu:0", line);
        Assert.Contains("; layer 1 and the output on cpu (CPU, 2 threads", line);
        AssertRisesToOne(upload.Values);

        var (logits, greedy) = Run(m, c.InputIds, c.GreedyNewIds.Length);
        double diff = MaxAbsDiff(logits, c.LoadLogits());
        Assert.True(diff <= Bf16LogitTolerance, $"{c} split: max |dlogit| = {diff}");
        Assert.Equal(c.GreedyNewIds, greedy);
    }

    /// <summary>
    /// With the default cache types a split model keeps f16 on both parts (llama.cpp's default) and stays within the f16 cache's
    /// logit bound; an explicit f32 is kept on both, and so is a q8_0 K cache (within the q8_0 cache's bound).
    /// </summary>
    [Fact]
    public void GpuKeepsEachCacheTypeAsTheCpuDoes()
    {
        var c = ReferenceCase.Find("llama3", "prompt0");
        var log = new Recorder();
        var options = new ModelLoadOptions(Fixtures.Model("llama3", "bf16"))
        {
            Device = new DeviceRequest(DeviceKind.IlgpuCpu),
            GpuLayers = 1,
            Threads = 2,
            ContextLength = 64,
            BatchSize = 16,
            Log = log.Log,
        };
        using (var m = LoadedModel.Load(options))
        {
            Assert.Equal((KvCacheType.F16, KvCacheType.F16), (m.Model.Placement[0].KType, m.Model.Placement[0].VType));
            Assert.Equal((KvCacheType.F16, KvCacheType.F16), (m.Model.Placement[1].KType, m.Model.Placement[1].VType));
            Assert.Single(log.Lines);
            Assert.Equal("KV cache f16", m.Model.DescribeKvCache());
            var (logits, greedy) = Run(m, c.InputIds, 4);
            double diff = MaxAbsDiff(logits, c.LoadLogits());
            Assert.True(diff <= F16CacheLogitTolerance, $"{c} split, f16 on the CPU: max |dlogit| = {diff}");
            Assert.Equal(c.GreedyNewIds[..4], greedy);
        }

        using (var m = LoadedModel.Load(options with { CacheTypeK = KvCacheType.F32, CacheTypeV = KvCacheType.F32 }))
        {
            Assert.All(m.Model.Placement, r => Assert.Equal((KvCacheType.F32, KvCacheType.F32), (r.KType, r.VType)));
            var (logits, greedy) = Run(m, c.InputIds, 4);
            double diff = MaxAbsDiff(logits, c.LoadLogits());
            Assert.True(diff <= Bf16LogitTolerance, $"{c} split, f32 caches: max |dlogit| = {diff}");
            Assert.Equal(c.GreedyNewIds[..4], greedy);
        }

        using (var m = LoadedModel.Load(options with { CacheTypeK = KvCacheType.Q8_0 }))
        {
            Assert.All(m.Model.Placement, r => Assert.Equal((KvCacheType.Q8_0, KvCacheType.F16), (r.KType, r.VType)));
            Assert.Equal("KV cache q8_0 K, f16 V", m.Model.DescribeKvCache());
            var (logits, _) = Run(m, c.InputIds, 1);
            double diff = MaxAbsDiff(logits, c.LoadLogits());
            Assert.True(diff <= Q8_0CacheLogitTolerance, $"{c} split, q8_0 K cache: max |dlogit| = {diff}");
        }
    }

    /// <summary>
    /// The tokenizer is built beside the weights; a tokenizer error is still the one reported, whether the weights load or fail
    /// too (as when the tokenizer was read first).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TokenizerErrorsComeFirst(bool weightsFailToo)
    {
        string path = Path.Combine(_dir, "bad-tokenizer.gguf");
        using (var src = GgufFile.Open(Fixtures.Model("llama3", "q8_0")))
        using (var w = new GgufWriter(path))
        {
            foreach (var key in src.MetadataKeys)
            {
                var v = src.Metadata[key];
                w.Add(key, v.Type, key == "tokenizer.ggml.model" ? "bogus" : v.Value);
            }
            var tensors = src.Tensors.Where(t => !(weightsFailToo && t.Name == "blk.1.ffn_down.weight")).ToList();
            foreach (var t in tensors) w.AddTensor(t.Name, t.Type, t.Dims.ToArray());
            w.WriteHeader();
            foreach (var t in tensors) w.WriteTensorData(t.Span);
            w.Commit();
        }
        var e = Assert.Throws<UnsupportedModelException>(() => LoadedModel.Load(new ModelLoadOptions(path) { GpuLayers = 0, Threads = 2 }));
        Assert.Contains("'tokenizer.ggml.model' is 'bogus'", e.Message);
        File.Delete(path); // the file was closed: the mapping is gone
    }

    [Fact]
    public void SessionsUseTheirOwnSequence()
    {
        var c = ReferenceCase.Find("qwen3", "prompt0");
        using var m = LoadedModel.Load(new ModelLoadOptions(Fixtures.Model("qwen3", "bf16"))
        {
            GpuLayers = 0,
            Threads = 2,
            ContextLength = 64,
            Sequences = 2,
        });
        Assert.Equal(2, m.Model.Sequences);
        // Sequence 0 holds another prompt; sequence 1 still reproduces the reference.
        m.CreateSession(0).Append(ReferenceCase.Find("qwen3", "prompt2").InputIds);
        Assert.Equal(c.GreedyNewIds[..8], Run(m, c.InputIds, 8, sequence: 1).Greedy);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.CreateSession(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.CreateSession(-1));
    }

    [Fact]
    public void MissingFileIsAModelFormatErrorNamingIt()
    {
        string path = Path.Combine(_dir, "missing.gguf");
        var log = new Recorder();
        var e = Assert.Throws<ModelFormatException>(() => LoadedModel.Load(new ModelLoadOptions(path) { Log = log.Log }));
        Assert.Equal(path, e.FilePath);
        Assert.Equal($"{path}: file not found", e.Message);
        Assert.Empty(log.Lines);
    }

    [Fact]
    public void FileThatIsNotGgufIsAModelFormatErrorNamingIt()
    {
        string path = Path.Combine(_dir, "notes.gguf");
        File.WriteAllText(path, string.Concat(Enumerable.Repeat("this is a text file, not a model. ", 8)));
        var log = new Recorder();
        var e = Assert.Throws<ModelFormatException>(() => LoadedModel.Load(new ModelLoadOptions(path) { GpuLayers = 0, Log = log.Log }));
        Assert.Equal(path, e.FilePath);
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Empty(log.Lines);
    }

    [Theory]
    [InlineData("threads")]
    [InlineData("context")]
    [InlineData("batch")]
    [InlineData("sequences")]
    [InlineData("gpu-layers")]
    public void BadOptionsAreRejectedBeforeTheFileIsOpened(string option)
    {
        // The path does not exist: reaching the file would throw ModelFormatException instead.
        var o = new ModelLoadOptions(Path.Combine(_dir, "missing.gguf"));
        o = option switch
        {
            "threads" => o with { Threads = -1 },
            "context" => o with { ContextLength = -1 },
            "batch" => o with { BatchSize = 0 },
            "sequences" => o with { Sequences = 0 },
            _ => o with { GpuLayers = -1 },
        };
        Assert.Throws<ArgumentOutOfRangeException>(() => LoadedModel.Load(o));
    }
}
