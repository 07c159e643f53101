using Infer.Kernels.Cpu;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Tests;
using static Infer.Kernels.Gpu.Tests.Logits;

namespace Infer.Kernels.Gpu.Tests;

/// <summary>
/// Whole-model checks of the GPU backend on ILGPU's CPU accelerator against the transformers references in the fixtures:
/// last-position logits within 1e-3 and the 24 greedy tokens, decoded one at a time through the KV cache.
/// </summary>
public sealed class ModelFixtureTests
{
    private const float LogitTolerance = 1e-3f;

    /// <summary>
    /// Q8_0 weights: the logits may differ from transformers (which ran the BF16 weights) by no more than llama.cpp's own
    /// Q8_0 result does (<c>max_abs_diff_vs_transformers_bf16</c>); greedy strings are not compared (see the fixtures README).
    /// </summary>
    [Theory]
    [InlineData("llama3", "prompt1")]
    public void Q8_0LogitsStayWithinLlamaCppBound(string model, string caseId)
    {
        var c = ReferenceCase.Find(model, caseId);
        float bound = (float)ReferenceCase.LlamaCppQ8Differences(model)[caseId];

        using var file = GgufFile.Open(Fixtures.Model(model, "q8_0"));
        var backend = new GpuBackend(GpuContextFactory.OpenIlgpuCpu(), new GpuBackendOptions(MaxBatch: 64));
        using var m = LlamaModel.Load(file, backend, new ModelOptions(ContextLength: 64, BatchSize: 64));
        var session = new Session(m);
        session.Append(c.InputIds);
        float maxDiff = MaxAbsDiff(session.Logits, c.LoadLogits());
        Assert.True(maxDiff <= bound, $"{model}/{caseId} q8_0: max |logit - transformers| = {maxDiff}, llama.cpp's is {bound}");
    }

    /// <summary>
    /// Decode with attention split over positions (two ranges, merged by the last one to finish in the same launch): greedy
    /// tokens still match, and a llama decode step launches 1 (embed) + 5 per layer + 1 (gather, final norm and output in one)
    /// kernels, the 5L + 2. The 5 of a layer: attn_norm with the Q/K/V matmuls, RoPE of q and k and the KV store;
    /// attention; attn_output matmul with the residual add; ffn_norm with the gate/up matmuls and SwiGLU; ffn_down matmul
    /// with the residual add.
    /// </summary>
    [Fact]
    public void SplitAttentionDecodeMatchesAndCountsLaunches()
    {
        var c = ReferenceCase.Find("llama2-spm", "prompt1");
        using var file = GgufFile.Open(Fixtures.Model("llama2-spm", "bf16"));
        var backend = new GpuBackend(GpuContextFactory.OpenIlgpuCpu(), new GpuBackendOptions(MaxBatch: 64, AttentionSplits: 2));
        using var m = LlamaModel.Load(file, backend, new ModelOptions(ContextLength: 64, BatchSize: 64));
        var session = new Session(m);
        session.Append(c.InputIds);
        for (int i = 0; i < 6; i++)
        {
            int next = ArgMax(session.Logits);
            Assert.Equal(c.GreedyNewIds[i], next);
            session.Append(next);
            int layers = m.Config.BlockCount;
            Assert.Equal(1 + 5 * layers + 1, backend.LaunchesThisBatch);
        }
    }


    [Theory]
    [InlineData("llama2-spm", "prompt0")]
    [InlineData("llama3", "chat")]
    [InlineData("qwen2", "prompt1")]
    [InlineData("qwen3", "chat")]
    public void Bf16LogitsAndGreedyTokensMatchTransformers(string model, string caseId)
    {
        var c = ReferenceCase.Find(model, caseId);
        using var file = GgufFile.Open(Fixtures.Model(model, "bf16"));
        var backend = new GpuBackend(GpuContextFactory.OpenIlgpuCpu(), new GpuBackendOptions(MaxBatch: 64));
        using var m = LlamaModel.Load(file, backend, new ModelOptions(ContextLength: 128, BatchSize: 64));
        var session = new Session(m);

        session.Append(c.InputIds);
        float maxDiff = MaxAbsDiff(session.Logits, c.LoadLogits());
        Assert.True(maxDiff <= LogitTolerance, $"{model}/{caseId}: max |logit - transformers| = {maxDiff}");
        Assert.Equal(c.GreedyNewIds, Greedy(session, c.GreedyNewIds.Length));
        Assert.True(backend.LaunchesThisBatch > 0);
    }

    /// <summary>
    /// The f16 KV cache (llama.cpp's default) and the q8_0 cache on the GPU kernels, within the CPU backend's bounds of
    /// transformers (f16: 5e-3, keys and values rounded to 11 significant bits, every greedy token still transformers'; q8_0:
    /// 0.1, the top token kept where the top two are more than twice that apart), and the last logits within the same bound
    /// of the CPU backend's own run with the same cache.
    /// </summary>
    [Theory]
    [InlineData("llama3", "prompt0", KvCacheType.F16)]
    [InlineData("qwen2", "chat", KvCacheType.F16)]
    [InlineData("llama3", "prompt1", KvCacheType.Q8_0)]
    [InlineData("qwen3", "chat", KvCacheType.Q8_0)]
    public void NarrowCacheStaysWithinTheCpuBound(string model, string caseId, KvCacheType type)
    {
        float bound = type == KvCacheType.F16 ? 5e-3f : 0.1f;
        var c = ReferenceCase.Find(model, caseId);
        using var file = GgufFile.Open(Fixtures.Model(model, "bf16"));
        var options = new ModelOptions(ContextLength: 128, BatchSize: 64, CacheTypeK: type, CacheTypeV: type);
        var backend = new GpuBackend(GpuContextFactory.OpenIlgpuCpu(), new GpuBackendOptions(MaxBatch: 64));
        using var m = LlamaModel.Load(file, backend, options);
        Assert.All(m.Placement, r => Assert.Equal((type, type), (r.KType, r.VType)));
        using var cpu = LlamaModel.Load(file, new CpuBackend(2, 64), options);
        var session = new Session(m);
        var cpuSession = new Session(cpu);
        session.Append(c.InputIds);
        float maxDiff = MaxAbsDiff(session.Logits, c.LoadLogits());
        Assert.True(maxDiff <= bound, $"{model}/{caseId} {type} cache: max |logit - transformers| = {maxDiff}");

        var greedy = Greedy(session, type == KvCacheType.F16 ? c.GreedyNewIds.Length : 1);
        if (type == KvCacheType.F16) Assert.Equal(c.GreedyNewIds, greedy);
        else if (c.Top1Top2Gap > 2 * bound) Assert.Equal(c.GreedyNewIds[0], greedy[0]);
        cpuSession.Append([.. c.InputIds, .. greedy[..^1]]);
        float fromCpu = MaxAbsDiff(session.Logits, cpuSession.Logits);
        Assert.True(fromCpu <= bound, $"{model}/{caseId}: {type} caches, GPU vs CPU backend: max |dlogit| = {fromCpu}");
    }
}
