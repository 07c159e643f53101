using Infer.Runtime.Sampling;
using Infer.Runtime.Serving;
using Infer.Tests;

namespace Infer.Server.Tests.Serving;

/// <summary>Served greedy tokens against transformers' (the fixtures' BF16 references), all cases submitted at once.</summary>
public sealed class ReferenceTokenTests
{
    [Theory]
    [InlineData("llama3")]
    [InlineData("qwen2")]
    public async Task ConcurrentGreedyTokensEqualTheTransformersReference(string model)
    {
        var cases = ReferenceCase.Load(model);
        using var m = new TestModel(model, "bf16", sequences: cases.Count);
        using var s = new Scheduler(m.Model, m.Tokenizer);
        var streams = cases.Select(c => s.Submit(new GenerationRequest
        {
            Prompt = c.InputIds,
            MaxTokens = c.GreedyNewIds.Length,
            Sampling = new SamplerOptions { Temperature = 0 },
            IgnoreEos = true,
        })).ToArray();
        for (int i = 0; i < cases.Count; i++)
        {
            var (_, tokens, _) = await streams[i].CollectAsync();
            Assert.Equal(cases[i].GreedyNewIds, tokens.Select(t => t.Token).ToArray());
        }
    }
}
