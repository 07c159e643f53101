using Infer.Runtime.Gguf;

namespace Infer.Runtime.Backend;

/// <summary>A weight uploaded to (or mapped for) a backend: a matrix [Rows, Cols] (Cols contiguous) or a vector [Cols].</summary>
public interface IWeight
{
    string Name { get; }
    GgmlType Type { get; }
    int Rows { get; }
    int Cols { get; }
}

/// <summary>A float32 activation buffer [Rows, Cols] owned by the backend (row-major, a row per token).</summary>
public interface IActivation
{
    int Rows { get; }
    int Cols { get; }
}

/// <summary>RoPE parameters from the model's metadata.</summary>
/// <param name="Dims">Rotated dimensions per head (rope.dimension_count, normally the head size).</param>
/// <param name="FreqBase">theta base (rope.freq_base).</param>
/// <param name="FreqScale">position scale for linear scaling (1 / factor), 1 when unscaled.</param>
/// <param name="NeoX">true: rotate pairs (i, i + Dims/2) (qwen2, qwen3); false: pairs (2i, 2i+1) (llama).</param>
/// <param name="FreqFactors">optional per-pair divisors of the frequency (Dims/2 values), from rope_freqs.weight (Llama 3.1+).</param>
public sealed record RopeConfig(int Dims, float FreqBase, float FreqScale, bool NeoX, float[]? FreqFactors)
{
    /// <summary>
    /// The rotation of each pair at <paramref name="position"/>: theta_i = pos * FreqScale * base^(-2i/Dims) / factor_i,
    /// i in [0, Dims/2), in float32 as transformers computes it (inv_freq = 1 / base^(2i/dims); freqs = pos * inv_freq).
    /// Every backend takes its angles from here, so all rotate by identical values.
    /// </summary>
    public void CosSin(int position, Span<float> cos, Span<float> sin)
    {
        for (int i = 0; i < Dims / 2; i++)
        {
            float invFreq = 1f / MathF.Pow(FreqBase, 2f * i / Dims);
            if (FreqFactors is { Length: > 0 } f) invFreq /= f[i];
            float theta = position * FreqScale * invFreq;
            cos[i] = MathF.Cos(theta);
            sin[i] = MathF.Sin(theta);
        }
    }
}

/// <summary>Shape of the attention KV cache and how it stores K and V.</summary>
/// <param name="Layers">layers whose K and V this cache holds.</param>
/// <param name="Contexts">independent sequences.</param>
/// <param name="ContextLength">positions per sequence.</param>
/// <param name="KvHeads">key/value heads per layer.</param>
/// <param name="HeadDim">elements per head (a cached row).</param>
/// <param name="KType">element type of the cached keys (float32 when not given: the seam's exact default; models load with
/// <see cref="KvCacheTypes.Default"/>).</param>
/// <param name="VType">element type of the cached values.</param>
public sealed record KvCacheConfig(int Layers, int Contexts, int ContextLength, int KvHeads, int HeadDim,
    KvCacheType KType = KvCacheType.F32, KvCacheType VType = KvCacheType.F32)
{
    /// <summary>Bytes of K and V together for every layer, sequence and position.</summary>
    public long Bytes => (long)Contexts * Layers * ContextLength * KvHeads
        * (KvCacheTypes.RowBytes(KType, HeadDim) + KvCacheTypes.RowBytes(VType, HeadDim));
}

/// <summary>Attention geometry of a model, from its metadata.</summary>
/// <param name="Heads">query heads.</param>
/// <param name="KvHeads">key/value heads (grouped-query attention: Heads is a multiple of KvHeads).</param>
/// <param name="HeadDim">elements per head.</param>
/// <param name="Rope">the rotation of q and k.</param>
/// <param name="Eps">RMSNorm epsilon of the block's norms (the input norm and qwen3's per-head q/k norms).</param>
public sealed record AttentionShape(int Heads, int KvHeads, int HeadDim, RopeConfig Rope, float Eps)
{
    /// <summary>Softmax scale of the scores: 1 / sqrt(HeadDim).</summary>
    public float Scale { get; } = 1f / MathF.Sqrt(HeadDim);

