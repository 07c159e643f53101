using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.BackendOps.Cases;

/// <summary>The attention geometry of a fused case: model width, heads, KV heads, head size.</summary>
internal readonly record struct Geometry(int Dim, int Heads, int KvHeads, int HeadDim)
{
    public int QDim => Heads * HeadDim;
    public int KvDim => KvHeads * HeadDim;
    public override string ToString() => $"dim={Dim},heads={Heads},kv={KvHeads},head={HeadDim}";

    public static readonly Geometry Small = new(256, 4, 2, 64);
    public static readonly Geometry Llama1B = new(2048, 32, 8, 64);
    public static readonly Geometry Llama8B = new(4096, 32, 8, 128);
    public static readonly Geometry SmolLM2 = new(960, 15, 5, 64); // SmolLM2-360M: rows K-quants cannot take
}

/// <summary>
/// NORM_QKV_ROPE: xb = norm(x); q, k, v = Wq·xb (+ bq), ...; per-head q/k norms (qwen3); RoPE; k, v stored. Then ATTENTION over
/// the cache, so what was stored is checked too. Variants: plain (the GPU's one launch), biases (qwen2), q/k norms (qwen3),
/// Wv in another format (Q4_K_M keeps attn_v in Q6_K, Q4_K_S in Q5_K, Q5_K_M in Q6_K, IQ4_NL in Q5_K, the Q3_K, Q2_K and IQ4_XS
/// files in Q3_K to Q5_K: see GpuKernels.MixedQkv; at SmolLM2's width Q4_K_M's Q4_K and Q6_K fall back to Q5_0 and Q8_0, Q5_K_M's
/// Q5_K to Q5_1); the 8B width with several tokens overflows the GPU's fused norm. The cache is f32, or f16 (llama.cpp's default,
/// which the GPU's fused epilogue rounds as it stores) or q8_0 (quantized in blocks after the epilogue) where the shape says so.
/// </summary>
internal sealed class NormQkvRopeCase(GgmlType qkType, GgmlType vType, Geometry g, bool biases, bool qkNorm, int context, int n,
    KvCacheType cache = KvCacheType.F32) : OpCase
{
    public override string Op => "NORM_QKV_ROPE";
    public override string Type => qkType == vType ? TypeName(qkType) : $"{TypeName(qkType)}+{TypeName(vType)}";
    public override string Shape =>
        $"{g},{(biases ? "bias," : "")}{(qkNorm ? "qknorm," : "")}ctx={context},n={n}"
        + (cache == KvCacheType.F32 ? "" : $",cache={KvCacheTypes.Name(cache)}");
    public override int Batch => Math.Max(n, Math.Min(context, 512));

    public override List<Comparison> Run(Trio t, Random rng)
    {
        // qwen2/qwen3 rotate NeoX pairs; llama rotates adjacent pairs with llama3's frequency factors.
        bool neox = biases || qkNorm;
        float[]? factors = neox ? null : [.. Enumerable.Range(0, g.HeadDim / 2).Select(i => 1f + i % 7)];
        var shape = new AttentionShape(g.Heads, g.KvHeads, g.HeadDim, new RopeConfig(g.HeadDim, 500000f, 1f, neox, factors), 1e-5f);
        var wq = Matrix(t, rng, "wq", qkType, g.QDim, g.Dim);
        var wk = Matrix(t, rng, "wk", qkType, g.KvDim, g.Dim);
        var wv = Matrix(t, rng, "wv", vType, g.KvDim, g.Dim);
        var norm = t.Vector("attn_norm", Data.Uniform(rng, g.Dim));
        var bq = biases ? t.Vector("bq", Data.Uniform(rng, g.QDim)) : null;
        var bk = biases ? t.Vector("bk", Data.Uniform(rng, g.KvDim)) : null;
        var bv = biases ? t.Vector("bv", Data.Uniform(rng, g.KvDim)) : null;
        var qn = qkNorm ? t.Vector("q_norm", Data.Uniform(rng, g.HeadDim)) : null;
        var kn = qkNorm ? t.Vector("k_norm", Data.Uniform(rng, g.HeadDim)) : null;
        QkvWeights Side(int s) => new(norm[s], wq[s], wk[s], wv[s], bq?[s], bk?[s], bv?[s], qn?[s], kn?[s]);

        t.CreateKvCache(new KvCacheConfig(2, 1, context + n, g.KvHeads, g.HeadDim, cache, cache));
        var kf = t.Act(Batch, g.KvDim);
        var vf = t.Act(Batch, g.KvDim);
        for (int p0 = 0; p0 < context; p0 += 512)
        {
            int c = Math.Min(512, context - p0);
            t.SetBatch(new int[c], [.. Enumerable.Range(p0, c)], new int[c]);
            t.Write(kf, Data.Uniform(rng, c * g.KvDim));
            t.Write(vf, Data.Uniform(rng, c * g.KvDim));
            t.Run((b, s) => b.StoreKv(1, kf[s], vf[s]));
        }

        var x = t.Act(n, g.Dim);
        var (xb, q, k, v, o) = (t.Act(n, g.Dim), t.Act(n, g.QDim), t.Act(n, g.KvDim), t.Act(n, g.KvDim), t.Act(n, g.QDim));
        t.Write(x, Data.Uniform(rng, n * g.Dim, 2f));
        t.SetBatch(new int[n], [.. Enumerable.Range(context, n)], new int[n]);
        foreach (var a in new[] { xb, q, k, v, o }) t.Poison(a, n);
        t.Run((b, s) =>
        {
            b.NormQkvRope(1, x[s], Side(s), shape, xb[s], q[s], k[s], v[s]);
            b.Attention(1, q[s], o[s], shape);
        });
        var (bound, gpu) = (Trio.CpuBound(qkType, vType), t.GpuBound(n, qkType, vType));
        return [.. t.Compare("xb", xb, n, Bound.F32), .. t.Compare("q", q, n, bound, gpuBound: gpu), .. t.Compare("k", k, n, bound, gpuBound: gpu),
            .. t.Compare("v", v, n, bound, gpuBound: gpu), .. t.Compare("attention", o, n, bound, gpuBound: gpu)];
    }

    /// <summary>
    /// Uniform weights scaled by 1/sqrt(cols), as trained projections keep q·k scores of order one: with unscaled weights the
    /// softmax is so sharp that the CPU backend's rounding of activations (its bound) would be amplified past it.
    /// </summary>
    private static Weight3 Matrix(Trio t, Random rng, string name, GgmlType type, int rows, int cols) =>
        t.Weight(name, type, rows, cols, Data.Uniform(rng, rows * cols, 1f / MathF.Sqrt(cols)));

    public static IEnumerable<OpCase> Grid(bool quick)
    {
        var s = Geometry.Small;
        if (quick)
        {
            yield return new NormQkvRopeCase(GgmlType.Q8_0, GgmlType.Q8_0, s, false, false, 0, 1);
            yield return new NormQkvRopeCase(GgmlType.Q4_K, GgmlType.Q6_K, s, false, false, 3, 5);
            yield return new NormQkvRopeCase(GgmlType.BF16, GgmlType.BF16, s, true, false, 0, 2);
            yield return new NormQkvRopeCase(GgmlType.F16, GgmlType.F16, s, false, true, 2, 2);
            yield return new NormQkvRopeCase(GgmlType.Q8_0, GgmlType.Q8_0, s, false, false, 3, 2, KvCacheType.F16);
            yield return new NormQkvRopeCase(GgmlType.Q4_0, GgmlType.Q4_0, s, false, false, 3, 2, KvCacheType.Q8_0);
            yield return new NormQkvRopeCase(GgmlType.Q3_K, GgmlType.Q5_K, s, false, false, 3, 1, KvCacheType.F16); // Q3_K_M
            yield return new NormQkvRopeCase(GgmlType.Q2_K, GgmlType.Q4_K, s, false, false, 3, 5);                  // Q2_K
            yield break;
        }
        foreach (var type in WeightTypes)
        {
            foreach (int n in new[] { 1, 5 }) yield return new NormQkvRopeCase(type, type, s, false, false, 9, n);
            yield return new NormQkvRopeCase(type, type, s, true, false, 9, 3);
            yield return new NormQkvRopeCase(type, type, s, false, true, 9, 3);
            yield return new NormQkvRopeCase(type, type, s, true, true, 9, 3);
            yield return new NormQkvRopeCase(type, type, Geometry.Llama1B, false, false, 300, 1);
            yield return new NormQkvRopeCase(type, type, Geometry.Llama1B, false, false, 0, 64);
            yield return new NormQkvRopeCase(type, type, Geometry.Llama8B, false, false, 300, 1);
            yield return new NormQkvRopeCase(type, type, Geometry.Llama8B, false, false, 0, 8);
            yield return new NormQkvRopeCase(type, type, Geometry.Llama1B, false, false, 300, 1, KvCacheType.F16);
            yield return new NormQkvRopeCase(type, type, Geometry.Llama1B, false, false, 300, 1, KvCacheType.Q8_0);
        }
        yield return new NormQkvRopeCase(GgmlType.Q4_K, GgmlType.Q6_K, s, false, false, 9, 3);
        yield return new NormQkvRopeCase(GgmlType.Q4_K, GgmlType.Q6_K, Geometry.Llama1B, false, false, 300, 1);
        yield return new NormQkvRopeCase(GgmlType.Q4_K, GgmlType.Q5_K, Geometry.Llama1B, false, false, 300, 1); // Q4_K_S
        yield return new NormQkvRopeCase(GgmlType.Q5_K, GgmlType.Q6_K, Geometry.Llama1B, false, false, 300, 1); // Q5_K_M
        yield return new NormQkvRopeCase(GgmlType.Q3_K, GgmlType.Q4_K, Geometry.Llama1B, false, false, 300, 1); // Q3_K_M
        yield return new NormQkvRopeCase(GgmlType.Q3_K, GgmlType.Q5_K, Geometry.Llama1B, false, false, 300, 1); // Q3_K_M/L
        yield return new NormQkvRopeCase(GgmlType.Q2_K, GgmlType.Q3_K, Geometry.Llama1B, false, false, 300, 1); // Q2_K, GQA < 4
        yield return new NormQkvRopeCase(GgmlType.Q2_K, GgmlType.Q4_K, Geometry.Llama1B, false, false, 300, 1); // Q2_K
        yield return new NormQkvRopeCase(GgmlType.Q2_K, GgmlType.Q5_K, Geometry.Llama8B, false, false, 300, 1); // Q2_K of 70B
        yield return new NormQkvRopeCase(GgmlType.IQ4_XS, GgmlType.Q5_K, Geometry.Llama1B, false, false, 300, 1); // IQ4_XS
        yield return new NormQkvRopeCase(GgmlType.IQ4_NL, GgmlType.Q5_K, Geometry.Llama1B, false, false, 300, 1); // IQ4_NL
        yield return new NormQkvRopeCase(GgmlType.Q5_0, GgmlType.Q8_0, Geometry.SmolLM2, false, false, 300, 1); // Q4_K_M
        yield return new NormQkvRopeCase(GgmlType.Q5_1, GgmlType.Q8_0, Geometry.SmolLM2, false, false, 0, 5); // Q5_K_M
        yield return new NormQkvRopeCase(GgmlType.Q4_0, GgmlType.Q8_0, Geometry.Llama8B, true, true, 17, 2);
    }
}
