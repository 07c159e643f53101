using Infer.Kernels.Cpu.Ops;
using Infer.Runtime.Backend;

namespace Infer.Kernels.Cpu.Tests.Ops;

/// <summary>
/// <see cref="CpuBackend.Attention"/> (KV cache writes, query blocks, the tiled and per-head paths, threads) against the naive
/// reference over a host copy of the cache, through a sequence of batches: prefill, a prefix already cached, several sequences
/// in one batch, single-token decode and one token for each of several sequences.
/// </summary>
public unsafe class BackendAttentionTests
{
    /// <summary>As <c>FlashAttentionTests.AttentionTolerance</c>: float32 sums in another order, relative to 1 + |expected|.</summary>
    private const float AttentionTolerance = 2e-5f;

    [Theory]
    [InlineData(32, 8, 64, 2)]
    [InlineData(8, 8, 128, 2)]
    [InlineData(12, 2, 64, 3)]
    [InlineData(4, 4, 80, 1)]
    [InlineData(16, 1, 64, 2)] // a group of 16 heads: even a decode token fills a tile
    public void BatchesMatchReference(int nHeads, int nKvHeads, int headDim, int threads)
    {
        (int Sequence, int Start, int Count)[][] batches =
        [
            [(0, 0, 37)],                          // prefill
            [(1, 0, 21), (0, 37, 9), (2, 0, 1)],   // a new sequence, a prefix already cached, a single token
            [(0, 46, 1)],                          // decode
            [(1, 21, 1), (2, 1, 1), (0, 47, 1)],   // one token for each sequence
            [(2, 2, 70), (1, 22, 2)],              // a long block run behind a cached prefix
        ];
        RunBatches(nHeads, nKvHeads, headDim, threads, layers: 2, contextLength: 160, maxBatch: 96, batches);
    }

    /// <summary>The same batches over F16 and Q8_0 caches (and mixed K/V types): the reference reads the rows as the cache stores them.</summary>
    [Theory]
    [InlineData(32, 8, 64, 2, KvCacheType.F16, KvCacheType.F16)]
    [InlineData(12, 2, 64, 3, KvCacheType.Q8_0, KvCacheType.Q8_0)]
    [InlineData(8, 8, 128, 2, KvCacheType.Q8_0, KvCacheType.F16)]
    [InlineData(16, 1, 64, 2, KvCacheType.F16, KvCacheType.Q8_0)]
    [InlineData(4, 4, 80, 1, KvCacheType.F16, KvCacheType.F32)]
    [InlineData(32, 8, 64, 1, KvCacheType.F32, KvCacheType.Q8_0)]
    public void NarrowCacheBatchesMatchReference(int nHeads, int nKvHeads, int headDim, int threads, KvCacheType kType, KvCacheType vType)
    {
        (int Sequence, int Start, int Count)[][] batches =
        [
            [(0, 0, 37)],
            [(1, 0, 21), (0, 37, 9), (2, 0, 1)],
            [(0, 46, 1)],
            [(1, 21, 1), (2, 1, 1), (0, 47, 1)],
            [(2, 2, 70), (1, 22, 2)],
        ];
        RunBatches(nHeads, nKvHeads, headDim, threads, layers: 2, contextLength: 160, maxBatch: 96, batches, kType, vType);
    }

