using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Runtime.Sampling;
using Infer.Tests;

namespace Infer.Kernels.Cpu.Tests.Model;

/// <summary>The per-token decode loop (forward pass through the KV cache, then sampling) allocates nothing on the managed heap.</summary>
public class AllocationTests
{
    [Theory]
    [InlineData("llama3", "q8_0")]
    [InlineData("qwen2", "bf16")]
    [InlineData("qwen3", "bf16")]
    public void DecodeStepsAllocateNothing(string name, string type) => DecodeAllocatesNothing(name, type, KvCacheType.F32);

    [Theory]
    [InlineData("llama3", "q8_0", KvCacheType.F16)]
    [InlineData("qwen3", "bf16", KvCacheType.Q8_0)]
    public void DecodeStepsOverANarrowCacheAllocateNothing(string name, string type, KvCacheType cache) =>
        DecodeAllocatesNothing(name, type, cache);

    private static void DecodeAllocatesNothing(string name, string type, KvCacheType cache)
    {
        using var file = GgufFile.Open(Fixtures.Model(name, type));
        using var model = LlamaModel.Load(file, new CpuBackend(2), new ModelOptions(ContextLength: 512, CacheTypeK: cache, CacheTypeV: cache));
        var session = new Session(model);
        var sampler = new Sampler(model.VocabSize, new SamplerOptions { Temperature = 0.8f, Seed = 1, RepeatPenalty = 1.1f });
        session.Append([1, 2, 3, 4]);
        for (int i = 0; i < 300; i++) Step(); // warm up: JIT tiering and first-use paths

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 32; i++) Step();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);

        void Step()
        {
            int next = sampler.Sample(session.Logits);
            sampler.Accept(next);
            session.Append(next);
        }
    }
}
