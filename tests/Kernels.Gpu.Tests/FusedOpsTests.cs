using System.Runtime.InteropServices;
using Infer.Kernels.Gpu.Kernels;
using Infer.Runtime.Backend;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Gpu.Tests;

/// <summary>
/// The seam's fused operations on the GPU backend against their definition (<see cref="ComposedOps"/>: the same backend's
/// primitives, each tested against a scalar reference in <see cref="GpuKernelTests"/>), by NMSE ≤ 1e-7, on every branch the
/// backend takes: one launch where everything fits, and the partly fused paths for biases (qwen2), per-head norms (qwen3),
/// weights of mixed formats (Q4_K_M files keep attn_v and ffn_down in Q6_K) and rows too wide for the fused norm.
/// </summary>
public sealed class FusedOpsTests(GpuBackends backends) : IClassFixture<GpuBackends>
{
    private static IWeight Vector(GpuBackend b, string name, float[] v) =>
        b.UploadWeight(name, GgmlType.F32, 1, v.Length, MemoryMarshal.AsBytes(v.AsSpan()));

    private static IWeight Matrix(GpuBackend b, Random rng, string name, GgmlType type, int rows, int cols)
    {
        var bytes = new byte[GgmlTypeInfo.RowBytes(type, cols) * rows];
        RowCodec.Quantize(type, Check.Random(rng, rows * cols), bytes);
        return b.UploadWeight(name, type, rows, cols, bytes);
    }

    /// <summary>Whether <see cref="GpuKernels.MixedQkv"/> pairs V's format with Q and K's (one launch for the three).</summary>
    private static bool Paired(GgmlType qk, GgmlType v) =>
        GpuKernels.MixedQkv.Any(p => p.Qk.Name == $"{qk}Words" && p.V.Name == $"{v}Words");

    public static TheoryData<bool, bool, GgmlType, GgmlType, bool> QkvCases() => new()
    {
        // biases, per-head norms, type of Wq/Wk, type of Wv, reducing
        { false, false, GgmlType.Q8_0, GgmlType.Q8_0, false },  // one launch
        { true, false, GgmlType.Q8_0, GgmlType.Q8_0, true },    // qwen2
        { false, true, GgmlType.BF16, GgmlType.BF16, false },   // qwen3
        { false, false, GgmlType.Q4_K, GgmlType.Q6_K, true },   // Q4_K_M
        { false, false, GgmlType.Q4_K, GgmlType.Q5_K, false },  // Q4_K_S
        { false, false, GgmlType.Q5_K, GgmlType.Q6_K, true },   // Q5_K_M
        { false, false, GgmlType.Q3_K, GgmlType.Q5_K, true },   // Q3_K_M, Q3_K_L
        { false, false, GgmlType.Q3_K, GgmlType.Q4_K, false },  // Q3_K_M
        { false, false, GgmlType.Q2_K, GgmlType.Q4_K, true },   // Q2_K
        { false, false, GgmlType.Q2_K, GgmlType.Q3_K, false },  // Q2_K without GQA
        { false, false, GgmlType.IQ4_XS, GgmlType.Q5_K, true }, // IQ4_XS
        { true, false, GgmlType.Q3_K, GgmlType.Q3_K, false },   // Q3_K_S with biases
        { true, true, GgmlType.Q4_0, GgmlType.Q8_0, false },    // all at once
        { false, false, GgmlType.IQ4_NL, GgmlType.Q5_K, false }, // IQ4_NL with 4+ query heads per KV head
        { false, false, GgmlType.Q5_0, GgmlType.Q8_0, true },   // Q4_K_M of rows K-quants cannot take (SmolLM2)
        { false, false, GgmlType.Q5_1, GgmlType.Q8_0, false },  // Q5_K_M of the same
    };

    [Theory]
    [MemberData(nameof(QkvCases))]
    public void NormQkvRopeEqualsItsPrimitives(bool biases, bool qkNorms, GgmlType qkType, GgmlType vType, bool reducing)
    {
        var b = backends.Get(reducing);
        var rng = new Random(7 + (biases ? 1 : 0) + (qkNorms ? 2 : 0) + (int)qkType);
        const int heads = 4, kvHeads = 2, headDim = 64, layers = 2, ctx = 16, cols = 256, n = 5;
        var shape = new AttentionShape(heads, kvHeads, headDim, new RopeConfig(headDim, 10000f, 1f, qkNorms, null), 1e-5f);
        var w = new QkvWeights(
            Vector(b, "norm", Check.Random(rng, cols)),
            Matrix(b, rng, "wq", qkType, shape.QDim, cols),
            Matrix(b, rng, "wk", qkType, shape.KvDim, cols),
            Matrix(b, rng, "wv", vType, shape.KvDim, cols),
            biases ? Vector(b, "bq", Check.Random(rng, shape.QDim)) : null,
            biases ? Vector(b, "bk", Check.Random(rng, shape.KvDim)) : null,
            biases ? Vector(b, "bv", Check.Random(rng, shape.KvDim)) : null,
            qkNorms ? Vector(b, "qn", Check.Random(rng, headDim)) : null,
            qkNorms ? Vector(b, "kn", Check.Random(rng, headDim)) : null);
        var xs = Check.Random(rng, n * cols, 2f);
        var outputs = new float[2][][];
        for (int pass = 0; pass < 2; pass++)
        {
            b.CreateKvCache(new KvCacheConfig(layers, 1, ctx, kvHeads, headDim));
            var x = b.Allocate(GpuBackends.MaxBatch, cols);
            var xb = b.Allocate(GpuBackends.MaxBatch, cols);
            var q = b.Allocate(GpuBackends.MaxBatch, shape.QDim);
            var k = b.Allocate(GpuBackends.MaxBatch, shape.KvDim);
            var v = b.Allocate(GpuBackends.MaxBatch, shape.KvDim);
            var o = b.Allocate(GpuBackends.MaxBatch, shape.QDim);
            b.Write(x, xs);
            Check.SetTokens(b, n);
            long before = b.Launches;
            if (pass == 0) b.NormQkvRope(1, x, w, shape, xb, q, k, v);
            else ComposedOps.NormQkvRope(b, 1, x, w, shape, xb, q, k, v);
            if (pass == 0 && !biases && !qkNorms && (qkType == vType || Paired(qkType, vType))) Assert.Equal(1, b.Launches - before);
            b.Attention(1, q, o, shape); // reads what was stored in the cache
            outputs[pass] = [Check.Read(b, xb, n), Check.Read(b, q, n), Check.Read(b, k, n), Check.Read(b, v, n), Check.Read(b, o, n)];
        }
        string[] names = ["xb", "q", "k", "v", "attention"];
        for (int i = 0; i < names.Length; i++) Check.Close(outputs[0][i], outputs[1][i], $"{names[i]} of fused vs composed");
    }

