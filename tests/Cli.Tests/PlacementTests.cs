using Infer.Cli.Commands;
using Infer.CommandLine;
using Infer.Kernels.Gpu;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;
using Infer.Tests;

namespace Infer.Cli.Tests;

/// <summary>
/// Where -ngl puts a model's parts (ModelPlacement, infer info's placement lines) computed from the file alone, and the
/// upload bar, which counts bytes.
/// </summary>
public class PlacementTests
{
    private static readonly GpuDeviceInfo FakeGpu = new(DeviceKind.Cuda, 0, "Fake H200", 141L << 30, 132, 32);

    [Fact]
    public void PlanSplitsLikeLoadSplitAndCountsEveryTensorOnce()
    {
        using var file = GgufFile.Open(Fixtures.Model("llama3", "q8_0")); // 2 layers, tied output, kvDim 32
        var c = ModelConfig.FromGguf(file);
        long embd = file.GetTensor("token_embd.weight").ByteSize;
        long loaded = file.Tensors.Where(t => t.Name != "rope_freqs.weight").Sum(t => t.ByteSize);
        long kvPerLayer = 2L * 256 * c.KvDim * 4;

        foreach (int n in new[] { 0, 2, 9 })
        {
            var whole = Assert.Single(ModelPlacement.Plan(file, c, n, 256));
            Assert.Equal(n > 0, whole.IsFirst);
            Assert.Equal((0, 2, true, true), (whole.First, whole.Count, whole.Embedding, whole.Output));
            Assert.Equal(loaded, whole.WeightBytes);
            Assert.Equal(2 * kvPerLayer, whole.KvCacheBytes);
        }

        var parts = ModelPlacement.Plan(file, c, 1, 256);
        Assert.Equal(2, parts.Count);
        Assert.Equal("token embedding, layer 0", parts[0].Describe());
        Assert.Equal("layer 1, output", parts[1].Describe());
        Assert.All(parts[0].Tensors.Skip(1), t => Assert.StartsWith("blk.0.", t.Name));
        Assert.Contains(parts[1].Tensors, t => t.Name == "token_embd.weight"); // the tied output is loaded again on the CPU
        Assert.Equal(loaded + embd, parts[0].WeightBytes + parts[1].WeightBytes);
        Assert.Equal((kvPerLayer, kvPerLayer), (parts[0].KvCacheBytes, parts[1].KvCacheBytes));
    }

    [Fact]
    public void InfoShowsThePlacementForADeviceAndLayerCount()
    {
        using var file = GgufFile.Open(Fixtures.Model("llama3", "q8_0"));
        var c = ModelConfig.FromGguf(file);
        var lines = InfoPlacement.Lines(file, c, DeviceRequest.Auto, 1, 256, () => [FakeGpu]).ToList();
        // Sizes print as everywhere in both executables (Units.FormatSize: three significant digits).
        Assert.Equal("placement:       cuda:0 Fake H200 (141 GiB), 1/2 layers; KV cache of 256 positions", lines[0]);
        Assert.StartsWith("  cuda:0        token embedding, layer 0: ", lines[1]);
        Assert.EndsWith("of weights + 32.0 KiB KV cache", lines[1]); // f16, the default on the GPU too: 256 x 32 x 2 (K, V) x 2 bytes
        Assert.StartsWith("  cpu           layer 1, output: ", lines[2]);
        Assert.Contains("(mapped)", lines[2]);
        Assert.Equal(3, lines.Count);

        var tiny = FakeGpu with { MemoryBytes = 1 << 20 };
        Assert.Contains(InfoPlacement.Lines(file, c, DeviceRequest.Auto, null, 256, () => [tiny]),
            l => l.Contains("do not fit in cuda:0's 1.00 MiB"));
        var none = InfoPlacement.Lines(file, c, new DeviceRequest(DeviceKind.Cuda), null, 256, () => []).ToList();
        Assert.Equal("placement:       CPU backend (no CUDA device found); KV cache of 256 positions", none[0]);
        Assert.StartsWith("  cpu           token embedding, layers 0-1, output: ", none[1]);
    }

