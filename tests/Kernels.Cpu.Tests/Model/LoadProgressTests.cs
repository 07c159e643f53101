using Infer.Runtime.Gguf;
using Infer.Runtime.Model;
using Infer.Tests;

namespace Infer.Kernels.Cpu.Tests.Model;

/// <summary>Loading reports progress as the fraction of weight bytes handed to the backends, after each tensor.</summary>
public class LoadProgressTests
{
    private sealed class Recorder : IProgress<double>
    {
        public List<double> Values { get; } = [];
        public void Report(double value) => Values.Add(value);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ProgressCountsBytes(bool split)
    {
        using var file = GgufFile.Open(Fixtures.Model("llama3", "q8_0")); // tied output: loaded twice when split
        long embd = file.GetTensor("token_embd.weight").ByteSize;
        var loaded = file.Tensors.Where(t => t.Name != "rope_freqs.weight").ToList();
        long total = loaded.Sum(t => t.ByteSize) + (split ? embd : 0);
        var progress = new Recorder();
        var options = new ModelOptions(ContextLength: 16);
        using var model = split
            ? LlamaModel.LoadSplit(file, new CpuBackend(1), 1, new CpuBackend(1), options, progress)
            : LlamaModel.Load(file, new CpuBackend(1), options, progress);
        var v = progress.Values;
        Assert.Equal(loaded.Count + (split ? 1 : 0) + 1, v.Count); // each tensor, then a final 1
        Assert.Equal((double)embd / total, v[0], 12);              // the embedding comes first
        for (int i = 1; i < v.Count; i++) Assert.True(v[i] >= v[i - 1]);
        Assert.Equal(1.0, v[^2], 12);
        Assert.Equal(1.0, v[^1]);
    }
}
