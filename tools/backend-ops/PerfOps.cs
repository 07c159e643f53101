using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.BackendOps;

/// <summary>
/// The timed operations of one model shape and weight type on one <see cref="Target"/>. Weights are rows of real random
/// values quantized once and tiled to the full matrix (the kernels' speed does not depend on the values, and large
/// matrices quantize in no time); each tensor has enough copies for the calls to rotate through <c>rotation</c> bytes.
/// </summary>
internal sealed class PerfOps
{
    private const int MaxTokens = 512, DecodePosition = 600;
    private readonly Target _t;
    private readonly ModelShape _m;
    private readonly GgmlType _type;
    private readonly long _rotation;
    private readonly bool _quick;
    private readonly string _device;
    private readonly Dictionary<string, (IWeight[] Copies, long Bytes)> _weights = [];
    private readonly IActivation _xDim, _xFf, _xq, _xb, _q, _k, _v, _o, _y, _yDim, _gate, _up, _res, _row, _logits;
    private readonly IWeight _norm;
    private readonly AttentionShape _shape;

    public PerfOps(Target t, ModelShape m, GgmlType type, long rotation, bool quick, string device)
    {
        (_t, _m, _type, _rotation, _quick, _device) = (t, m, type, rotation, quick, device);
        var b = t.B;
        IActivation Random(int cols)
        {
            var a = b.Allocate(MaxTokens, cols);
            b.WriteRows(a, Data.UniformLarge(cols, MaxTokens, cols));
            return a;
        }
        (_xDim, _xFf, _xq) = (Random(m.Dim), Random(m.Ff), Random(m.QDim));
        (_xb, _q, _k, _v) = (b.Allocate(MaxTokens, m.Dim), b.Allocate(MaxTokens, m.QDim), b.Allocate(MaxTokens, m.KvDim),
            b.Allocate(MaxTokens, m.KvDim));
        (_y, _gate, _up, _res) = (b.Allocate(MaxTokens, Math.Max(m.Dim, m.Ff)), b.Allocate(MaxTokens, m.Ff), b.Allocate(MaxTokens, m.Ff),
            Random(m.Dim));
        (_row, _logits, _o) = (b.Allocate(1, m.Dim), b.Allocate(1, m.Vocab), b.Allocate(MaxTokens, m.QDim));
        _yDim = b.Allocate(MaxTokens, m.Dim); // MatMulAdd's output as wide as the residual it is added to (the seam's Add)
        var ones = Enumerable.Repeat(1f, m.Dim).ToArray();
        _norm = t.Upload("norm", GgmlType.F32, 1, m.Dim, System.Runtime.InteropServices.MemoryMarshal.AsBytes(ones.AsSpan()).ToArray());
        _shape = new AttentionShape(m.Heads, m.KvHeads, m.HeadDim, new RopeConfig(m.HeadDim, 500000f, 1f, false, null), 1e-5f);
    }

    private string Type => PerfRunner.OpName(_type);

    /// <summary>The matmuls and fused operations of one layer (and the output head) for a batch of n tokens.</summary>
    public IEnumerable<PerfRow> WeightOps(int n, IReadOnlyList<string> ops)
    {
        bool Want(string op) => ops.Count == 0 || ops.Contains(op, StringComparer.OrdinalIgnoreCase);
        var m = _m;
        _t.B.CreateKvCache(new KvCacheConfig(1, 1, DecodePosition + MaxTokens, m.KvHeads, m.HeadDim));
        int start = n == 1 ? DecodePosition : 0;
        _t.B.SetBatch(new int[n], [.. Enumerable.Range(start, n)], new int[n]);
        (string Name, int Rows, int Cols, IActivation X)[] tensors = _quick
            ? [("attn_q", m.QDim, m.Dim, _xDim), ("ffn_down", m.Dim, m.Ff, _xFf)]
            : [("attn_q", m.QDim, m.Dim, _xDim), ("attn_k", m.KvDim, m.Dim, _xDim), ("attn_output", m.Dim, m.QDim, _xq),
               ("ffn_gate", m.Ff, m.Dim, _xDim), ("ffn_down", m.Dim, m.Ff, _xFf), ("output", m.Vocab, m.Dim, _xDim)];
        if (Want("MUL_MAT"))
            foreach (var (name, rows, cols, x) in tensors)
            {
                if (name == "output" && n > 1) continue; // only the last row of a prompt needs logits
                var (w, bytes) = Weights(name, rows, cols);
                yield return Row("MUL_MAT", $"{name} m={rows},k={cols}", n, bytes + 4L * n * (cols + rows), 2L * rows * cols * n,
                    i => _t.B.MatMul(w[i % w.Length], x, rows == m.Vocab ? _logits : _y));
            }
        if (Want("NORM_QKV_ROPE"))
        {
            var (wq, bq) = Weights("attn_q", m.QDim, m.Dim);
            var (wk, bk) = Weights("attn_k", m.KvDim, m.Dim);
            var (wv, bv) = Weights("attn_v", m.KvDim, m.Dim);
            long act = 4L * n * (2 * m.Dim + m.QDim + 4 * m.KvDim);
            yield return Row("NORM_QKV_ROPE", $"dim={m.Dim},q={m.QDim},kv={m.KvDim}", n, bq + bk + bv + act,
                2L * (m.QDim + 2 * m.KvDim) * m.Dim * n,
                i => _t.B.NormQkvRope(0, _xDim, new QkvWeights(_norm, wq[i % wq.Length], wk[i % wk.Length], wv[i % wv.Length]),
                    _shape, _xb, _q, _k, _v));
        }
        if (Want("NORM_GATE_UP"))
        {
            var (wg, bg) = Weights("ffn_gate", m.Ff, m.Dim);
            var (wu, bu) = Weights("ffn_up", m.Ff, m.Dim);
            yield return Row("NORM_GATE_UP", $"dim={m.Dim},ff={m.Ff}", n, bg + bu + 4L * n * (2 * m.Dim + 2 * m.Ff), 4L * m.Ff * m.Dim * n,
                i => _t.B.NormGateUp(_xDim, new GateUpWeights(_norm, wg[i % wg.Length], wu[i % wu.Length]), 1e-5f, _xb, _gate, _up));
        }
        if (Want("MATMUL_ADD"))
        {
            var (wd, bd) = Weights("ffn_down", m.Dim, m.Ff);
            yield return Row("MATMUL_ADD", $"ffn_down m={m.Dim},k={m.Ff}", n, bd + 4L * n * (m.Ff + 3 * m.Dim), 2L * m.Dim * m.Ff * n,
                i => _t.B.MatMulAdd(wd[i % wd.Length], _xFf, _yDim, _res));
        }
        if (Want("NORM_MATMUL_ROWS") && n == 1 && !_quick)
        {
            var (wo, bo) = Weights("output", m.Vocab, m.Dim);
            yield return Row("NORM_MATMUL_ROWS", $"output m={m.Vocab},k={m.Dim}", 1, bo + 4L * (m.Dim + m.Vocab), 2L * m.Vocab * m.Dim,
                i => _t.B.NormMatMulRows(_xDim, [0], _norm, 1e-5f, wo[i % wo.Length], _row, _logits));
        }
    }