    /// <summary>
    /// Decode past <see cref="CpuBackend.GroupDecodePositions"/>: a single token of a GQA group goes through VectorOps.AttendGroup (one read of
    /// the cache for the group), beside a short sequence that still goes head by head.
    /// </summary>
    [Theory]
    [InlineData(32, 8, 64, 2, KvCacheType.F32, KvCacheType.F32)]
    [InlineData(12, 2, 64, 3, KvCacheType.F32, KvCacheType.F32)]
    [InlineData(32, 8, 64, 2, KvCacheType.F16, KvCacheType.F16)]
    [InlineData(12, 2, 64, 3, KvCacheType.Q8_0, KvCacheType.Q8_0)]
    public void LongContextDecodeMatchesReference(int nHeads, int nKvHeads, int headDim, int threads, KvCacheType kType, KvCacheType vType)
    {
        int prefill = CpuBackend.GroupDecodePositions + 6;
        var batches = new List<(int, int, int)[]>();
        for (int s = 0; s < prefill; s += 96) batches.Add([(0, s, Math.Min(96, prefill - s))]);
        batches.Add([(0, prefill, 1)]);
        batches.Add([(1, 0, 5)]);
        batches.Add([(1, 5, 1), (0, prefill + 1, 1)]);
        RunBatches(nHeads, nKvHeads, headDim, threads, layers: 1, contextLength: prefill + 8, maxBatch: 96, [.. batches], kType, vType);
    }

    private static void RunBatches(int nHeads, int nKvHeads, int headDim, int threads, int layers, int contextLength, int maxBatch,
        (int Sequence, int Start, int Count)[][] batches, KvCacheType kType = KvCacheType.F32, KvCacheType vType = KvCacheType.F32)
    {
        const int contexts = 3;
        int qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
        using var backend = new CpuBackend(threads, maxBatch);
        backend.CreateKvCache(new KvCacheConfig(layers, contexts, contextLength, nKvHeads, headDim, kType, vType));
        var q = backend.Allocate(maxBatch, qDim);
        var k = backend.Allocate(maxBatch, kvDim);
        var v = backend.Allocate(maxBatch, kvDim);
        var output = backend.Allocate(maxBatch, qDim);
        var keys = new float[layers, contexts, contextLength * kvDim]; // host copy of the cache
        var values = new float[layers, contexts, contextLength * kvDim];
        var rng = new Random(nHeads * 7 + headDim);
        foreach (var batch in batches)
        {
            var sequences = batch.SelectMany(r => Enumerable.Repeat(r.Sequence, r.Count)).ToArray();
            var positions = batch.SelectMany(r => Enumerable.Range(r.Start, r.Count)).ToArray();
            int n = positions.Length;
            backend.SetBatch(new int[n], positions, sequences);
            for (int layer = 0; layer < layers; layer++)
            {
                Fill(backend.View(q, n), rng, 2);
                Fill(backend.View(k, n), rng, 1);
                Fill(backend.View(v, n), rng, 1);
                var qHost = backend.View(q, n).ToArray();
                var kHost = AsStored(kType, backend.View(k, n).ToArray(), headDim);
                var vHost = AsStored(vType, backend.View(v, n).ToArray(), headDim);
                for (int t = 0; t < n; t++)
                {
                    kHost.AsSpan(t * kvDim, kvDim).CopyTo(Row(keys, layer, sequences[t], positions[t], kvDim));
                    vHost.AsSpan(t * kvDim, kvDim).CopyTo(Row(values, layer, sequences[t], positions[t], kvDim));
                }

                float scale = 1f / MathF.Sqrt(headDim);
                backend.StoreKv(layer, k, v);
                backend.Attention(layer, q, output, new AttentionShape(nHeads, nKvHeads, headDim, NoRope(headDim), 1e-5f));

                var row = new float[qDim];
                var expected = new float[qDim];
                int group = nHeads / nKvHeads;
                for (int t = 0; t < n; t++)
                {
                    backend.ReadRow(output, t, row);
                    int position = positions[t];
                    fixed (float* qp = &qHost[t * qDim], ep = expected)
                    fixed (float* kp = Row(keys, layer, sequences[t], 0, kvDim), vp = Row(values, layer, sequences[t], 0, kvDim))
                        for (int h = 0; h < nKvHeads; h++)
                            FlashAttention.AttendRef(qp + h * group * headDim, qDim, ep + h * group * headDim, qDim, &position, 1, group, headDim,
                                kp + h * headDim, vp + h * headDim, kvDim, scale);
                    for (int i = 0; i < qDim; i++)
                        if (!(MathF.Abs(expected[i] - row[i]) <= AttentionTolerance * (1 + MathF.Abs(expected[i]))))
                            Assert.Fail($"{kType}/{vType} batch [{string.Join(", ", batch)}], layer {layer}, token {t} (sequence {sequences[t]}, "
                                + $"position {position}), element {i}: expected {expected[i]}, got {row[i]}");
                }
            }
        }
    }

