namespace Infer.Hub.Tests;

public sealed class ModelReferenceTests
{
    [Theory]
    [InlineData("Qwen/Qwen3-0.6B-GGUF", "Qwen", "Qwen3-0.6B-GGUF", null)]
    [InlineData("unsloth/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "unsloth", "Llama-3.2-1B-Instruct-GGUF", "Q4_K_M")]
    [InlineData("bartowski/gemma-2-2b-it-GGUF:ud-q4_k_xl", "bartowski", "gemma-2-2b-it-GGUF", "ud-q4_k_xl")]
    [InlineData(" test/tiny:Q8_0 ", "test", "tiny", "Q8_0")]
    [InlineData("hf.co/test/tiny:bf16", "test", "tiny", "bf16")]
    [InlineData("https://huggingface.co/test/tiny", "test", "tiny", null)]
    [InlineData("a/b_c.d-e", "a", "b_c.d-e", null)]
    public void Parse_Valid(string text, string owner, string repo, string? quant)
    {
        var reference = ModelReference.Parse(text);

        Assert.Equal(owner, reference.Owner);
        Assert.Equal(repo, reference.Repo);
        Assert.Equal(quant, reference.Quant);
        Assert.Equal($"{owner}/{repo}", reference.RepoId);
        Assert.Equal(quant is null ? $"{owner}/{repo}" : $"{owner}/{repo}:{quant}", reference.ToString());
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("tiny", "no '/'")]
    [InlineData("a/b/c", "more than one '/'")]
    [InlineData("/repo", "owner is empty")]
    [InlineData("owner/", "repository name is empty")]
    [InlineData("owner/repo:", "quantization after ':' is empty")]
    [InlineData("owner/repo:Q4 K", "contains ' '")]
    [InlineData("../repo", "must start and end")]
    [InlineData("owner/..", "must start and end")]
    [InlineData("owner/a..b", "'..'")]
    [InlineData("owner/a--b", "'--'")]
    [InlineData("owner/-repo", "must start and end")]
    [InlineData("owner/repo.git", "'.git'")]
    [InlineData("own er/repo", "contains ' '")]
    [InlineData("owner/répo", "contains 'é'")]
    public void Parse_Invalid_SaysWhy(string text, string reason)
    {
        var e = Assert.Throws<HubException>(() => ModelReference.Parse(text));

        Assert.Equal(HubErrorKind.InvalidReference, e.Kind);
        Assert.Contains(reason, e.Message);
        Assert.False(ModelReference.TryParse(text, out _, out _));
    }

    [Fact]
    public void Parse_RejectsOverlongNames()
    {
        Assert.True(ModelReference.TryParse("o/" + new string('r', 96), out _, out _));
        Assert.False(ModelReference.TryParse("o/" + new string('r', 97), out _, out var error));
        Assert.Contains("longer than 96", error);
    }
}
