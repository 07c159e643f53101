using Infer.Runtime.Gguf;

namespace Infer.Runtime.Backend;

/// <summary>
/// A decorator's base: every operation goes to <see cref="Inner"/>, except the fused ones, which run as their primitives
/// (<see cref="ComposedOps"/>) through this object, so a subclass that overrides a primitive sees every call of it (each of Q, K
/// and V's matmuls, for one). The inner backend's own fusion is lost: meant for tools, not for serving.
/// </summary>
public abstract class ForwardingBackend(IBackend inner) : IBackend
{
    /// <summary>The backend every call is forwarded to.</summary>
    public IBackend Inner { get; } = inner;

    public virtual string Name => Inner.Name;
    public virtual string Description => Inner.Description;
    public virtual IWeight LoadWeight(GgufTensor tensor) => Inner.LoadWeight(tensor);
    public virtual IWeight LoadEmbeddingTable(GgufTensor tensor) => Inner.LoadEmbeddingTable(tensor);
    public virtual IActivation Allocate(int rows, int cols) => Inner.Allocate(rows, cols);
    public virtual IActivation AllocateShared(IActivation parent, int rows, int cols) => Inner.AllocateShared(parent, rows, cols);
    public virtual bool SupportsKvCacheType(KvCacheType type) => Inner.SupportsKvCacheType(type);
    public virtual void CreateKvCache(KvCacheConfig config) => Inner.CreateKvCache(config);

    public virtual void SetBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> sequences) =>
        Inner.SetBatch(tokens, positions, sequences);

    public virtual void Embed(IWeight table, IActivation x) => Inner.Embed(table, x);
    public virtual void RmsNorm(IActivation x, IWeight weight, float eps, IActivation y, int rows = -1) => Inner.RmsNorm(x, weight, eps, y, rows);
    public virtual void MatMul(IWeight w, IActivation x, IActivation y, int rows = -1) => Inner.MatMul(w, x, y, rows);
    public virtual void AddBias(IActivation y, IWeight bias) => Inner.AddBias(y, bias);
    public virtual void Rope(IActivation x, int headDim, RopeConfig rope) => Inner.Rope(x, headDim, rope);
    public virtual void StoreKv(int layer, IActivation k, IActivation v) => Inner.StoreKv(layer, k, v);
    public virtual void Attention(int layer, IActivation q, IActivation output, AttentionShape shape) => Inner.Attention(layer, q, output, shape);
    public virtual void SwiGlu(IActivation gate, IActivation up) => Inner.SwiGlu(gate, up);
    public virtual void Add(IActivation x, IActivation y) => Inner.Add(x, y);
    public virtual void GatherRows(IActivation src, ReadOnlySpan<int> rows, IActivation dst) => Inner.GatherRows(src, rows, dst);

    public void NormQkvRope(int layer, IActivation x, QkvWeights w, AttentionShape shape, IActivation xb, IActivation q, IActivation k,
        IActivation v) =>
        ComposedOps.NormQkvRope(this, layer, x, w, shape, xb, q, k, v);

    public void MatMulAdd(IWeight w, IActivation x, IActivation y, IActivation residual) => ComposedOps.MatMulAdd(this, w, x, y, residual);

    public void NormGateUp(IActivation x, GateUpWeights w, float eps, IActivation xb, IActivation gate, IActivation up) =>
        ComposedOps.NormGateUp(this, x, w, eps, xb, gate, up);

    public void NormMatMulRows(IActivation x, ReadOnlySpan<int> rows, IWeight norm, float eps, IWeight w, IActivation xRows, IActivation y) =>
        ComposedOps.NormMatMulRows(this, x, rows, norm, eps, w, xRows, y);

    public virtual void ReadRow(IActivation x, int row, Span<float> destination) => Inner.ReadRow(x, row, destination);
    public virtual void ReadRows(IActivation x, int rows, Span<float> destination) => Inner.ReadRows(x, rows, destination);
    public virtual void WriteRows(IActivation x, ReadOnlySpan<float> source) => Inner.WriteRows(x, source);

    public void Dispose()
    {
        Inner.Dispose();
        GC.SuppressFinalize(this);
    }
}
