using System.Text;
using System.Text.Json;
using Infer.Runtime.Gguf;
using Infer.Tests;

namespace Infer.ConvertWeights.Tests;

public class CheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("checkpoint-tests-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static void CopySmallFiles(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from).Where(f => !f.EndsWith(".safetensors", StringComparison.Ordinal)))
        {
            File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
            File.SetAttributes(Path.Combine(to, Path.GetFileName(f)), FileAttributes.Normal);
        }
    }

    /// <summary>Writes the given tensors of an open safetensors file into a new one (a shard).</summary>
    private static unsafe void WriteShard(string path, IEnumerable<SafetensorsTensor> tensors)
    {
        var header = new Dictionary<string, object>();
        long offset = 0;
        var list = tensors.ToList();
        foreach (var t in list)
        {
            header[t.Name] = new { dtype = t.Dtype.ToString(), shape = t.Shape, data_offsets = new[] { offset, offset + t.ByteSize } };
            offset += t.ByteSize;
        }
        byte[] h = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        using var f = File.Create(path);
        f.Write(BitConverter.GetBytes((ulong)h.Length));
        f.Write(h);
        foreach (var t in list) f.Write(new ReadOnlySpan<byte>(t.Data, (int)t.ByteSize));
    }

    [Fact]
    public void ShardedCheckpointConvertsToTheSameTensors()
    {
        string src = Path.Combine(Fixtures.ModelDir("llama2-spm"), "hf");
        string dir = Path.Combine(_dir, "sharded");
        CopySmallFiles(src, dir);
        var weightMap = new Dictionary<string, string>();
        using (var single = SafetensorsFile.Open(Path.Combine(src, "model.safetensors")))
        {
            var first = single.Tensors.Take(single.Tensors.Count / 2).ToList();
            var second = single.Tensors.Skip(first.Count).ToList();
            WriteShard(Path.Combine(dir, "model-00001-of-00002.safetensors"), first);
            WriteShard(Path.Combine(dir, "model-00002-of-00002.safetensors"), second);
            foreach (var t in first) weightMap[t.Name] = "model-00001-of-00002.safetensors";
            foreach (var t in second) weightMap[t.Name] = "model-00002-of-00002.safetensors";
        }
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"),
            JsonSerializer.Serialize(new { metadata = new { }, weight_map = weightMap }));

        string output = Path.Combine(_dir, "sharded.gguf");
        var err = new StringWriter();
        Assert.True(Program.Run(["convert", dir, "-o", output], err, showProgress: false) == 0, err.ToString());
        using var expected = GgufFile.Open(Fixtures.Model("llama2-spm", "bf16"));
        using var actual = GgufFile.Open(output);
        GgufCompare.TensorsMatch(expected, actual);
        GgufCompare.MetadataMatches(expected, actual);
    }

    [Fact]
    public void GenerationConfigEndIdsBecomeEot()
    {
        string dir = Path.Combine(_dir, "llama3");
        CopySmallFiles(Path.Combine(Fixtures.ModelDir("llama3"), "hf"), dir);
        // a base model: eos is <|end_of_text|>; generation also stops on <|eot_id|>
        string tc = Path.Combine(dir, "tokenizer_config.json");
        string text = File.ReadAllText(tc);
        Assert.Contains("\"eos_token\": \"<|eot_id|>\"", text);
        File.WriteAllText(tc, text.Replace("\"eos_token\": \"<|eot_id|>\"", "\"eos_token\": \"<|end_of_text|>\""));
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{"bos_token_id": 128000, "eos_token_id": [128001, 128009]}""");
        var cfg = HfConfig.Load(dir);
        var md = Vocab.Build(dir, cfg);
        uint Id(string key) => (uint)md.Single(e => e.Key == key).Value;
        Assert.Equal(128000u, Id("tokenizer.ggml.bos_token_id"));
        Assert.Equal(128001u, Id("tokenizer.ggml.eos_token_id"));
        Assert.Equal(128009u, Id("tokenizer.ggml.eot_token_id"));
        Assert.DoesNotContain(md, e => e.Key == "tokenizer.ggml.eom_token_id");

        // with eos already <|eot_id|> (the fixture as shipped) nothing is added
        File.WriteAllText(tc, text);
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{"eos_token_id": [128001, 128009]}""");
        Assert.DoesNotContain(Vocab.Build(dir, cfg), e => e.Key == "tokenizer.ggml.eot_token_id");
    }

    [Fact]
    public void ConfigReadsLlama3RopeScaling()
    {
        var cfg = HfConfig.Load(Path.Combine(Fixtures.ModelDir("llama3"), "hf"));
        Assert.Equal("llama", cfg.Arch);
        Assert.Equal(new RopeScaling("llama3", 8, 1, 4, 8192), cfg.RopeScaling);
        Assert.Equal(500000, cfg.RopeTheta);
        Assert.Equal(32, cfg.HeadDim);
        Assert.True(cfg.TieWordEmbeddings);
    }
}

public class SafetensorsReadTests : IDisposable
{
    private readonly string _path = Path.GetTempFileName();

    public void Dispose() => File.Delete(_path);

    [Fact]
    public void ReadsF32F16AndBf16AsFloat32()
    {
        // values exactly representable in all three formats
        float[] values = [1f, -2.5f, 0.375f, 3072f, -0f, 1024f];
        var f32 = System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        var f16 = values.SelectMany(v => BitConverter.GetBytes(BitConverter.HalfToUInt16Bits((Half)v))).ToArray();
        var bf16 = values.SelectMany(v => BitConverter.GetBytes((ushort)(BitConverter.SingleToUInt32Bits(v) >> 16))).ToArray();
        string header = """{"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, "b": """
            + """{"dtype": "F16", "shape": [6], "data_offsets": [24, 36]}, "c": {"dtype": "BF16", "shape": [3, 2], "data_offsets": [36, 48]}}""";
        byte[] h = Encoding.UTF8.GetBytes(header);
        File.WriteAllBytes(_path, [.. BitConverter.GetBytes((ulong)h.Length), .. h, .. f32, .. f16, .. bf16]);
        using var f = SafetensorsFile.Open(_path);
        Assert.Equal(["a", "b", "c"], f.Tensors.Select(t => t.Name));
        foreach (var t in f.Tensors)
        {
            var got = new float[6];
            t.ReadFloats(0, got);
            Assert.Equal(values, got);
            var tail = new float[2];
            t.ReadFloats(4, tail);
            Assert.Equal(values[4..], tail);
        }
        Assert.Equal([3L, 2L], f.Tensors[2].Shape);
    }
}