    [Fact]
    public void AutoTakesTheCpuBackendForTypesTheGpuBackendLacks()
    {
        // layer 1's attn_q as Q8_1 (ggml's activation blocks), which the GPU backend has no kernels for
        string path = Path.Combine(Path.GetTempPath(), $"placement-q8_1-{Environment.ProcessId}.gguf");
        try
        {
            using (var src = GgufFile.Open(Fixtures.Model("llama3", "q8_0")))
            using (var w = new GgufWriter(path))
            {
                foreach (var key in src.MetadataKeys) w.Add(key, src.Metadata[key].Type, src.Metadata[key].Value);
                const string retyped = "blk.1.attn_q.weight";
                foreach (var t in src.Tensors) w.AddTensor(t.Name, t.Name == retyped ? GgmlType.Q8_1 : t.Type, t.Dims.ToArray());
                w.WriteHeader();
                foreach (var t in src.Tensors)
                {
                    if (t.Name != retyped)
                    {
                        w.WriteTensorData(t.Span);
                        continue;
                    }
                    var floats = new float[t.ElementCount];
                    Runtime.Formats.RowCodec.Dequantize(t.Type, t.Span, floats);
                    var q = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_1, t.ElementCount)];
                    Runtime.Formats.RowCodec.Quantize(GgmlType.Q8_1, floats, q);
                    w.WriteTensorData(q);
                }
                w.Commit();
            }
            using var file = GgufFile.Open(path);
            var c = ModelConfig.FromGguf(file);
            const string refusal = "the GPU backend does not run Q8_1 yet ('blk.1.attn_q.weight')";
            Assert.Equal(refusal, Engine.BackendSet.GpuRefusal(file, 2));
            Assert.Null(Engine.BackendSet.GpuRefusal(file, 1)); // layer 0 alone on the GPU: nothing it lacks
            Assert.Null(Engine.BackendSet.GpuRefusal(file, 0));
            using (var q8 = GgufFile.Open(Fixtures.Model("llama3", "q8_0"))) Assert.Null(Engine.BackendSet.GpuRefusal(q8, 2));

            var auto = InfoPlacement.Lines(file, c, DeviceRequest.Auto, null, 256, () => [FakeGpu]).ToList();
            Assert.Equal($"placement:       CPU backend ({refusal}; --device auto takes the CPU backend); KV cache of 256 positions", auto[0]);
            Assert.StartsWith("placement:       cuda:0 Fake H200", InfoPlacement.Lines(file, c, DeviceRequest.Auto, 1, 256, () => [FakeGpu]).First());
            var cuda = InfoPlacement.Lines(file, c, new DeviceRequest(DeviceKind.Cuda), null, 256, () => [FakeGpu]).ToList();
            Assert.StartsWith("placement:       cuda:0 Fake H200", cuda[0]);
            Assert.Contains(cuda, l => l.Contains("the GPU backend does not run Q8_1 ('blk.1.attn_q.weight'): loading would fail"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void InfoCommandTakesDeviceLayersAndContext()
    {
        var (code, stdout, stderr) = CliTests.Infer("info", "-m", Fixtures.Model("llama2-spm", "bf16"), "--device", "cpu", "-ngl", "1", "-c", "128");
        Assert.True(code == 0, stderr);
        Assert.Contains("placement:       CPU backend (--device cpu); KV cache of 128 positions", stdout);
        Assert.Contains("  cpu           token embedding, layers 0-1, output: ", stdout);
    }

    [Fact]
    public void UploadBarShowsBytes()
    {
        // The GPU upload is the shared progress bar over the fraction of the file's bytes (src/CommandLine/ProgressBar).
        var w = new StringWriter();
        var upload = new ProgressBar(w, interactive: true, width: 100).Fraction("uploading to the GPU", 2L << 30);
        upload.Report(0.5);
        upload.Report(0.5); // unchanged within 100 ms: not redrawn
        upload.Report(1.0);
        // 100 columns: the 20-column label, " [", 52 of bar (26 filled), "]", "  50%" and the sizes; then the done line padded over it.
        string half = $"uploading to the GPU [{new string('#', 26)}{new string('-', 26)}]  50% 1.00 GiB / 2.00 GiB";
        string done = "uploading to the GPU: done, 2.00 GiB in 0:00";
        Assert.Equal($"\r{half}\r{done}{new string(' ', half.Length - done.Length)}{Environment.NewLine}", w.ToString());
    }
}
