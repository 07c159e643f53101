using System.Globalization;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;
using Infer.Tests;

namespace Infer.Kernels.Cpu.Tests.Model;

/// <summary>
/// A repacked model is resident once: after the copy into the interleaved layout, the mapped pages it was read from leave the
/// process (they stay in the page cache), as /proc/self/smaps counts them for the file's mapping.
/// </summary>
public class ResidentMemoryTests
{
    [Fact]
    public void RepackedWeightsReleaseTheirMappedPages()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "/proc/self/smaps is Linux's: the resident pages of one mapping cannot be counted here");
        string path = Path.GetFullPath(Fixtures.Model("llama3", "q8_0"));
        using var file = GgufFile.Open(path);
        var embd = file.GetTensor("token_embd.weight"); // 8.7 MB of the file's 8.8 MB of weights
        long sum = 0;
        unsafe
        {
            for (long i = 0; i < embd.ByteSize; i += 4096) sum += embd.Data[i]; // every page of the table resident
        }
        long before = MappedResidentBytes(path, embd);
        Assert.True(before >= embd.ByteSize * 9 / 10, $"{before} bytes of the mapping resident after reading {embd.ByteSize} ({sum})");

        using var backend = new CpuBackend(1);
        using var model = LlamaModel.Load(file, backend, new ModelOptions(ContextLength: 16));
        Assert.SkipWhen(backend.RepackedBytes < embd.ByteSize, "Q8_0 weights are not repacked on this CPU (no AVX-VNNI): nothing to release");
        long after = MappedResidentBytes(path, embd);
        // all but the pages at the edges of the released ranges (and the file's other tensors: norms, 2 x 64 floats per layer)
        Assert.True(after <= before - embd.ByteSize * 9 / 10, $"{after} bytes of the mapping still resident (before: {before})");
    }

    /// <summary>
    /// Embedding lookups of a mapped table release what they read (the kernel maps 64 KiB around each faulting row): after 300
    /// tokens spread over the vocabulary the mapping holds no more than before them. Tied (repacked: the lookups are the only reads
    /// of the file rows) and untied (the table is never multiplied, so never repacked).
    /// </summary>
    [Theory]
    [InlineData("llama3", "q8_0")]
    [InlineData("llama2-spm", "q8_0")]
    public void LookedUpRowsLeaveTheProcess(string name, string type)
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "/proc/self/smaps is Linux's: the resident pages of one mapping cannot be counted here");
        string path = Path.GetFullPath(Fixtures.Model(name, type));
        using var file = GgufFile.Open(path);
        var embd = file.GetTensor("token_embd.weight");
        using var backend = new CpuBackend(1);
        using var model = LlamaModel.Load(file, backend, new ModelOptions(ContextLength: 320, BatchSize: 64));
        var session = new Infer.Runtime.Inference.Session(model);
        session.Append([1]);
        long before = MappedResidentBytes(path, embd);
        int vocab = model.VocabSize;
        session.Append(Enumerable.Range(1, 300).Select(i => (int)(i * 7919L % vocab)).ToArray());
        long after = MappedResidentBytes(path, embd);
        // without the release: 300 windows of 64 KiB, most of the table (8.7 MB / 8.2 MB)
        Assert.True(after - before <= embd.ByteSize / 16, $"the mapping grew by {after - before} bytes over 300 lookups (table: {embd.ByteSize})");
    }

    /// <summary>An untied token embedding is only looked up: the CPU backend does not repack it.</summary>
    [Fact]
    public void UntiedEmbeddingTableIsNotRepacked()
    {
        using var file = GgufFile.Open(Fixtures.Model("llama2-spm", "q8_0"));
        Assert.False(ModelConfig.FromGguf(file).TiedOutput);
        var embd = file.GetTensor("token_embd.weight");
        using var backend = new CpuBackend(1);
        using var model = LlamaModel.Load(file, backend, new ModelOptions(ContextLength: 16));
        Assert.SkipWhen(backend.RepackedBytes == 0, "Q8_0 weights are not repacked on this CPU (no AVX-VNNI): nothing to compare");
        long q8Matrices = file.Tensors.Where(t => t.Type == GgmlType.Q8_0 && t.Dims.Count == 2).Sum(t => t.ByteSize);
        Assert.Equal(q8Matrices - embd.ByteSize, backend.RepackedBytes);
    }

    /// <summary>
    /// The Rss in /proc/self/smaps of the mapping of <paramref name="path"/> that holds <paramref name="tensor"/>: this file's one
    /// mapping (other tests may map the same fixture at the same time).
    /// </summary>
    private static unsafe long MappedResidentBytes(string path, GgufTensor tensor)
    {
        ulong address = (ulong)tensor.Data;
        bool inFile = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length > 0 && parts[0].Contains('-') && !parts[0].EndsWith(':'))
            {
                var range = parts[0].Split('-');
                ulong start = ulong.Parse(range[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                ulong end = ulong.Parse(range[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                inFile = line.EndsWith(" " + path, StringComparison.Ordinal) && address >= start && address < end;
            }
            else if (inFile && parts[0] == "Rss:")
            {
                return long.Parse(parts[1], CultureInfo.InvariantCulture) * 1024;
            }
        }
        throw new InvalidOperationException($"no mapping of {path} holds {tensor.Name}");
    }
}
