using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.BackendOps.Cases;

/// <summary>MATMUL_ADD: y = W·x; residual += y (attn_output and ffn_down with the residual add).</summary>
internal sealed class MatMulAddCase(GgmlType type, int rows, int cols, int n) : OpCase
{
    public override string Op => "MATMUL_ADD";
    public override string Type => TypeName(type);
    public override string Shape => $"m={rows},k={cols},n={n}";
    public override int Batch => n;

    public override List<Comparison> Run(Trio t, Random rng)
    {
        var w = t.Weight("w", type, rows, cols, Data.Uniform(rng, rows * cols));
        var x = t.Act(n, cols);
        var y = t.Act(n, rows);
        var r = t.Act(n, rows);
        t.Write(x, Data.Uniform(rng, n * cols));
        t.Write(r, Data.Uniform(rng, n * rows, 4f));
        t.SetTokens(n);
        t.Poison(y, n);
        t.Run((b, s) => b.MatMulAdd(w[s], x[s], y[s], r[s]));
        var (bound, gpu) = (Trio.CpuBound(type), t.GpuBound(n, type));
        return [.. t.Compare("y", y, n, bound, gpuBound: gpu), .. t.Compare("residual", r, n, bound, gpuBound: gpu)];
    }

    public static IEnumerable<OpCase> Grid(bool quick)
    {
        if (quick)
        {
            yield return new MatMulAddCase(GgmlType.Q4_0, 67, 256, 1);
            yield return new MatMulAddCase(GgmlType.Q6_K, 33, 256, 5);
            yield break;
        }
        foreach (var type in OpCase.WeightTypes)
        {
            foreach (int n in new[] { 1, 5 }) yield return new MatMulAddCase(type, 67, 256, n);
            foreach (int n in new[] { 1, 64 }) yield return new MatMulAddCase(type, 2048, 8192, n);   // 1B ffn_down
            yield return new MatMulAddCase(type, 4096, 14336, 1);                                    // 8B ffn_down
        }
    }
}

/// <summary>NORM_GATE_UP: xb = norm(x); up = Wup·xb; gate = silu(Wgate·xb) * up.</summary>
internal sealed class NormGateUpCase(GgmlType gateType, GgmlType upType, int dim, int ff, int n) : OpCase
{
    public override string Op => "NORM_GATE_UP";
    public override string Type => gateType == upType ? TypeName(gateType) : $"{TypeName(gateType)}+{TypeName(upType)}";
    public override string Shape => $"dim={dim},ff={ff},n={n}";
    public override int Batch => n;

    public override List<Comparison> Run(Trio t, Random rng)
    {
        var norm = t.Vector("ffn_norm", Data.Uniform(rng, dim));
        var gw = t.Weight("gate", gateType, ff, dim, Data.Uniform(rng, ff * dim));
        var uw = t.Weight("up", upType, ff, dim, Data.Uniform(rng, ff * dim));
        var x = t.Act(n, dim);
        var (xb, gate, up) = (t.Act(n, dim), t.Act(n, ff), t.Act(n, ff));
        t.Write(x, Data.Uniform(rng, n * dim, 2f));
        t.SetTokens(n);
        foreach (var a in new[] { xb, gate, up }) t.Poison(a, n);
        t.Run((b, s) => b.NormGateUp(x[s], new GateUpWeights(norm[s], gw[s], uw[s]), 1e-5f, xb[s], gate[s], up[s]));
        var (bound, gpu) = (Trio.CpuBound(gateType, upType), t.GpuBound(n, gateType, upType));
        return [.. t.Compare("xb", xb, n, Bound.F32), .. t.Compare("gate", gate, n, bound, gpuBound: gpu),
            .. t.Compare("up", up, n, bound, gpuBound: gpu)];
    }

    public static IEnumerable<OpCase> Grid(bool quick)
    {
        if (quick)
        {
            yield return new NormGateUpCase(GgmlType.Q8_0, GgmlType.Q8_0, 256, 96, 1);
            yield return new NormGateUpCase(GgmlType.Q4_K, GgmlType.Q6_K, 256, 64, 5);
            yield break;
        }
        foreach (var type in OpCase.WeightTypes)
        {
            foreach (int n in new[] { 1, 5 }) yield return new NormGateUpCase(type, type, 256, 176, n);
            foreach (int n in new[] { 1, 64 }) yield return new NormGateUpCase(type, type, 2048, 8192, n);   // 1B
            yield return new NormGateUpCase(type, type, 4096, 14336, 1);                                  // 8B
        }
        yield return new NormGateUpCase(GgmlType.Q4_K, GgmlType.Q6_K, 256, 176, 3);
        yield return new NormGateUpCase(GgmlType.F16, GgmlType.F16, 4096, 256, 5); // 4 tokens x 4096 overflow the fused norm
    }
}

/// <summary>NORM_MATMUL_ROWS: the output head over selected rows (the GPU fuses the one-row case into one launch).</summary>
internal sealed class NormMatMulRowsCase(GgmlType type, int dim, int vocab, int n, int[] rows) : OpCase
{
    public override string Op => "NORM_MATMUL_ROWS";
    public override string Type => TypeName(type);
    public override string Shape => $"dim={dim},vocab={vocab},n={n},rows=[{string.Join(' ', rows)}]";
    public override int Batch => n;

    public override List<Comparison> Run(Trio t, Random rng)
    {
        var norm = t.Vector("output_norm", Data.Uniform(rng, dim));
        var w = t.Weight("output", type, vocab, dim,
            (long)vocab * dim > 1 << 22 ? Data.UniformLarge(vocab, vocab, dim) : Data.Uniform(rng, vocab * dim));
        var x = t.Act(n, dim);
        var (xRows, y) = (t.Act(n, dim), t.Act(n, vocab));
        t.Write(x, Data.Uniform(rng, n * dim, 3f));
        t.SetTokens(n);
        t.Poison(xRows, rows.Length);
        t.Poison(y, rows.Length);
        t.Run((b, s) => b.NormMatMulRows(x[s], rows, norm[s], 1e-5f, w[s], xRows[s], y[s]));
        return [.. t.Compare("xrows", xRows, rows.Length, Bound.F32),
            .. t.Compare("y", y, rows.Length, Trio.CpuBound(type), gpuBound: t.GpuBound(rows.Length, type))];
    }

    public static IEnumerable<OpCase> Grid(bool quick)
    {
        if (quick)
        {
            yield return new NormMatMulRowsCase(GgmlType.Q8_0, 96, 37, 6, [3]);
            yield return new NormMatMulRowsCase(GgmlType.BF16, 96, 37, 6, [1, 5, 0]);
            yield break;
        }
        foreach (var type in OpCase.WeightTypes)
        {
            yield return new NormMatMulRowsCase(type, 256, 37, 6, [5]);
            yield return new NormMatMulRowsCase(type, 256, 37, 6, [1, 5, 0]);
        }
        foreach (var type in new[] { GgmlType.Q8_0, GgmlType.Q6_K })
            yield return new NormMatMulRowsCase(type, 2048, 128256, 3, [2]); // the 1B output head
    }
}
