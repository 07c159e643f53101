using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.BackendOps.Cases;

/// <summary>EMBED: x[t] = table[tokens[t]], decoded from the table's type.</summary>
internal sealed class EmbedCase(GgmlType type, int vocab, int cols, int n) : OpCase
{
    public override string Op => "EMBED";
    public override string Type => TypeName(type);
    public override string Shape => $"vocab={vocab},cols={cols},n={n}";
    public override int Batch => n;

    public override List<Comparison> Run(Trio t, Random rng)
    {
        var table = t.Weight("table", type, vocab, cols, Data.Uniform(rng, vocab * cols));
        var x = t.Act(n, cols);
        var tokens = Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray();
        t.SetBatch(tokens, Enumerable.Range(0, n).ToArray(), new int[n]);
        t.Poison(x, n);
        t.Run((b, s) => b.Embed(table[s], x[s]));
        return [.. t.Compare("x", x, n, Trio.CpuBound(type))];
    }
}

/// <summary>RMS_NORM over groups of <c>group</c> elements (one group per row, or per head as qwen3's q/k norms), in place or not.</summary>
internal sealed class RmsNormCase(int group, int groups, int n, bool inPlace) : OpCase
{
    public override string Op => "RMS_NORM";
    public override string Shape => $"group={group},groups={groups},n={n},inplace={(inPlace ? 1 : 0)}";
    public override int Batch => n;

    public override List<Comparison> Run(Trio t, Random rng)
    {
        int cols = group * groups;
        var w = t.Vector("norm", Data.Uniform(rng, group));
        var x = t.Act(n, cols);
        var y = inPlace ? x : t.Act(n, cols);
        t.Write(x, Data.Uniform(rng, n * cols, 3f));
        t.SetTokens(n);
        if (!inPlace) t.Poison(y, n);
        t.Run((b, s) => b.RmsNorm(x[s], w[s], 1e-5f, y[s]));
        return [.. t.Compare("y", y, n, null)];
    }
}

/// <summary>The element-wise operations: ADD (x += y), ADD_BIAS (y += bias), SWIGLU (gate = silu(gate) * up).</summary>
internal sealed class ElementwiseCase(string op, int cols, int n) : OpCase
{
    public override string Op => op;
    public override string Shape => $"cols={cols},n={n}";
    public override int Batch => n;

    public override List<Comparison> Run(Trio t, Random rng)
    {
        var x = t.Act(n, cols);
        var y = t.Act(n, cols);
        t.Write(x, Data.Uniform(rng, n * cols, 4f));
        t.Write(y, Data.Uniform(rng, n * cols, 4f));
        t.SetTokens(n);
        switch (op)
        {
            case "ADD":
                t.Run((b, s) => b.Add(x[s], y[s]));
                break;
            case "SWIGLU":
                t.Run((b, s) => b.SwiGlu(x[s], y[s]));
                break;
            default:
                var bias = t.Vector("bias", Data.Uniform(rng, cols));
                t.Run((b, s) => b.AddBias(x[s], bias[s]));
                break;
        }
        return [.. t.Compare("x", x, n, null)];
    }
}

/// <summary>GATHER_ROWS: dst[i] = src[rows[i]].</summary>
internal sealed class GatherCase(int cols, int n, int[] rows) : OpCase
{
    public override string Op => "GATHER_ROWS";
    public override string Shape => $"cols={cols},n={n},rows=[{string.Join(' ', rows)}]";
    public override int Batch => n;

    public override List<Comparison> Run(Trio t, Random rng)
    {
        var src = t.Act(n, cols);
        var dst = t.Act(n, cols);
        t.Write(src, Data.Uniform(rng, n * cols));
        t.SetTokens(n);
        t.Poison(dst, rows.Length);
        t.Run((b, s) => b.GatherRows(src[s], rows, dst[s]));
        return [.. t.Compare("dst", dst, rows.Length, null)];
    }
}

/// <summary>ROPE of every head of x at the batch positions (normal or NeoX pairs, partial rotation, llama3 frequency factors).</summary>
internal sealed class RopeCase(int headDim, int dims, int heads, bool neox, bool factors, float freqScale, int[] positions) : OpCase
{
    public override string Op => "ROPE";
    public override string Shape =>
        $"head={headDim},dims={dims},heads={heads},{(neox ? "neox" : "normal")}{(factors ? ",factors" : "")}"
        + $"{(freqScale != 1 ? $",scale={freqScale}" : "")},n={positions.Length},maxpos={positions.Max()}";
    public override int Batch => positions.Length;

    public override List<Comparison> Run(Trio t, Random rng)
    {
        int n = positions.Length, cols = heads * headDim;
        float[]? ff = factors ? [.. Enumerable.Range(0, dims / 2).Select(i => 1f + i % 5 * 0.75f)] : null;
        var rope = new RopeConfig(dims, 500000f, freqScale, neox, ff);
        // The GPU's cos/sin table covers the cache's positions.
        t.CreateKvCache(new KvCacheConfig(1, 1, positions.Max() + 1, 1, headDim));
        var x = t.Act(n, cols);
        t.Write(x, Data.Uniform(rng, n * cols));
        t.SetBatch(new int[n], positions, new int[n]);
        t.Run((b, s) => b.Rope(x[s], headDim, rope));
        return [.. t.Compare("x", x, n, null)];
    }
}
