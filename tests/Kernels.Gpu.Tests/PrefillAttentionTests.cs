using ILGPU.Runtime.CPU;
using Infer.Kernels.Gpu.Kernels;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Tests;
using static Infer.Kernels.Gpu.Tests.Logits;

namespace Infer.Kernels.Gpu.Tests;

/// <summary>
/// Backends for prompts longer than <see cref="GpuBackends.MaxBatch"/> on ILGPU's CPU accelerator at GPU-like group sizes, where the
/// tiled prefill attention (GpuKernels.AttentionPrefill) runs: <see cref="Wide"/> has groups of 128 threads (four warps of 32),
/// <see cref="Narrow"/> groups of 32 (four warps of 8), so tiles hold from 4 to 64 query rows.
/// </summary>
public sealed class PrefillBackends : IDisposable
{
    public const int MaxBatch = 80;

    public GpuBackend Wide { get; } =
        new(GpuContextFactory.OpenIlgpuCpu(new CPUDevice(numThreadsPerWarp: 32, numWarpsPerMultiprocessor: 4, numMultiprocessors: 2)),
            new GpuBackendOptions(MaxBatch, AttentionSplits: 3, MatMulSliceThreads: 32));

    public GpuBackend Narrow { get; } =
        new(GpuContextFactory.OpenIlgpuCpu(new CPUDevice(numThreadsPerWarp: 8, numWarpsPerMultiprocessor: 4, numMultiprocessors: 2)),
            new GpuBackendOptions(MaxBatch, MatMulSliceThreads: 8));

    /// <summary>Groups of 128 with GpuBackendOptions.PrefillAttention = 1: every batch on the per-(token, head) kernel.</summary>
    public GpuBackend Old { get; } =
        new(GpuContextFactory.OpenIlgpuCpu(new CPUDevice(numThreadsPerWarp: 32, numWarpsPerMultiprocessor: 4, numMultiprocessors: 2)),
            new GpuBackendOptions(MaxBatch, PrefillAttention: 1));

    public void Dispose()
    {
        Wide.Dispose();
        Narrow.Dispose();
        Old.Dispose();
    }
}

/// <summary>
/// The tiled prefill attention against the host reference (VectorOps.AttendRef through GpuKernelTests.ReferenceAttention), by
/// NMSE ≤ 1e-7: prompts of 16 to 66 tokens (partial tiles, several K/V chunks, chunks that start inside a tile), grouped-query
/// and multi-head, heads of 20 to 256, every cache type; and the batches it must leave to the per-(token, head) kernel.
/// </summary>
public sealed class PrefillAttentionTests(PrefillBackends backends) : IClassFixture<PrefillBackends>
{
    public static TheoryData<int, int, int, KvCacheType, KvCacheType, bool> Cases() => new()
    {
        { 8, 2, 64, KvCacheType.F32, KvCacheType.F32, true },    // GQA 4: Llama-3.2-1B's heads
        { 4, 4, 64, KvCacheType.F16, KvCacheType.F16, true },    // MHA
        { 6, 2, 128, KvCacheType.Q8_0, KvCacheType.Q8_0, true }, // GQA 3: tiles start inside a token's heads
        { 4, 2, 80, KvCacheType.F16, KvCacheType.F32, true },    // a head of 80 (laid out as 128)
        { 2, 1, 256, KvCacheType.F16, KvCacheType.Q8_0, true },  // the largest head: chunks narrower than the threads across
        { 2, 1, 128, KvCacheType.F32, KvCacheType.Q8_0, false },
        { 4, 2, 64, KvCacheType.Q8_0, KvCacheType.F16, false },
        { 3, 3, 20, KvCacheType.F32, KvCacheType.F32, false },
        { 8, 2, 64, KvCacheType.F16, KvCacheType.F16, false },
    };

    /// <summary>
    /// Batches over two sequences: a 40-token prompt of sequence 0 (tiled kernel); 5 tokens of sequence 1 (too few: the old kernel);
    /// 66 more of sequence 1 from position 5 (tiled; tiles straddle the chunk boundaries); 8 tokens of each sequence in one batch (the
    /// tiled kernel where each tile is one sequence's, else the old one); 16 tokens of sequence 0 in reverse order (positions need not
    /// be consecutive: each row is masked by its own); one decode token. Each attention call is one launch.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void PrefillAttentionMatchesReference(int heads, int kvHeads, int headDim, KvCacheType kType, KvCacheType vType, bool wide)
    {
        var b = wide ? backends.Wide : backends.Narrow;
        int group = wide ? 128 : 32, rows = GpuKernels.PrefillRows(headDim, group);
        Assert.True(GpuKernels.PrefillChunk(headDim, group) > 0, $"head {headDim} on groups of {group} runs the tiled kernel");
        bool mixedTiled = 8 * (heads / kvHeads) % rows == 0; // the 8 + 8 batch: sequence 1 starts on a tile
        Run(b, heads, kvHeads, headDim, kType, vType, mixedTiled, tiled: true);
    }

