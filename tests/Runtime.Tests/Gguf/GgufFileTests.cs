using Infer.Runtime.Gguf;
using Infer.Tests;

namespace Infer.Runtime.Tests.Gguf;

public class GgufFileTests
{
    [Theory]
    [InlineData("llama2-spm", "bf16")]
    [InlineData("llama2-spm", "q8_0")]
    [InlineData("llama3", "bf16")]
    [InlineData("llama3", "q8_0")]
    [InlineData("qwen2", "bf16")]
    [InlineData("qwen3", "bf16")]
    public void OpensFixtureModels(string name, string type)
    {
        using var f = GgufFile.Open(Fixtures.Model(name, type));
        Assert.Equal(3u, f.Version);
        Assert.Equal(64, f.GetInt32($"{f.GetString("general.architecture")}.embedding_length"));
        var embd = f.GetTensor("token_embd.weight");
        Assert.Equal(64, embd.Dims[0]);
        Assert.True(embd.ByteSize > 0);
        Assert.Equal(0, embd.FileOffset % f.Alignment);
        Assert.NotNull(f.TryGetStringArray("tokenizer.ggml.tokens"));
    }

    [Fact]
    public void Llama3BasicMetadata()
    {
        using var f = GgufFile.Open(Fixtures.Model("llama3", "bf16"));
        Assert.Equal("llama", f.GetString("general.architecture"));
        Assert.Equal(2, f.GetInt32("llama.block_count"));
        Assert.Equal(128256, f.TryGetStringArray("tokenizer.ggml.tokens")!.Length);
        Assert.Equal("gpt2", f.GetString("tokenizer.ggml.model"));
        var rf = f.GetTensor("rope_freqs.weight");
        Assert.Equal(GgmlType.F32, rf.Type);
        Assert.Equal(16, rf.Dims[0]); // head_dim / 2
    }
}
