using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;
using Infer.Tests;

namespace Infer.ConvertWeights.Tests;

/// <summary>Converts the fixture checkpoints once per test class; tests compare with the GGUF files llama.cpp's converter wrote from them.</summary>
public sealed class ConvertedFixtures : IDisposable
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("convert-tests-").FullName;
    private readonly Dictionary<string, string> _done = [];
    private readonly Lock _lock = new();

    /// <summary>Path of models/NAME/hf converted to TYPE (converted on first use).</summary>
    public string Get(string name, string type)
    {
        lock (_lock)
        {
            string key = $"{name}.{type}";
            if (_done.TryGetValue(key, out var p)) return p;
            string output = Path.Combine(Dir, key + ".gguf");
            var err = new StringWriter();
            int rc = Program.Run(["convert", Path.Combine(Fixtures.ModelDir(name), "hf"), "-o", output, "--type", type], err, showProgress: false);
            Assert.True(rc == 0, err.ToString());
            _done[key] = output;
            return output;
        }
    }

    public void Dispose() => Directory.Delete(Dir, recursive: true);
}

public class ConvertTests(ConvertedFixtures converted) : IClassFixture<ConvertedFixtures>
{
    [Theory]
    [InlineData("llama2-spm", "bf16")]
    [InlineData("llama3", "bf16")]
    [InlineData("llama2-spm", "q8_0")]
    [InlineData("llama3", "q8_0")]
    public void MatchesLlamaCppConverter(string name, string type)
    {
        using var expected = GgufFile.Open(Fixtures.Model(name, type));
        using var actual = GgufFile.Open(converted.Get(name, type));
        GgufCompare.TensorsMatch(expected, actual);
        GgufCompare.MetadataMatches(expected, actual);
        Assert.Equal(expected.MetadataKeys.Where(k => !GgufCompare.DescriptiveKeys.Contains(k)),
            actual.MetadataKeys.Where(k => !GgufCompare.DescriptiveKeys.Contains(k)));
    }

    [Theory]
    [InlineData("llama2-spm")]
    [InlineData("llama3")]
    public void WholeFileIsByteIdenticalToLlamaCppOutput(string name)
    {
        // Even general.name ("Hf", from the folder name) and general.size_label agree, so the files are equal byte for byte.
        Assert.Equal(File.ReadAllBytes(Fixtures.Model(name, "bf16")), File.ReadAllBytes(converted.Get(name, "bf16")));
    }

    [Theory]
    [InlineData("llama2-spm")]
    [InlineData("llama3")]
    public void F32IsTheBf16ValuesWidened(string name)
    {
        using var bf16 = GgufFile.Open(Fixtures.Model(name, "bf16"));
        using var f32 = GgufFile.Open(converted.Get(name, "f32"));
        Assert.Equal(0, f32.GetInt("general.file_type"));
        Assert.Equal(bf16.Tensors.Select(t => t.Name), f32.Tensors.Select(t => t.Name));
        foreach (var e in bf16.Tensors)
        {
            var a = f32.GetTensor(e.Name);
            Assert.Equal(GgmlType.F32, a.Type);
            Assert.Equal(e.Dims, a.Dims);
            var widened = new float[e.ElementCount];
            RowCodec.Dequantize(e.Type, e.Span, widened);
            var actual = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(a.Span);
            Assert.True(actual.SequenceEqual(widened), $"tensor '{e.Name}' differs from the widened bf16 values");
        }
    }

    [Fact]
    public void F16IsTheBf16ValuesRoundedToHalf()
    {
        using var bf16 = GgufFile.Open(Fixtures.Model("llama3", "bf16"));
        using var f16 = GgufFile.Open(converted.Get("llama3", "f16"));
        Assert.Equal(1, f16.GetInt("general.file_type"));
        foreach (var e in bf16.Tensors)
        {
            var a = f16.GetTensor(e.Name);
            var values = new float[e.ElementCount];
            RowCodec.Dequantize(e.Type, e.Span, values);
            if (e.Type == GgmlType.F32)
            {
                Assert.Equal(GgmlType.F32, a.Type); // 1-D tensors stay F32
                continue;
            }
            Assert.Equal(GgmlType.F16, a.Type);
            var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(a.Span);
            int bad = -1;
            for (int i = 0; i < values.Length && bad < 0; i++)
                if ((Half)values[i] != halves[i]) bad = i;
            Assert.True(bad < 0, $"tensor '{e.Name}' element {bad} is not the bf16 value rounded to half");
        }
    }

    [Fact]
    public void Llama3TiedEmbeddingIsWrittenOnceAndRopeFreqsComeFirst()
    {
        using var f = GgufFile.Open(converted.Get("llama3", "bf16"));
        Assert.Null(f.FindTensor("output.weight"));
        Assert.Equal("rope_freqs.weight", f.Tensors[0].Name);
        Assert.Equal("llama-bpe", f.GetString("tokenizer.ggml.pre"));
    }
}