    /// <summary>GpuBackendOptions.PrefillAttention = 1 keeps every batch on the per-(token, head) kernel, which matches too.</summary>
    [Fact]
    public void TheOldKernelStaysSelectable()
    {
        Run(backends.Old, 8, 2, 64, KvCacheType.F16, KvCacheType.F16, false, tiled: false);
        Assert.Equal(1, GpuBackendOptions.ForRun(8, new Dictionary<string, string> { ["INFER_GPU_PREFILL_ATTN"] = " 1 " }).PrefillAttention);
        Assert.Equal(0, GpuBackendOptions.ForRun(8, new Dictionary<string, string> { ["INFER_GPU_PREFILL_ATTN"] = "0" }).PrefillAttention);
        using var device = GpuContextFactory.OpenIlgpuCpu();
        Assert.Throws<ArgumentOutOfRangeException>(() => new GpuBackend(device, new GpuBackendOptions(PrefillAttention: 2), ownsDevice: false));
    }

    /// <summary>
    /// Whole fixture models on groups of 128 threads, their chat prompts (31 and 33 tokens) through the tiled kernel: the last
    /// logits within 1e-3 of transformers and the greedy tokens transformers chose, decoded through the old kernel.
    /// </summary>
    [Theory]
    [InlineData("llama3", "chat")]
    [InlineData("qwen3", "chat")]
    public void PromptsThroughTheTiledKernelMatchTransformers(string model, string caseId)
    {
        var c = ReferenceCase.Find(model, caseId);
        using var file = GgufFile.Open(Fixtures.Model(model, "bf16"));
        var device = GpuContextFactory.OpenIlgpuCpu(new CPUDevice(numThreadsPerWarp: 32, numWarpsPerMultiprocessor: 4, numMultiprocessors: 2));
        var backend = new GpuBackend(device, new GpuBackendOptions(MaxBatch: 64));
        using var m = LlamaModel.Load(file, backend, new ModelOptions(ContextLength: 128, BatchSize: 64));
        var session = new Session(m);
        session.Append(c.InputIds);
        Assert.Equal(m.Config.BlockCount, backend.PrefillAttentionLaunches);
        float maxDiff = MaxAbsDiff(session.Logits, c.LoadLogits());
        Assert.True(maxDiff <= 1e-3f, $"{model}/{caseId}: max |logit - transformers| = {maxDiff}");
        Assert.Equal(c.GreedyNewIds, Greedy(session, c.GreedyNewIds.Length));
    }

    private static void Run(GpuBackend b, int heads, int kvHeads, int headDim, KvCacheType kType, KvCacheType vType, bool mixedTiled,
        bool tiled)
    {
        var rng = new Random(heads * 1000 + kvHeads * 100 + headDim);
        const int layers = 2, layer = 1, ctx = 96, sequences = 2;
        int qDim = heads * headDim, kvDim = kvHeads * headDim;
        float scale = 1f / MathF.Sqrt(headDim);
        b.CreateKvCache(new KvCacheConfig(layers, sequences, ctx, kvHeads, headDim, kType, vType));
        var kHost = new float[sequences, ctx * kvDim];
        var vHost = new float[sequences, ctx * kvDim];
        var q = b.Allocate(PrefillBackends.MaxBatch, qDim);
        var k = b.Allocate(PrefillBackends.MaxBatch, kvDim);
        var v = b.Allocate(PrefillBackends.MaxBatch, kvDim);
        var o = b.Allocate(PrefillBackends.MaxBatch, qDim);
        var shape = new AttentionShape(heads, kvHeads, headDim, new RopeConfig(headDim, 10000f, 1f, false, null), 1e-5f);

        (int Seq, int Pos)[][] batches =
        [
            [.. Enumerable.Range(0, 40).Select(p => (0, p))],
            [.. Enumerable.Range(0, 5).Select(p => (1, p))],
            [.. Enumerable.Range(5, 66).Select(p => (1, p))],
            [.. Enumerable.Range(40, 8).Select(p => (0, p)), .. Enumerable.Range(71, 8).Select(p => (1, p))],
            [.. Enumerable.Range(48, 16).Select(p => (0, 63 - (p - 48)))],
            [(0, 64)],
        ];
        bool[] takesTiled = [tiled, false, tiled, tiled && mixedTiled, tiled, false];
        for (int i = 0; i < batches.Length; i++)
        {
            var batch = batches[i];
            int n = batch.Length;
            var qs = Check.Random(rng, n * qDim);
            var ks = Check.Random(rng, n * kvDim);
            var vs = Check.Random(rng, n * kvDim);
            b.Write(q, qs);
            b.Write(k, ks);
            b.Write(v, vs);
            b.SetBatch(new int[n], [.. batch.Select(e => e.Pos)], [.. batch.Select(e => e.Seq)]);
            b.StoreKv(layer, k, v);
            long launches = b.Launches, prefill = b.PrefillAttentionLaunches;
            b.Attention(layer, q, o, shape);
            Assert.Equal(1, b.Launches - launches);
            Assert.Equal(takesTiled[i] ? 1 : 0, b.PrefillAttentionLaunches - prefill);

            GpuKernelTests.StoreKv(kHost, vHost, batch, ks, vs, kvDim, kType, vType);
            var expected = GpuKernelTests.ReferenceAttention(qs, kHost, vHost, batch, heads, kvHeads, headDim, scale);
            Check.Close(Check.Read(b, o, n), expected,
                $"prefill attention {heads}/{kvHeads} heads of {headDim}, {kType}/{vType} cache, batch {i} of {n}");
        }
    }
}