    /// <summary>
    /// Attention over an f32, f16 and q8_0 cache: decode after 512 and 4096 positions, and a 512-token prompt. Cache layers rotate.
    /// </summary>
    public IEnumerable<PerfRow> AttentionOps(IReadOnlyList<string> ops)
    {
        if (ops.Count > 0 && !ops.Contains("ATTENTION", StringComparer.OrdinalIgnoreCase)) yield break;
        var m = _m;
        (int Context, int N)[] cases = _quick ? [(512, 1)] : [(512, 1), (4096, 1), (0, 512)];
        KvCacheType[] caches = [KvCacheType.F32, KvCacheType.F16, KvCacheType.Q8_0];
        var grid = caches.SelectMany(cache => cases.Select(c => (Cache: cache, c.Context, c.N)));
        foreach (var (cache, context, n) in grid)
        {
            int length = context + n;
            long layerBytes = 2L * length * KvCacheTypes.RowBytes(cache, m.HeadDim) * m.KvHeads;
            int layers = (int)Math.Clamp((_rotation + layerBytes - 1) / layerBytes, 1, 64);
            _t.B.CreateKvCache(new KvCacheConfig(layers, 1, length, m.KvHeads, m.HeadDim, cache, cache));
            for (int layer = 0; layer < layers; layer++)
                for (int p0 = 0; p0 < length; p0 += MaxTokens)
                {
                    int c = Math.Min(MaxTokens, length - p0);
                    _t.B.SetBatch(new int[c], [.. Enumerable.Range(p0, c)], new int[c]);
                    _t.B.WriteRows(_k, Data.UniformLarge(layer * 131 + p0, c, m.KvDim));
                    _t.B.WriteRows(_v, Data.UniformLarge(layer * 137 + p0, c, m.KvDim));
                    _t.B.StoreKv(layer, _k, _v);
                }
            _t.B.SetBatch(new int[n], [.. Enumerable.Range(context, n)], new int[n]);
            long pairs = 0; // (token, attended position) pairs
            for (int i = 0; i < n; i++) pairs += context + i + 1;
            long bytes = layerBytes + 8L * n * m.QDim;
            yield return Row("ATTENTION", $"heads={m.Heads},kv={m.KvHeads},head={m.HeadDim},ctx={context}", n, bytes,
                4L * m.Heads * m.HeadDim * pairs, i => _t.B.Attention(i % layers, _q, _o, _shape), KvCacheTypes.Name(cache));
        }
    }

    private PerfRow Row(string op, string shape, int n, long bytes, long flops, Action<int> call, string? type = null)
    {
        var (seconds, launches) = PerfRunner.Time(_t, call, _quick);
        return new PerfRow(_device, _m.Name, op, type ?? Type, $"{_m.Name} {shape}", n, seconds * 1e6, bytes, flops,
            bytes / seconds / 1e9, flops / seconds / 1e9, launches);
    }

    /// <summary>Copies of one weight (all with the same bytes) and the bytes of one copy.</summary>
    private (IWeight[] Copies, long Bytes) Weights(string name, int rows, int cols)
    {
        if (_weights.TryGetValue(name, out var w)) return w;
        var bytes = Tiled(_type, rows, cols);
        int copies = (int)Math.Clamp((_rotation + bytes.LongLength - 1) / bytes.LongLength, 1, 256);
        var list = new IWeight[copies];
        for (int i = 0; i < copies; i++) list[i] = _t.Upload(name, _type, rows, cols, bytes);
        return _weights[name] = (list, bytes.LongLength);
    }

    /// <summary>A (rows, cols) weight of <paramref name="type"/>: 16 rows of uniform values quantized, repeated.</summary>
    private static byte[] Tiled(GgmlType type, int rows, int cols)
    {
        int block = Math.Min(16, rows);
        var one = Data.Quantize(type, Data.UniformLarge(cols, block, cols, 0.05f), block, cols);
        long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
        var all = new byte[rows * rowBytes];
        for (long r = 0; r < rows; r += block)
        {
            long count = Math.Min(block, rows - r) * rowBytes;
            Array.Copy(one, 0, all, r * rowBytes, count);
        }
        return all;
    }
}