    /// <summary>
    /// A prefill batch through the tiled path, then a decode token, allocate nothing once warm (scratch and block plans are
    /// preallocated), whatever the cache type.
    /// </summary>
    [Theory]
    [InlineData(KvCacheType.F32, KvCacheType.F32)]
    [InlineData(KvCacheType.F16, KvCacheType.F16)]
    [InlineData(KvCacheType.Q8_0, KvCacheType.F16)]
    public void AttentionAllocatesNothing(KvCacheType kType, KvCacheType vType)
    {
        const int nHeads = 32, nKvHeads = 8, headDim = 64, n = 64;
        using var backend = new CpuBackend(2, n);
        backend.CreateKvCache(new KvCacheConfig(1, 1, 128, nKvHeads, headDim, kType, vType));
        var q = backend.Allocate(n, nHeads * headDim);
        var k = backend.Allocate(n, nKvHeads * headDim);
        var v = backend.Allocate(n, nKvHeads * headDim);
        var output = backend.Allocate(n, nHeads * headDim);
        var shape = new AttentionShape(nHeads, nKvHeads, headDim, NoRope(headDim), 1e-5f); // scale 1/sqrt(64) = 0.125
        int[] prefill = Enumerable.Range(0, n).ToArray(), zeros = new int[n], decode = [n], one = [0];
        void Step()
        {
            backend.SetBatch(zeros, prefill, zeros);
            backend.StoreKv(0, k, v);
            backend.Attention(0, q, output, shape);
            backend.SetBatch(one, decode, one);
            backend.StoreKv(0, k, v);
            backend.Attention(0, q, output, shape);
        }
        for (int i = 0; i < 50; i++) Step(); // warm up: JIT tiering

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) Step();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    /// <summary>A q8_0 cache needs whole blocks of 32 along the head: any other head size is refused with a message saying so.</summary>
    [Fact]
    public void Q8_0CacheRefusesHeadsThatAreNotWholeBlocks()
    {
        using var backend = new CpuBackend(1, 4);
        var e = Assert.Throws<NotSupportedException>(
            () => backend.CreateKvCache(new KvCacheConfig(1, 1, 8, 2, 80, KvCacheType.F16, KvCacheType.Q8_0)));
        Assert.Contains("multiple of 32", e.Message);
        Assert.Contains("80", e.Message);
        backend.CreateKvCache(new KvCacheConfig(1, 1, 8, 2, 80, KvCacheType.F16, KvCacheType.F16)); // f16 takes any head size
    }

    /// <summary>Rows of headDim floats as the cache gives them back: stored and read by the scalar reference conversions.</summary>
    private static float[] AsStored(KvCacheType type, float[] rows, int headDim)
    {
        long rowBytes = KvRows.RowBytes(type, headDim);
        var bytes = new byte[rowBytes];
        var result = new float[rows.Length];
        fixed (float* x = rows, y = result)
        fixed (byte* b = bytes)
            for (int o = 0; o < rows.Length; o += headDim)
            {
                KvRows.StoreRef(type, x + o, b, headDim);
                KvRows.LoadRef(type, b, 1, headDim, y + o, headDim);
            }
        return result;
    }

    /// <summary>Attention does not rotate; the shape still names a rotation.</summary>
    private static RopeConfig NoRope(int headDim) => new(headDim, 10000f, 1f, false, null);

    private static Span<float> Row(float[,,] cache, int layer, int sequence, int position, int kvDim)
    {
        int length = cache.GetLength(2);
        var all = System.Runtime.InteropServices.MemoryMarshal.CreateSpan(ref cache[layer, sequence, 0], length);
        return all[(position * kvDim)..];
    }

    private static void Fill(Span<float> x, Random rng, float scale)
    {
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
    }
}