    public int QDim => Heads * HeadDim;
    public int KvDim => KvHeads * HeadDim;
}

/// <summary>The weights of one layer's attention input: the norm, Q/K/V projections, their biases (qwen2) and per-head norms (qwen3).</summary>
/// <param name="Norm">attn_norm (dim).</param>
/// <param name="Wq">(qDim, dim).</param>
/// <param name="Wk">(kvDim, dim).</param>
/// <param name="Wv">(kvDim, dim).</param>
/// <param name="Bq">(qDim) or null; Bk and Bv are present exactly when Bq is.</param>
/// <param name="Bk">(kvDim) or null.</param>
/// <param name="Bv">(kvDim) or null.</param>
/// <param name="QNorm">(headDim) or null; KNorm is present exactly when QNorm is.</param>
/// <param name="KNorm">(headDim) or null.</param>
public sealed record QkvWeights(IWeight Norm, IWeight Wq, IWeight Wk, IWeight Wv,
    IWeight? Bq = null, IWeight? Bk = null, IWeight? Bv = null, IWeight? QNorm = null, IWeight? KNorm = null);

/// <summary>The weights of one layer's feed-forward input: the norm and the gate and up projections, (ff, dim) each.</summary>
public sealed record GateUpWeights(IWeight Norm, IWeight Gate, IWeight Up);

/// <summary>
/// The seam between the model and the hardware: coarse operations over backend-owned buffers. <c>LlamaModel.Forward</c>
/// is written once against it. Operations act on the first <c>n</c> rows of their activations, where n is the token
/// count of the batch set by <see cref="SetBatch"/>. Every operation finishes (in stream order) before the next one starts:
/// a backend never holds work back to merge it with a later call.
/// <para>
/// The fused operations (<see cref="NormQkvRope"/>, <see cref="MatMulAdd"/>, <see cref="NormGateUp"/>,
/// <see cref="NormMatMulRows"/>) are defined by the primitives they stand for (see <see cref="ComposedOps"/>); a backend
/// implements each as fused as pays on its hardware and must produce what the composition produces.
/// </para>
/// </summary>
public interface IBackend : IDisposable
{
    string Name { get; }

    /// <summary>Threads (CPU) or a device description, for summaries.</summary>
    string Description { get; }

    /// <summary>Prepares a tensor for use as a matmul weight, an embedding table or a norm/bias vector.</summary>
    IWeight LoadWeight(GgufTensor tensor);

    /// <summary>
    /// Prepares a table that is only looked up by <see cref="Embed"/>, never multiplied (an untied token embedding): a backend
    /// can leave out what only matmuls need (the CPU backend's repacked copy).
    /// </summary>
    IWeight LoadEmbeddingTable(GgufTensor tensor) => LoadWeight(tensor);

    IActivation Allocate(int rows, int cols);

    /// <summary>
    /// An activation of rows x cols for a buffer whose contents are never needed while <paramref name="parent"/>'s are (and the
    /// reverse): a backend may place it over the start of the parent's memory (the CPU backend does, saving resident memory), or
    /// allocate it apart (the default). The parent must hold at least rows x cols floats.
    /// </summary>
    IActivation AllocateShared(IActivation parent, int rows, int cols) => Allocate(rows, cols);

    /// <summary>Whether <see cref="CreateKvCache"/> takes caches of <paramref name="type"/> (for K or V).</summary>
    bool SupportsKvCacheType(KvCacheType type);

    /// <summary>
    /// Creates the KV cache; <paramref name="config"/>.Contexts independent sequences of ContextLength positions.
    /// Throws <see cref="NotSupportedException"/> for a cache type this backend does not store.
    /// </summary>
    void CreateKvCache(KvCacheConfig config);