    [Theory]
    [InlineData(GgmlType.Q8_0, GgmlType.Q8_0, 256, false)]   // one launch
    [InlineData(GgmlType.Q4_K, GgmlType.Q6_K, 256, true)]    // mixed formats
    [InlineData(GgmlType.F16, GgmlType.F16, 4096, false)]    // 4 tokens x 4096 floats exceed the fused norm's shared memory
    public void NormGateUpAndMatMulAddEqualTheirPrimitives(GgmlType gateType, GgmlType upType, int cols, bool reducing)
    {
        var b = backends.Get(reducing);
        var rng = new Random(cols + (int)upType);
        const int ff = 256, n = 5; // ff is the row length of ffn_down: whole K-quant super-blocks
        var w = new GateUpWeights(Vector(b, "norm", Check.Random(rng, cols)),
            Matrix(b, rng, "gate", gateType, ff, cols), Matrix(b, rng, "up", upType, ff, cols));
        var down = Matrix(b, rng, "down", upType, cols, ff);
        var xs = Check.Random(rng, n * cols, 2f);
        var outputs = new float[2][][];
        for (int pass = 0; pass < 2; pass++)
        {
            var x = b.Allocate(GpuBackends.MaxBatch, cols);
            var xb = b.Allocate(GpuBackends.MaxBatch, cols);
            var gate = b.Allocate(GpuBackends.MaxBatch, ff);
            var up = b.Allocate(GpuBackends.MaxBatch, ff);
            var y = b.Allocate(GpuBackends.MaxBatch, cols);
            b.Write(x, xs);
            Check.SetTokens(b, n);
            long before = b.Launches;
            if (pass == 0)
            {
                b.NormGateUp(x, w, 1e-5f, xb, gate, up);
                if (gateType == upType && cols == 256) Assert.Equal(1, b.Launches - before);
                b.MatMulAdd(down, gate, y, x);
            }
            else
            {
                ComposedOps.NormGateUp(b, x, w, 1e-5f, xb, gate, up);
                ComposedOps.MatMulAdd(b, down, gate, y, x);
            }
            outputs[pass] = [Check.Read(b, xb, n), Check.Read(b, gate, n), Check.Read(b, up, n), Check.Read(b, y, n), Check.Read(b, x, n)];
        }
        string[] names = ["xb", "gate", "up", "down", "residual"];
        for (int i = 0; i < names.Length; i++) Check.Close(outputs[0][i], outputs[1][i], $"{names[i]} of fused vs composed");
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(3, true)]
    public void NormMatMulRowsEqualsItsPrimitives(int rowCount, bool reducing)
    {
        var b = backends.Get(reducing);
        var rng = new Random(rowCount);
        const int cols = 96, vocab = 37, n = 6;
        var norm = Vector(b, "norm", Check.Random(rng, cols));
        var output = Matrix(b, rng, "output", GgmlType.Q8_0, vocab, cols);
        int[] rows = [.. Enumerable.Range(0, rowCount).Select(i => (i * 2 + 1) % n)];
        var xs = Check.Random(rng, n * cols, 2f);
        var outputs = new float[2][][];
        for (int pass = 0; pass < 2; pass++)
        {
            var x = b.Allocate(GpuBackends.MaxBatch, cols);
            var last = b.Allocate(GpuBackends.MaxBatch, cols);
            var logits = b.Allocate(GpuBackends.MaxBatch, vocab);
            b.Write(x, xs);
            Check.SetTokens(b, n);
            if (pass == 0) b.NormMatMulRows(x, rows, norm, 1e-5f, output, last, logits);
            else ComposedOps.NormMatMulRows(b, x, rows, norm, 1e-5f, output, last, logits);
            outputs[pass] = [Check.Read(b, last, rowCount), Check.Read(b, logits, rowCount)];
        }
        Check.Close(outputs[0][0], outputs[1][0], "normalized rows of fused vs composed");
        Check.Close(outputs[0][1], outputs[1][1], "logits of fused vs composed");
    }
}
