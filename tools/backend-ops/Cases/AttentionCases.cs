using Infer.Runtime.Backend;

namespace Infer.BackendOps.Cases;

/// <summary>
/// STORE_KV then ATTENTION over the cache: each sequence s first holds <c>contexts[s]</c> positions of random keys and values
/// (stored in batches), then one batch of <c>queries</c> tokens per sequence continues it (a decode step when 1, a prefill
/// chunk when more), its own k and v stored before attending. Several sequences share the batch; GQA groups of
/// heads / kvHeads; long contexts make the GPU split positions (flash-decoding) and combine. The cache is f32, f16 (llama.cpp's
/// default) or q8_0 on both sides, so both compare attention over the same rounded keys and values.
/// </summary>
internal sealed class AttentionCase(int heads, int kvHeads, int headDim, int[] contexts, int queries, KvCacheType cache = KvCacheType.F32)
    : OpCase
{
    private const int Layers = 2, Layer = 1, FillBatch = 512;

    public override string Op => "ATTENTION";
    public override string Shape =>
        $"heads={heads},kv={kvHeads},head={headDim},ctx=[{string.Join(' ', contexts)}],q={queries}"
        + (cache == KvCacheType.F32 ? "" : $",cache={KvCacheTypes.Name(cache)}");
    public override int Batch => Math.Max(contexts.Length * queries, Math.Min(FillBatch, contexts.Max()));

    public override List<Comparison> Run(Trio t, Random rng)
    {
        int kvDim = kvHeads * headDim, qDim = heads * headDim, seqs = contexts.Length;
        var shape = new AttentionShape(heads, kvHeads, headDim, new RopeConfig(headDim, 10000f, 1f, false, null), 1e-5f);
        t.CreateKvCache(new KvCacheConfig(Layers, seqs, contexts.Max() + queries, kvHeads, headDim, cache, cache));
        int rows = Batch;
        var q = t.Act(rows, qDim);
        var k = t.Act(rows, kvDim);
        var v = t.Act(rows, kvDim);
        var o = t.Act(rows, qDim);

        // The contexts: random keys and values at positions 0..contexts[s]-1, in batches.
        for (int s = 0; s < seqs; s++)
            for (int p0 = 0; p0 < contexts[s]; p0 += FillBatch)
            {
                int n = Math.Min(FillBatch, contexts[s] - p0);
                t.SetBatch(new int[n], [.. Enumerable.Range(p0, n)], Enumerable.Repeat(s, n).ToArray());
                t.Write(k, Data.Uniform(rng, n * kvDim));
                t.Write(v, Data.Uniform(rng, n * kvDim));
                t.Run((b, side) => b.StoreKv(Layer, k[side], v[side]));
            }

        // One batch: `queries` tokens of each sequence, sequence-major.
        int total = seqs * queries;
        var positions = new int[total];
        var sequences = new int[total];
        for (int s = 0; s < seqs; s++)
            for (int i = 0; i < queries; i++)
            {
                positions[s * queries + i] = contexts[s] + i;
                sequences[s * queries + i] = s;
            }
        t.SetBatch(new int[total], positions, sequences);
        t.Write(q, Data.Uniform(rng, total * qDim));
        t.Write(k, Data.Uniform(rng, total * kvDim));
        t.Write(v, Data.Uniform(rng, total * kvDim));
        t.Poison(o, total);
        t.Run((b, side) =>
        {
            b.StoreKv(Layer, k[side], v[side]);
            b.Attention(Layer, q[side], o[side], shape);
        });
        return [.. t.Compare("o", o, total, null)];
    }

    public static IEnumerable<OpCase> Grid(bool quick)
    {
        if (quick)
        {
            yield return new AttentionCase(4, 2, 64, [17], 1);
            yield return new AttentionCase(2, 1, 32, [0], 5);
            yield return new AttentionCase(4, 2, 64, [3, 9], 1);
            yield return new AttentionCase(4, 2, 64, [3, 9], 1, KvCacheType.F16);
            yield return new AttentionCase(2, 1, 32, [0], 5, KvCacheType.F16);
            yield return new AttentionCase(4, 2, 64, [3, 9], 1, KvCacheType.Q8_0);
            yield break;
        }
        (int H, int Kv, int D)[] shapes = [(2, 1, 32), (4, 4, 64), (32, 8, 64), (32, 8, 128), (14, 2, 64), (16, 8, 128)];
        foreach (var (h, kv, d) in shapes)
        {
            yield return new AttentionCase(h, kv, d, [0], 7);           // a prompt
            yield return new AttentionCase(h, kv, d, [100], 64);        // a prompt chunk after a context
            foreach (int ctx in new[] { 0, 1, 17, 1000, 4100 })
                yield return new AttentionCase(h, kv, d, [ctx], 1);     // decode
            yield return new AttentionCase(h, kv, d, [5, 300, 2000], 1); // three sequences decoding in one batch
            yield return new AttentionCase(h, kv, d, [40, 3], 4);       // two sequences' chunks in one batch
            foreach (int ctx in new[] { 17, 4100 })
                yield return new AttentionCase(h, kv, d, [ctx], 1, KvCacheType.F16); // decode over the default f16 cache
            yield return new AttentionCase(h, kv, d, [100], 64, KvCacheType.F16);
            if (d % 32 == 0)
            {
                yield return new AttentionCase(h, kv, d, [4100], 1, KvCacheType.Q8_0);
                yield return new AttentionCase(h, kv, d, [40, 3], 4, KvCacheType.Q8_0);
            }
        }
    }
}