    /// <summary>Sets the current batch: token ids, their positions and sequence (cache context) ids. Lengths must match.</summary>
    void SetBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> sequences);

    // ---- primitives ----

    /// <summary>x[t, :] = table[tokens[t], :] (dequantized).</summary>
    void Embed(IWeight table, IActivation x);

    /// <summary>
    /// y = x / rms(x) * weight, over groups of weight.Cols elements of each row (a row is 1 or more groups); first
    /// <paramref name="rows"/> rows (all batch tokens when -1).
    /// </summary>
    void RmsNorm(IActivation x, IWeight weight, float eps, IActivation y, int rows = -1);

    /// <summary>y[t, :] = W · x[t, :] for the first <paramref name="rows"/> rows (all batch tokens when -1).</summary>
    void MatMul(IWeight w, IActivation x, IActivation y, int rows = -1);

    /// <summary>y[t, :] += bias.</summary>
    void AddBias(IActivation y, IWeight bias);

    /// <summary>Rotates each head of x (heads of <paramref name="headDim"/> in a row) by the batch positions.</summary>
    void Rope(IActivation x, int headDim, RopeConfig rope);

    /// <summary>Stores k and v of the batch (kvHeads x headDim per row) in layer <paramref name="layer"/>'s cache at the batch positions.</summary>
    void StoreKv(int layer, IActivation k, IActivation v);

    /// <summary>
    /// Causal multi-head (grouped-query) attention of q over layer <paramref name="layer"/>'s cache of each token's sequence,
    /// positions 0..pos (the batch's own k and v must be stored first): output[t] (heads x headDim).
    /// </summary>
    void Attention(int layer, IActivation q, IActivation output, AttentionShape shape);

    /// <summary>gate = silu(gate) * up.</summary>
    void SwiGlu(IActivation gate, IActivation up);

    /// <summary>x += y.</summary>
    void Add(IActivation x, IActivation y);

    /// <summary>dst[i, :] = src[rows[i], :].</summary>
    void GatherRows(IActivation src, ReadOnlySpan<int> rows, IActivation dst);

    // ---- fused operations ----

    /// <summary>
    /// The attention block's input of one layer: xb = norm(x); q = Wq·xb + bq, k = Wk·xb + bk, v = Wv·xb + bv; per-head
    /// q_norm(q), k_norm(k) when the weights have them; RoPE of q and k at the batch positions; k and v stored in layer
    /// <paramref name="layer"/>'s cache. Leaves xb, q (rotated), k (rotated) and v written.
    /// </summary>
    void NormQkvRope(int layer, IActivation x, QkvWeights w, AttentionShape shape, IActivation xb, IActivation q, IActivation k, IActivation v);

    /// <summary>y = W · x; residual += y (the sub-block's output added to the residual stream).</summary>
    void MatMulAdd(IWeight w, IActivation x, IActivation y, IActivation residual);

    /// <summary>The feed-forward input: xb = norm(x); up = Wup·xb; gate = silu(Wgate·xb) * up.</summary>
    void NormGateUp(IActivation x, GateUpWeights w, float eps, IActivation xb, IActivation gate, IActivation up);

    /// <summary>
    /// The output head over selected rows: xRows[i] = norm(x[rows[i]]), y[i] = W · xRows[i], for i &lt; rows.Length
    /// (rows.Length at most the batch size).
    /// </summary>
    void NormMatMulRows(IActivation x, ReadOnlySpan<int> rows, IWeight norm, float eps, IWeight w, IActivation xRows, IActivation y);

    // ---- host transfers ----

    /// <summary>Copies row <paramref name="row"/> of x to host memory.</summary>
    void ReadRow(IActivation x, int row, Span<float> destination);

    /// <summary>Copies the first <paramref name="rows"/> rows of x to host memory: destination[0 .. rows * x.Cols), row-major.</summary>
    void ReadRows(IActivation x, int rows, Span<float> destination);

    /// <summary>Overwrites the first source.Length / x.Cols rows of x with host rows (row-major, whole rows).</summary>
    void WriteRows(IActivation x, ReadOnlySpan<float> source);
}
