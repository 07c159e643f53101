using Infer.Runtime.Gguf;

namespace Infer.BackendOps.Cases;

/// <summary>
/// MUL_MAT: y[t] = W · x[t] for n tokens, W (m, k) of <c>type</c>. The output rows are 3 wider than W has rows (a stride
/// that differs from m); only the first m columns are compared, and the last 3 must stay untouched on the GPU.
/// </summary>
internal sealed class MatMulCase(GgmlType type, int m, int k, int n) : OpCase
{
    public override string Op => "MUL_MAT";
    public override string Type => TypeName(type);
    public override string Shape => $"m={m},k={k},n={n}";
    public override int Batch => n;

    /// <summary>The weight values are drawn once per (m, k) and shared by the cases of other types and token counts.</summary>
    private static readonly Dictionary<(int, int), float[]> Weights = [];

    public override List<Comparison> Run(Trio t, Random rng)
    {
        float[] values;
        lock (Weights)
        {
            if (!Weights.TryGetValue((m, k), out values!))
            {
                if (Weights.Count > 8) Weights.Clear();
                Weights[(m, k)] = values = (long)m * k > 1 << 20 ? Data.UniformLarge(m + k, m, k) : Data.Uniform(rng, m * k);
            }
        }
        var w = t.Weight("w", type, m, k, values);
        var x = t.Act(n, k);
        var y = t.Act(n, m + 3);
        float[] xs = (long)n * k > 1 << 20 ? Data.UniformLarge(n, n, k) : Data.Uniform(rng, n * k);
        t.Write(x, xs);
        t.SetTokens(n);
        t.Poison(y, n);
        t.Gpu.WriteRows(y[Trio.GpuSide], PoisonWithGap(y.Cols, n));
        t.Run((b, s) => b.MatMul(w[s], x[s], y[s]));
        var result = t.Compare("y", y, n, Trio.CpuBound(type), cols: m, gpuBound: t.GpuBound(n, type), floor: TermScales(values, xs))
            .ToList();
        var gpu = t.Read(Trio.GpuSide, y, n);
        bool untouched = true;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < 3; j++) untouched &= gpu[i * (m + 3) + m + j] == 7f;
        result.Add(new Comparison("gpu y past the rows untouched", untouched ? 0 : double.NaN, Bound.F32));
        return result;
    }

    /// <summary>
    /// Per output (token-major, as the compared rows) the typical size of a sum of its k products, Σ|w·x| / √k: the quantized
    /// comparisons' floor (<see cref="Comparison.Normalized"/>); null for the large shapes, whose many outputs need none.
    /// </summary>
    private float[]? TermScales(float[] w, float[] x)
    {
        if ((long)m * n * k > 1 << 24) return null;
        var s = new float[n * m];
        for (int t = 0; t < n; t++)
            for (int r = 0; r < m; r++)
            {
                double sum = 0;
                for (int i = 0; i < k; i++) sum += Math.Abs((double)w[(long)r * k + i] * x[(long)t * k + i]);
                s[t * m + r] = (float)(sum / Math.Sqrt(k));
            }
        return s;
    }

    /// <summary>NaN in the m columns the operation writes, 7 in the 3 past them.</summary>
    private static float[] PoisonWithGap(int cols, int n)
    {
        var rows = new float[n * cols];
        rows.AsSpan().Fill(float.NaN);
        for (int i = 0; i < n; i++) rows.AsSpan(i * cols + cols - 3, 3).Fill(7f);
        return rows;
    }

    /// <summary>
    /// The grid: every weight type at its own row lengths (odd and partial token tiles: 1, 3, 4, 5, 17 tokens) and
    /// rows (1, 7, 67); then the shapes of Llama-3.2-1B and Llama-3.1-8B at decode and prefill token counts.
    /// </summary>
    public static IEnumerable<OpCase> Grid(bool quick)
    {
        foreach (var type in WeightTypes)
            foreach (int k in Cols(type, quick))
                foreach (int m in quick ? new[] { 7, 33 } : [1, 7, 67])
                    foreach (int n in quick ? new[] { 1, 5 } : [1, 3, 4, 5, 17])
                        yield return new MatMulCase(type, m, k, n);
        if (quick) yield break;
        foreach (var type in WeightTypes)
        {
            foreach (int n in new[] { 1, 8, 512 }) yield return new MatMulCase(type, 2048, 2048, n);  // 1B attn_q
            foreach (int n in new[] { 1, 64 }) yield return new MatMulCase(type, 4096, 14336, n);     // 8B ffn_down
            yield return new MatMulCase(type, 8192, 2048, 1);                                       // 1B ffn_gate
            yield return new MatMulCase(type, 128256, 2048, 1);                                     // 1B output
        }
    }
}
