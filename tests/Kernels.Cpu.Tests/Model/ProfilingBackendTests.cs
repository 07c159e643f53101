using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;
using Infer.Tests;

namespace Infer.Kernels.Cpu.Tests.Model;

/// <summary>
/// <see cref="ProfilingBackend"/> (behind <c>infer bench --profile</c>): counts every operation of a forward pass and leaves its
/// results unchanged.
/// </summary>
public class ProfilingBackendTests
{
    [Theory]
    [InlineData("blk.12.ffn_down.weight", "ffn_down")]
    [InlineData("blk.0.attn_q.weight", "attn_q")]
    [InlineData("output.weight", "output")]
    [InlineData("token_embd.weight", "token_embd")]
    [InlineData("blk.x", "blk.x")]
    public void RoleDropsTheLayerPrefixAndWeightSuffix(string tensor, string role) => Assert.Equal(role, ProfilingBackend.Role(tensor));

    [Fact]
    public void CountsEachOperationOncePerLayerAndKeepsTheLogits()
    {
        using var file = GgufFile.Open(Fixtures.Model("llama3", "q8_0"));
        float[] plain = Logits(file, profiler: null);
        var profiler = new ProfilingBackend(new CpuBackend(2));
        float[] profiled = Logits(file, profiler);
        Assert.Equal(plain, profiled); // same kernels, same order: bit-identical

        int layers = file.GetInt32("llama.block_count", 1, 1000);
        var entries = profiler.Snapshot().ToDictionary(e => e.Operation, e => e.Calls);
        foreach (var role in new[] { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" })
        {
            // one entry per weight type the role has in this file (a quantized file may keep some layers' tensors in another type)
            var types = Enumerable.Range(0, layers).Select(l => GgmlTypeInfo.Name(file.GetTensor($"blk.{l}.{role}.weight").Type)).ToList();
            foreach (var type in types.Distinct())
                Assert.Equal(types.Count(t => t == type), entries[$"matmul {role} {type}"]);
        }
        Assert.Equal(layers, entries["attention"]);
        Assert.Equal(layers, entries["swiglu"]);
        Assert.Equal(2 * layers + 1, entries["rms norm"]); // two per layer and the output norm
        Assert.Equal(1, entries["embed"]);
        Assert.True(profiler.Snapshot().All(e => e.Time >= TimeSpan.Zero));

        profiler.Reset();
        Assert.Empty(profiler.Snapshot());
    }

    private static float[] Logits(GgufFile file, ProfilingBackend? profiler)
    {
        using var model = LlamaModel.Load(file, profiler ?? (IBackend)new CpuBackend(2), new ModelOptions(ContextLength: 64));
        int[] tokens = [1, 2, 3, 4, 5];
        var logits = new float[model.VocabSize];
        model.Forward(tokens, [0, 1, 2, 3, 4], [0, 0, 0, 0, 0], [4], logits);
        return logits;
    }
}
