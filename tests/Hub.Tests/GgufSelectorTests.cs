namespace Infer.Hub.Tests;

public sealed class GgufSelectorTests
{
    private static List<HubFile> Files(params string[] paths) => paths.Select(p => new HubFile(p, 1, null, null)).ToList();

    private static string[] Pick(IReadOnlyList<HubFile> files, string? quant, string? hfFile = null) =>
        GgufSelector.Select(files, "o/r", "main", quant, hfFile).Select(f => f.Path).ToArray();

    private static readonly List<HubFile> Typical = Files(
        ".gitattributes", "README.md", "Model-BF16.gguf", "Model-IQ4_XS.gguf", "Model-Q4_0.gguf", "Model-Q4_K_M.gguf",
        "Model-Q4_K_S.gguf", "Model-Q8_0.gguf", "mmproj-Model-Q8_0.gguf", "mmproj-Model-F16.gguf");

    [Theory]
    [InlineData("Q8_0", "Model-Q8_0.gguf")]
    [InlineData("q4_k_m", "Model-Q4_K_M.gguf")]
    [InlineData("bf16", "Model-BF16.gguf")]
    [InlineData("Q4_0", "Model-Q4_0.gguf")]
    [InlineData("IQ4_XS", "Model-IQ4_XS.gguf")]
    [InlineData("Q4_K_S", "Model-Q4_K_S.gguf")]
    public void Quant_IsMatchedCaseInsensitively_ProjectorsNeverPicked(string quant, string expected) =>
        Assert.Equal([expected], Pick(Typical, quant));

    [Fact]
    public void PartialQuant_MatchingSeveralModels_IsAmbiguous()
    {
        var e = Assert.Throws<HubException>(() => Pick(Typical, "Q4_K"));

        Assert.Equal(HubErrorKind.Ambiguous, e.Kind);
        Assert.Contains("Model-Q4_K_M.gguf", e.Message);
        Assert.Contains("Model-Q4_K_S.gguf", e.Message);
    }

    [Fact]
    public void Default_IsQ4_K_M_ThenQ4_0_ThenQ8_0_ThenTheOnlyModel()
    {
        Assert.Equal(["Model-Q4_K_M.gguf"], Pick(Typical, null));
        Assert.Equal(["m-Q4_0.gguf"], Pick(Files("m-Q8_0.gguf", "m-Q4_0.gguf", "m-F16.gguf"), null));
        Assert.Equal(["m-Q8_0.gguf"], Pick(Files("m-Q8_0.gguf", "m-F16.gguf", "mmproj-Q4_0.gguf"), null));
        Assert.Equal(["only-F16.gguf"], Pick(Files("only-F16.gguf", "mmproj-F16.gguf"), null));

        var e = Assert.Throws<HubException>(() => Pick(Files("m-F16.gguf", "m-Q6_K.gguf", "m-UD-Q5_K_XL.gguf"), null));
        Assert.Equal(HubErrorKind.NoMatchingQuant, e.Kind);
        Assert.Contains("it offers: F16, Q6_K, UD-Q5_K_XL", e.Message);
    }

    [Fact]
    public void SplitModel_YieldsAllPartsInOrder_WhateverTheListingOrder()
    {
        var files = Files("Q4_K_M/M-Q4_K_M-00003-of-00003.gguf", "Q4_K_M/M-Q4_K_M-00001-of-00003.gguf",
            "Q4_K_M/M-Q4_K_M-00002-of-00003.gguf", "M-Q8_0.gguf");

        string[] expected = ["Q4_K_M/M-Q4_K_M-00001-of-00003.gguf", "Q4_K_M/M-Q4_K_M-00002-of-00003.gguf", "Q4_K_M/M-Q4_K_M-00003-of-00003.gguf"];
        Assert.Equal(expected, Pick(files, null));
        Assert.Equal(expected, Pick(files, "Q4_K_M"));
        Assert.Equal(expected, Pick(files, null, hfFile: "Q4_K_M/M-Q4_K_M-00002-of-00003.gguf"));
        Assert.Equal(["M-Q8_0.gguf"], Pick(files, "q8_0"));
    }

    [Fact]
    public void SplitModel_WithAMissingPart_IsAnError()
    {
        var files = Files("M-Q8_0-00001-of-00003.gguf", "M-Q8_0-00003-of-00003.gguf");

        var e = Assert.Throws<HubException>(() => Pick(files, "Q8_0"));

        Assert.Equal(HubErrorKind.NotFound, e.Kind);
        Assert.Contains("part 2 of 3", e.Message);
    }

    [Fact]
    public void HfFile_MatchesPathOrUniqueName()
    {
        var files = Files("a/x.gguf", "b/x.gguf", "b/y.gguf", "config.json");

        Assert.Equal(["b/y.gguf"], Pick(files, null, "y.gguf"));
        Assert.Equal(["a/x.gguf"], Pick(files, "ignored", "a/x.gguf"));
        Assert.Equal(["config.json"], Pick(files, null, "config.json"));
        Assert.Equal(HubErrorKind.Ambiguous, Assert.Throws<HubException>(() => Pick(files, null, "x.gguf")).Kind);
        var e = Assert.Throws<HubException>(() => Pick(files, null, "z.gguf"));
        Assert.Equal(HubErrorKind.NotFound, e.Kind);
        Assert.Contains("a/x.gguf, b/x.gguf, b/y.gguf", e.Message);
    }

    [Fact]
    public void RepoWithoutGguf_IsNotFound()
    {
        var e = Assert.Throws<HubException>(() => Pick(Files("model.safetensors", "config.json"), null));

        Assert.Equal(HubErrorKind.NotFound, e.Kind);
        Assert.Contains("no GGUF", e.Message);
    }

    [Theory]
    [InlineData("Qwen3-0.6B-Q8_0.gguf", "Q8_0")]
    [InlineData("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M")]
    [InlineData("gemma-3-4b-it-UD-Q4_K_XL.gguf", "UD-Q4_K_XL")]
    [InlineData("model.bf16.gguf", "BF16")]
    [InlineData("sub/M-IQ2_XXS-00001-of-00002.gguf", "IQ2_XXS")]
    [InlineData("tinyllama.gguf", "tinyllama")]
    public void QuantLabel_FromFileName(string path, string label) => Assert.Equal(label, GgufSelector.QuantLabel(path));
}
