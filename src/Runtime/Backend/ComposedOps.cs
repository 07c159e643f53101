namespace Infer.Runtime.Backend;

/// <summary>
/// The fused operations of <see cref="IBackend"/> written as the primitives they stand for. This is their definition: a
/// backend that fuses must compute what these compute. The CPU backend runs them as they are (its primitives already share
/// the quantized input of Q, K and V), and the profiling decorator runs them through itself to time every primitive.
/// </summary>
public static class ComposedOps
{
    /// <summary><see cref="IBackend.NormQkvRope"/> as primitives.</summary>
    public static void NormQkvRope(IBackend b, int layer, IActivation x, QkvWeights w, AttentionShape s,
        IActivation xb, IActivation q, IActivation k, IActivation v)
    {
        b.RmsNorm(x, w.Norm, s.Eps, xb);
        b.MatMul(w.Wq, xb, q);
        b.MatMul(w.Wk, xb, k);
        b.MatMul(w.Wv, xb, v);
        if (w.Bq is not null)
        {
            b.AddBias(q, w.Bq);
            b.AddBias(k, w.Bk!);
            b.AddBias(v, w.Bv!);
        }
        if (w.QNorm is not null)
        {
            b.RmsNorm(q, w.QNorm, s.Eps, q); // per head: q_norm(q.view(heads, headDim))
            b.RmsNorm(k, w.KNorm!, s.Eps, k);
        }
        b.Rope(q, s.HeadDim, s.Rope);
        b.Rope(k, s.HeadDim, s.Rope);
        b.StoreKv(layer, k, v);
    }

    /// <summary><see cref="IBackend.MatMulAdd"/> as primitives.</summary>
    public static void MatMulAdd(IBackend b, IWeight w, IActivation x, IActivation y, IActivation residual)
    {
        b.MatMul(w, x, y);
        b.Add(residual, y);
    }

    /// <summary><see cref="IBackend.NormGateUp"/> as primitives.</summary>
    public static void NormGateUp(IBackend b, IActivation x, GateUpWeights w, float eps, IActivation xb, IActivation gate, IActivation up)
    {
        b.RmsNorm(x, w.Norm, eps, xb);
        b.MatMul(w.Gate, xb, gate);
        b.MatMul(w.Up, xb, up);
        b.SwiGlu(gate, up);
    }

    /// <summary><see cref="IBackend.NormMatMulRows"/> as primitives.</summary>
    public static void NormMatMulRows(IBackend b, IActivation x, ReadOnlySpan<int> rows, IWeight norm, float eps, IWeight w,
        IActivation xRows, IActivation y)
    {
        b.GatherRows(x, rows, xRows);
        b.RmsNorm(xRows, norm, eps, xRows, rows.Length);
        b.MatMul(w, xRows, y, rows.Length);
    }
}
