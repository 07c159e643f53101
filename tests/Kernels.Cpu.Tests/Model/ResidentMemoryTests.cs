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
        long before = MappedResidentBytes(path);
        Assert.True(before >= embd.ByteSize * 9 / 10, $"{before} bytes of the mapping resident after reading {embd.ByteSize} ({sum})");

        using var backend = new CpuBackend(1);
        using var model = LlamaModel.Load(file, backend, new ModelOptions(ContextLength: 16));
        Assert.SkipWhen(backend.RepackedBytes < embd.ByteSize, "Q8_0 weights are not repacked on this CPU (no AVX-VNNI): nothing to release");
        long after = MappedResidentBytes(path);
        // all but the pages at the edges of the released ranges (and the file's other tensors: norms, 2 x 64 floats per layer)
        Assert.True(after <= before - embd.ByteSize * 9 / 10, $"{after} bytes of the mapping still resident (before: {before})");
    }

    /// <summary>The Rss of every mapping of <paramref name="path"/> in /proc/self/smaps.</summary>
    private static long MappedResidentBytes(string path)
    {
        long total = 0;
        bool inFile = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length > 0 && parts[0].Contains('-') && !parts[0].EndsWith(':')) inFile = line.EndsWith(" " + path, StringComparison.Ordinal);
            else if (inFile && parts[0] == "Rss:") total += long.Parse(parts[1], CultureInfo.InvariantCulture) * 1024;
        }
        return total;
    }
}
