using Infer.Kernels.Cpu.Ops;
using Infer.Runtime.Backend;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Gpu.Tests;

/// <summary>
/// Each GPU kernel on ILGPU's CPU accelerator against the CPU reference kernels (VectorOps' scalar references, ggml's
/// reference dequantizers), by NMSE ≤ 1e-7, over sizes with odd tails and partial token tiles.
/// </summary>
public sealed class GpuKernelTests(GpuBackends backends) : IClassFixture<GpuBackends>
{
    private static readonly int[] FloatCols = [1, 2, 3, 17, 64, 176, 255];
    private static readonly int[] BlockCols = [32, 96, 288];
    private static readonly int[] SuperBlockCols = [256, 768];
    private static readonly int[] WeightRows = [1, 7, 33];
    private static readonly int[] TokenCounts = [1, 3, 5];

    public static TheoryData<GgmlType, bool> Types()
    {
        var d = new TheoryData<GgmlType, bool>();
        GgmlType[] types =
            [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
                GgmlType.Q3_K,
                GgmlType.Q2_K,
                GgmlType.IQ4_XS,
                GgmlType.Q4_1,
                GgmlType.Q5_0,
                GgmlType.Q5_1,
                GgmlType.IQ4_NL];
        foreach (var t in types)
        {
            d.Add(t, false);
            d.Add(t, true);
        }
        return d;
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void MatMulMatchesDequantizedReference(GgmlType type, bool reducing)
    {
        var b = backends.Get(reducing);
        var rng = new Random(1 + (int)type);
        int blockSize = GgmlTypeInfo.BlockSize(type);
        foreach (int cols in blockSize == 1 ? FloatCols : blockSize == 32 ? BlockCols : SuperBlockCols)
            foreach (int rows in WeightRows)
            {
                var (bytes, deq) = Check.RandomWeight(rng, type, rows, cols);
                var w = b.UploadWeight("w", type, rows, cols, bytes);
                foreach (int n in TokenCounts)
                {
                    var xs = Check.Random(rng, n * cols);
                    var x = b.Allocate(GpuBackends.MaxBatch, cols);
                    var y = b.Allocate(GpuBackends.MaxBatch, rows + 3); // wider than the weight: row stride differs from Rows
                    b.Write(x, xs);
                    Check.SetTokens(b, n);
                    b.MatMul(w, x, y);

                    var expected = new float[n * (rows + 3)];
                    var got = Check.Read(b, y, n);
                    for (int t = 0; t < n; t++)
                        for (int r = 0; r < rows; r++)
                        {
                            double s = 0;
                            for (int j = 0; j < cols; j++) s += (double)deq[r * cols + j] * xs[t * cols + j];
                            expected[t * (rows + 3) + r] = (float)s;
                        }
                    Check.Close(got, expected, $"{type} [{rows} x {cols}] x {n} tokens");
                }
            }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void EmbedDecodesTheTokenRows(GgmlType type, bool reducing)
    {
        var b = backends.Get(reducing);
        var rng = new Random(7);
        int cols = Math.Max(GgmlTypeInfo.BlockSize(type) == 1 ? 37 : 64, GgmlTypeInfo.BlockSize(type)), rows = 11;
        var (bytes, deq) = Check.RandomWeight(rng, type, rows, cols);
        var w = b.UploadWeight("table", type, rows, cols, bytes);
        int[] tokens = [10, 0, 3, 3, 7];
        b.SetBatch(tokens, [0, 1, 2, 3, 4], [0, 0, 0, 0, 0]);
        var x = b.Allocate(GpuBackends.MaxBatch, cols);
        b.Embed(w, x);
        var expected = tokens.SelectMany(t => deq.AsSpan(t * cols, cols).ToArray()).ToArray();
        Assert.Equal(expected, Check.Read(b, x, tokens.Length)); // decoding is exact
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RmsNormMatchesReferenceOverGroups(bool inPlace)
    {
        var b = backends.Get(inPlace);
        var rng = new Random(3);
        foreach (var (group, groups) in new[] { (1, 1), (3, 1), (17, 2), (32, 4), (64, 1), (255, 1), (1000, 1) })
            foreach (int n in TokenCounts)
            {
                int cols = group * groups;
                var xs = Check.Random(rng, n * cols, 3f);
                var ws = Check.Random(rng, group);
                var w = b.UploadWeight("norm", GgmlType.F32, 1, group, System.Runtime.InteropServices.MemoryMarshal.AsBytes(ws.AsSpan()));
                var x = b.Allocate(GpuBackends.MaxBatch, cols);
                var y = inPlace ? x : b.Allocate(GpuBackends.MaxBatch, cols);
                b.Write(x, xs);
                Check.SetTokens(b, n);
                b.RmsNorm(x, w, 1e-5f, y);
                var expected = new float[n * cols];
                for (int o = 0; o < n * cols; o += group)
                    VectorOps.RmsNormRef(xs.AsSpan(o, group), ws, 1e-5f, expected.AsSpan(o, group));
                Check.Close(Check.Read(b, y, n), expected, $"rmsnorm group {group} x {groups}, {n} rows");
            }
    }

    /// <summary>AddRmsNorm is one launch: x += r, then y = norm(x).</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AddThenRmsNormFusesTheResidual(bool reducing)
    {
        var b = backends.Get(reducing);
        var rng = new Random(5);
        foreach (var (group, groups) in new[] { (3, 1), (32, 2), (255, 1) })
            foreach (int n in TokenCounts)
            {
                int cols = group * groups;
                var xs = Check.Random(rng, n * cols, 3f);
                var rs = Check.Random(rng, n * cols, 3f);
                var ws = Check.Random(rng, group);
                var w = b.UploadWeight("norm", GgmlType.F32, 1, group, System.Runtime.InteropServices.MemoryMarshal.AsBytes(ws.AsSpan()));
                var x = b.Allocate(GpuBackends.MaxBatch, cols);
                var r = b.Allocate(GpuBackends.MaxBatch, cols);
                var y = b.Allocate(GpuBackends.MaxBatch, cols);
                b.Write(x, xs);
                b.Write(r, rs);
                Check.SetTokens(b, n);
                long before = b.Launches;
                b.AddRmsNorm(x, r, w, 1e-5f, y);
                Assert.Equal(1, b.Launches - before);

                var sum = xs.Select((v, i) => v + rs[i]).ToArray();
                var expected = new float[n * cols];
                for (int o = 0; o < n * cols; o += group)
                    VectorOps.RmsNormRef(sum.AsSpan(o, group), ws, 1e-5f, expected.AsSpan(o, group));
                Check.Close(Check.Read(b, y, n), expected, $"add+rmsnorm group {group} x {groups}, {n} rows");
                Check.Close(Check.Read(b, x, n), sum, $"residual of add+rmsnorm group {group} x {groups}, {n} rows");
            }
    }

    [Fact]
    public void RmsNormRowsArgumentLimitsTheRows()
    {
        var b = backends.RowPerThread;
        var w = b.UploadWeight("norm", GgmlType.F32, 1, 4, System.Runtime.InteropServices.MemoryMarshal.AsBytes(new float[] { 1, 1, 1, 1 }.AsSpan()));
        var x = b.Allocate(GpuBackends.MaxBatch, 4);
        b.Write(x, [2, 2, 2, 2, 5, 5, 5, 5]);
        Check.SetTokens(b, 2);
        b.RmsNorm(x, w, 0f, x, rows: 1);
        Assert.Equal(new float[] { 1, 1, 1, 1, 5, 5, 5, 5 }, Check.Read(b, x, 2));
    }

    public static TheoryData<int, int, bool, float, bool> RopeCases() => new()
    {
        { 32, 32, false, 1f, false },
        { 32, 32, true, 1f, false },
        { 64, 64, false, 0.25f, true },
        { 64, 64, true, 1f, true },
        { 64, 32, true, 0.5f, false },   // partial rotation: dims < head size
        { 6, 6, false, 1f, false },
    };

    [Theory]
    [MemberData(nameof(RopeCases))]
    public void RopeMatchesReference(int headDim, int dims, bool neox, float freqScale, bool factors)
    {
        var b = backends.RowPerThread;
        var rng = new Random(headDim + dims);
        float[]? ff = factors ? [.. Enumerable.Range(0, dims / 2).Select(i => 1f + i % 5)] : null;
        var rope = new RopeConfig(dims, 10000f, freqScale, neox, ff);
        b.CreateKvCache(new KvCacheConfig(1, 1, 4096, 1, headDim));
        foreach (int heads in new[] { 1, 3 })
        {
            int cols = heads * headDim, n = 5;
            int[] positions = [0, 1, 17, 1000, 4095];
            var xs = Check.Random(rng, n * cols);
            var x = b.Allocate(GpuBackends.MaxBatch, cols);
            b.Write(x, xs);
            b.SetBatch(new int[n], positions, new int[n]);
            b.Rope(x, headDim, rope);

            var expected = (float[])xs.Clone();
            var cos = new float[dims / 2];
            var sin = new float[dims / 2];
            for (int t = 0; t < n; t++)
            {
                rope.CosSin(positions[t], cos, sin);
                for (int h = 0; h < heads; h++) VectorOps.RopeHead(expected.AsSpan(t * cols + h * headDim, headDim), dims, neox, cos, sin);
            }
            Check.Close(Check.Read(b, x, n), expected, $"rope head {headDim} dims {dims} neox {neox} heads {heads}");
        }
    }

    [Fact]
    public void ElementwiseOpsMatchReference()
    {
        var b = backends.RowPerThread;
        var rng = new Random(11);
        foreach (int cols in new[] { 1, 7, 64, 257 })
            foreach (int n in TokenCounts)
            {
                var xs = Check.Random(rng, n * cols, 4f);
                var ys = Check.Random(rng, n * cols, 4f);
                var bias = Check.Random(rng, cols);
                var x = b.Allocate(GpuBackends.MaxBatch, cols);
                var y = b.Allocate(GpuBackends.MaxBatch, cols);
                Check.SetTokens(b, n);

                b.Write(x, xs);
                b.Write(y, ys);
                b.SwiGlu(x, y);
                var expected = (float[])xs.Clone();
                VectorOps.SwiGluRef(expected, ys);
                Check.Close(Check.Read(b, x, n), expected, $"swiglu {n} x {cols}");

                b.Write(x, xs);
                b.Add(x, y);
                Check.Close(Check.Read(b, x, n), [.. xs.Select((v, i) => v + ys[i])], $"add {n} x {cols}");

                b.Write(x, xs);
                var bw = b.UploadWeight("bias", GgmlType.F32, 1, cols, System.Runtime.InteropServices.MemoryMarshal.AsBytes(bias.AsSpan()));
                b.AddBias(x, bw);
                Check.Close(Check.Read(b, x, n), [.. xs.Select((v, i) => v + bias[i % cols])], $"bias {n} x {cols}");
            }
    }

    [Fact]
    public void GatherRowsCopiesTheListedRows()
    {
        var b = backends.RowPerThread;
        var src = b.Allocate(GpuBackends.MaxBatch, 3);
        var dst = b.Allocate(GpuBackends.MaxBatch, 3);
        b.Write(src, [0, 1, 2, 10, 11, 12, 20, 21, 22]);
        Check.SetTokens(b, 3);
        b.GatherRows(src, [2, 0], dst);
        Assert.Equal(new float[] { 20, 21, 22, 0, 1, 2 }, Check.Read(b, dst, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => b.GatherRows(src, [GpuBackends.MaxBatch], dst));
    }

    public static TheoryData<int, int, int, bool, KvCacheType, KvCacheType> AttentionCases() => new()
    {
        { 2, 1, 32, false, KvCacheType.F32, KvCacheType.F32 },
        { 2, 1, 32, true, KvCacheType.F32, KvCacheType.F32 },
        { 4, 2, 64, false, KvCacheType.F32, KvCacheType.F32 },
        { 4, 2, 64, true, KvCacheType.F32, KvCacheType.F32 },
        { 3, 3, 20, true, KvCacheType.F32, KvCacheType.F32 },
        { 2, 1, 32, false, KvCacheType.F16, KvCacheType.F16 },
        { 4, 2, 64, true, KvCacheType.F16, KvCacheType.F16 },
        { 3, 3, 20, true, KvCacheType.F16, KvCacheType.F32 },
        { 4, 2, 64, false, KvCacheType.F32, KvCacheType.F16 },
        { 2, 1, 32, true, KvCacheType.Q8_0, KvCacheType.Q8_0 },
        { 4, 2, 64, false, KvCacheType.Q8_0, KvCacheType.F16 },
        { 4, 2, 64, true, KvCacheType.F32, KvCacheType.Q8_0 },
    };

    /// <summary>
    /// Prefills two sequences in one batch, then decodes one token of each, checking every output against
    /// VectorOps.AttendRef over a host copy of the cache (causal, grouped-query); an f16 cache's copy holds each value
    /// rounded to half by System.Half.
    /// </summary>
    [Theory]
    [MemberData(nameof(AttentionCases))]
    public void AttentionMatchesReference(int heads, int kvHeads, int headDim, bool reducing, KvCacheType kType, KvCacheType vType) =>
        AttentionMatches(backends.Get(reducing), heads, kvHeads, headDim, kType, vType);

    public static TheoryData<int, int, int, KvCacheType, KvCacheType> WarpAttentionCases() => new()
    {
        { 2, 1, 32, KvCacheType.F32, KvCacheType.F32 },   // 4 slices of 32 dimensions in a group of 128
        { 4, 2, 64, KvCacheType.F16, KvCacheType.F16 },   // 2 slices
        { 3, 3, 20, KvCacheType.F32, KvCacheType.F16 },   // 6 slices, 8 threads idle
        { 2, 2, 128, KvCacheType.Q8_0, KvCacheType.F32 }, // one slice: dimensions strided over the group
    };

    /// <summary>
    /// <see cref="AttentionMatchesReference"/> at a GPU's group size (128 threads: <see cref="GpuBackends.WarpInt8"/>), where V is summed
    /// by several slices of the group's threads, each over every slices-th position, and the slices' sums meet in shared memory.
    /// </summary>
    [Theory]
    [MemberData(nameof(WarpAttentionCases))]
    public void AttentionAtAWarpsShapeMatchesReference(int heads, int kvHeads, int headDim, KvCacheType kType, KvCacheType vType) =>
        AttentionMatches(backends.WarpInt8, heads, kvHeads, headDim, kType, vType);

    private static void AttentionMatches(GpuBackend b, int heads, int kvHeads, int headDim, KvCacheType kType, KvCacheType vType)
    {
        var rng = new Random(heads * 100 + headDim);
        const int layers = 2, layer = 1, ctx = 48, sequences = 2;
        int qDim = heads * headDim, kvDim = kvHeads * headDim;
        float scale = 1f / MathF.Sqrt(headDim);
        b.CreateKvCache(new KvCacheConfig(layers, sequences, ctx, kvHeads, headDim, kType, vType));
        var kHost = new float[sequences, ctx * kvDim];
        var vHost = new float[sequences, ctx * kvDim];
        var q = b.Allocate(GpuBackends.MaxBatch, qDim);
        var k = b.Allocate(GpuBackends.MaxBatch, kvDim);
        var v = b.Allocate(GpuBackends.MaxBatch, kvDim);
        var o = b.Allocate(GpuBackends.MaxBatch, qDim);

        // Batches: 9 tokens of sequence 0 then 4 of sequence 1; then one decode token each; then one each alone, the last far ahead.
        var prefill = Enumerable.Range(0, 9).Select(p => (Seq: 0, Pos: p)).Concat(Enumerable.Range(0, 4).Select(p => (Seq: 1, Pos: p))).ToArray();
        (int Seq, int Pos)[][] batches = [prefill, [(1, 4), (0, 9)], [(0, 10)], [(1, 40)]];
        foreach (var batch in batches)
        {
            int n = batch.Length;
            var qs = Check.Random(rng, n * qDim);
            var ks = Check.Random(rng, n * kvDim);
            var vs = Check.Random(rng, n * kvDim);
            b.Write(q, qs);
            b.Write(k, ks);
            b.Write(v, vs);
            b.SetBatch(new int[n], [.. batch.Select(e => e.Pos)], [.. batch.Select(e => e.Seq)]);
            b.StoreKv(layer, k, v);
            b.Attention(layer, q, o, new AttentionShape(heads, kvHeads, headDim, new RopeConfig(headDim, 10000f, 1f, false, null), 1e-5f));

            StoreKv(kHost, vHost, batch, ks, vs, kvDim, kType, vType);
            var expected = ReferenceAttention(qs, kHost, vHost, batch, heads, kvHeads, headDim, scale);
            Check.Close(Check.Read(b, o, n), expected, $"attention {heads}/{kvHeads} heads of {headDim}, {kType}/{vType} cache, batch of {n}");
        }
    }

    /// <summary>
    /// Q, K and V matmuls over the same input, with their biases (qwen2), run as one launch; each output matches
    /// the dequantized reference plus its bias. The third part has no bias.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void MatMulsOverOneInputFuseWithTheirBiases(GgmlType type, bool reducing)
    {
        var b = backends.Get(reducing);
        var rng = new Random(21 + (int)type);
        int blockSize = GgmlTypeInfo.BlockSize(type);
        int cols = blockSize == 1 ? 17 : blockSize == 32 ? 96 : 256;
        int[] rows = [33, 7, 9];
        var parts = rows.Select(r => Check.RandomWeight(rng, type, r, cols)).ToArray();
        var weights = parts.Select((p, i) => b.UploadWeight($"w{i}", type, rows[i], cols, p.Bytes)).ToArray();
        var biases = rows.Select(r => Check.Random(rng, r)).ToArray();
        var biasWeights = biases
            .Select((v, i) => b.UploadWeight($"b{i}", GgmlType.F32, 1, rows[i], System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan())))
            .ToArray();
        foreach (int n in TokenCounts)
        {
            var xs = Check.Random(rng, n * cols);
            var x = b.Allocate(GpuBackends.MaxBatch, cols);
            var ys = rows.Select(r => b.Allocate(GpuBackends.MaxBatch, r)).ToArray();
            b.Write(x, xs);
            Check.SetTokens(b, n);
            long before = b.Launches;
            b.MatMuls(x, [(weights[0], ys[0], biasWeights[0]), (weights[1], ys[1], biasWeights[1]), (weights[2], ys[2], null)]);
            b.Synchronize();
            Assert.Equal(1, b.Launches - before);

            for (int i = 0; i < 3; i++)
            {
                var expected = new float[n * rows[i]];
                for (int t = 0; t < n; t++)
                    for (int r = 0; r < rows[i]; r++)
                    {
                        double sum = 0;
                        for (int j = 0; j < cols; j++) sum += (double)parts[i].Dequantized[r * cols + j] * xs[t * cols + j];
                        expected[t * rows[i] + r] = (float)sum + (i < 2 ? biases[i][r] : 0f);
                    }
                Check.Close(Check.Read(b, ys[i], n), expected, $"{type} fused part {i} [{rows[i]} x {cols}] x {n} tokens");
            }
        }
    }

    /// <summary>The gate and up matmuls with SwiGlu run as one launch: gate = silu(Wg·x) * (Wu·x), up = Wu·x.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void GateUpMatMulsFuseWithSwiGlu(GgmlType type, bool reducing)
    {
        var b = backends.Get(reducing);
        var rng = new Random(31 + (int)type);
        int blockSize = GgmlTypeInfo.BlockSize(type);
        int cols = blockSize == 1 ? 64 : blockSize == 32 ? 288 : 768;
        const int rows = 37;
        var (gBytes, gDeq) = Check.RandomWeight(rng, type, rows, cols);
        var (uBytes, uDeq) = Check.RandomWeight(rng, type, rows, cols);
        var wg = b.UploadWeight("gate", type, rows, cols, gBytes);
        var wu = b.UploadWeight("up", type, rows, cols, uBytes);
        foreach (int n in TokenCounts)
        {
            var xs = Check.Random(rng, n * cols);
            var x = b.Allocate(GpuBackends.MaxBatch, cols);
            var gate = b.Allocate(GpuBackends.MaxBatch, rows);
            var up = b.Allocate(GpuBackends.MaxBatch, rows);
            b.Write(x, xs);
            Check.SetTokens(b, n);
            long before = b.Launches;
            b.GateUpSwiGlu(x, wg, wu, gate, up);
            Assert.Equal(1, b.Launches - before);

            var g = new float[n * rows];
            var u = new float[n * rows];
            for (int t = 0; t < n; t++)
                for (int r = 0; r < rows; r++)
                {
                    double sg = 0, su = 0;
                    for (int j = 0; j < cols; j++)
                    {
                        sg += (double)gDeq[r * cols + j] * xs[t * cols + j];
                        su += (double)uDeq[r * cols + j] * xs[t * cols + j];
                    }
                    g[t * rows + r] = (float)sg;
                    u[t * rows + r] = (float)su;
                }
            VectorOps.SwiGluRef(g, u);
            Check.Close(Check.Read(b, gate, n), g, $"{type} gate/up/swiglu [{rows} x {cols}] x {n} tokens");
            Check.Close(Check.Read(b, up, n), u, $"{type} up of gate/up/swiglu [{rows} x {cols}] x {n} tokens");
        }
    }

    public static TheoryData<int, int, int, int, bool, bool, KvCacheType> RopeAttentionCases() => new()
    {
        { 2, 1, 32, 32, false, false, KvCacheType.F32 },
        { 4, 2, 64, 64, true, true, KvCacheType.F32 },
        { 4, 2, 64, 32, true, false, KvCacheType.F32 },   // partial rotation: k's unrotated tail is stored as is
        { 3, 3, 20, 20, false, true, KvCacheType.F32 },
        { 4, 2, 64, 64, true, true, KvCacheType.F16 },
        { 4, 2, 64, 32, false, false, KvCacheType.F16 },  // partial rotation
        { 4, 2, 64, 64, true, true, KvCacheType.Q8_0 },
        { 2, 1, 32, 16, false, false, KvCacheType.Q8_0 }, // partial rotation
    };

    /// <summary>
    /// RoPE of q and of k with the KV store (RopeStoreKv), then Attention: the rotations and the store run as one launch before
    /// the attention kernel(s). q and k end rotated (checked against VectorOps.RopeHead), and every output matches VectorOps.AttendRef
    /// over host-rotated keys, for a prefill of two sequences and then decode steps.
    /// </summary>
    [Theory]
    [MemberData(nameof(RopeAttentionCases))]
    public void RopeFusesIntoTheAttentionStore(int heads, int kvHeads, int headDim, int dims, bool neox, bool reducing, KvCacheType kv)
    {
        var b = backends.Get(reducing);
        var rng = new Random(heads * 1000 + headDim + dims);
        const int layers = 2, layer = 1, ctx = 48, sequences = 2;
        int qDim = heads * headDim, kvDim = kvHeads * headDim;
        float scale = 1f / MathF.Sqrt(headDim);
        var rope = new RopeConfig(dims, 10000f, 1f, neox, null);
        b.CreateKvCache(new KvCacheConfig(layers, sequences, ctx, kvHeads, headDim, kv, kv));
        var kHost = new float[sequences, ctx * kvDim];
        var vHost = new float[sequences, ctx * kvDim];
        var q = b.Allocate(GpuBackends.MaxBatch, qDim);
        var k = b.Allocate(GpuBackends.MaxBatch, kvDim);
        var v = b.Allocate(GpuBackends.MaxBatch, kvDim);
        var o = b.Allocate(GpuBackends.MaxBatch, qDim);
        var cos = new float[dims / 2];
        var sin = new float[dims / 2];

        var prefill = Enumerable.Range(0, 9).Select(p => (Seq: 0, Pos: p)).Concat(Enumerable.Range(0, 4).Select(p => (Seq: 1, Pos: p))).ToArray();
        (int Seq, int Pos)[][] batches = [prefill, [(1, 4), (0, 9)], [(0, 10)], [(1, 40)]];
        foreach (var batch in batches)
        {
            int n = batch.Length;
            var qs = Check.Random(rng, n * qDim);
            var ks = Check.Random(rng, n * kvDim);
            var vs = Check.Random(rng, n * kvDim);
            b.Write(q, qs);
            b.Write(k, ks);
            b.Write(v, vs);
            b.SetBatch(new int[n], [.. batch.Select(e => e.Pos)], [.. batch.Select(e => e.Seq)]);
            long before = b.Launches;
            var shape = new AttentionShape(heads, kvHeads, headDim, rope, 1e-5f);
            b.RopeStoreKv(layer, q, k, v, shape);
            b.Attention(layer, q, o, shape);
            b.Synchronize();
            // rope+store, attention (split or not: one launch); a q8_0 cache adds its block store
            Assert.Equal(kv == KvCacheType.Q8_0 ? 3 : 2, b.Launches - before);

            for (int t = 0; t < n; t++)
            {
                rope.CosSin(batch[t].Pos, cos, sin);
                for (int h = 0; h < heads; h++) VectorOps.RopeHead(qs.AsSpan(t * qDim + h * headDim, headDim), dims, neox, cos, sin);
                for (int h = 0; h < kvHeads; h++) VectorOps.RopeHead(ks.AsSpan(t * kvDim + h * headDim, headDim), dims, neox, cos, sin);
            }
            StoreKv(kHost, vHost, batch, ks, vs, kvDim, kv, kv);
            Check.Close(Check.Read(b, q, n), qs, $"rotated q, {heads} heads of {headDim}, batch of {n}");
            Check.Close(Check.Read(b, k, n), ks, $"rotated k, {kvHeads} heads of {headDim}, batch of {n}");
            var expected = ReferenceAttention(qs, kHost, vHost, batch, heads, kvHeads, headDim, scale);
            Check.Close(Check.Read(b, o, n), expected,
                $"rope + attention {heads}/{kvHeads} heads of {headDim}, dims {dims}, {kv} cache, batch of {n}");
        }
    }

    /// <summary>
    /// RmsNorm into xb, then matmuls of xb (three parts; or gate and up with SwiGlu, as NormGateUp): one launch that also writes xb.
    /// xb matches VectorOps.RmsNormRef and the outputs the dequantized reference applied to it.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void RmsNormFusesIntoTheMatMulsOfItsOutput(GgmlType type, bool reducing)
    {
        var b = backends.Get(reducing);
        var rng = new Random(41 + (int)type);
        int blockSize = GgmlTypeInfo.BlockSize(type);
        int cols = blockSize == 1 ? 255 : blockSize == 32 ? 288 : 768;
        var ws = Check.Random(rng, cols);
        var normW = b.UploadWeight("norm", GgmlType.F32, 1, cols, System.Runtime.InteropServices.MemoryMarshal.AsBytes(ws.AsSpan()));
        foreach (bool swiGlu in new[] { false, true })
        {
            int[] rows = swiGlu ? [19, 19] : [33, 7, 9];
            var parts = rows.Select(r => Check.RandomWeight(rng, type, r, cols)).ToArray();
            var weights = parts.Select((p, i) => b.UploadWeight($"w{i}", type, rows[i], cols, p.Bytes)).ToArray();
            foreach (int n in TokenCounts)
            {
                var xs = Check.Random(rng, n * cols, 3f);
                var x = b.Allocate(GpuBackends.MaxBatch, cols);
                var xb = b.Allocate(GpuBackends.MaxBatch, cols);
                var ys = rows.Select(r => b.Allocate(GpuBackends.MaxBatch, r)).ToArray();
                b.Write(x, xs);
                Check.SetTokens(b, n);
                long before = b.Launches;
                if (swiGlu) b.NormGateUp(x, new GateUpWeights(normW, weights[0], weights[1]), 1e-5f, xb, ys[0], ys[1]);
                else b.NormMatMuls(x, normW, 1e-5f, xb, [(weights[0], ys[0]), (weights[1], ys[1]), (weights[2], ys[2])]);
                b.Synchronize();
                Assert.Equal(1, b.Launches - before);

                var normed = new float[n * cols];
                for (int t = 0; t < n; t++) VectorOps.RmsNormRef(xs.AsSpan(t * cols, cols), ws, 1e-5f, normed.AsSpan(t * cols, cols));
                Check.Close(Check.Read(b, xb, n), normed, $"{type} normalized input x {n} tokens");
                Check.Close(Check.Read(b, x, n), xs, $"{type} norm source x {n} tokens");
                var expected = new float[rows.Length][];
                for (int i = 0; i < rows.Length; i++)
                {
                    expected[i] = new float[n * rows[i]];
                    for (int t = 0; t < n; t++)
                        for (int r = 0; r < rows[i]; r++)
                        {
                            double sum = 0;
                            for (int j = 0; j < cols; j++) sum += (double)parts[i].Dequantized[r * cols + j] * normed[t * cols + j];
                            expected[i][t * rows[i] + r] = (float)sum;
                        }
                }
                if (swiGlu) VectorOps.SwiGluRef(expected[0], expected[1]);
                for (int i = 0; i < rows.Length; i++)
                {
                    Check.Close(Check.Read(b, ys[i], n), expected[i],
                        $"{type} norm + part {i} of {rows.Length}{(swiGlu ? " with swiglu" : "")} x {n} tokens");
                }
            }
        }
    }

    /// <summary>MatMulAdd: one launch writes y = W·a and x += y.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void ResidualAddFusesIntoTheMatMul(GgmlType type, bool reducing)
    {
        var b = backends.Get(reducing);
        var rng = new Random(51 + (int)type);
        int blockSize = GgmlTypeInfo.BlockSize(type);
        int cols = blockSize == 1 ? 64 : blockSize == 32 ? 96 : 256;
        const int rows = 23;
        var (bytes, deq) = Check.RandomWeight(rng, type, rows, cols);
        var w = b.UploadWeight("wo", type, rows, cols, bytes);
        foreach (int n in TokenCounts)
        {
            var ins = Check.Random(rng, n * cols);
            var xs = Check.Random(rng, n * rows);
            var input = b.Allocate(GpuBackends.MaxBatch, cols);
            var x = b.Allocate(GpuBackends.MaxBatch, rows);
            var y = b.Allocate(GpuBackends.MaxBatch, rows);
            b.Write(input, ins);
            b.Write(x, xs);
            Check.SetTokens(b, n);
            long before = b.Launches;
            b.MatMulAdd(w, input, y, x);
            b.Synchronize();
            Assert.Equal(1, b.Launches - before);

            var product = new float[n * rows];
            for (int t = 0; t < n; t++)
                for (int r = 0; r < rows; r++)
                {
                    double sum = 0;
                    for (int j = 0; j < cols; j++) sum += (double)deq[r * cols + j] * ins[t * cols + j];
                    product[t * rows + r] = (float)sum;
                }
            Check.Close(Check.Read(b, y, n), product, $"{type} matmul of matmul+add x {n} tokens");
            Check.Close(Check.Read(b, x, n), [.. xs.Select((v, i) => v + product[i])], $"{type} residual of matmul+add x {n} tokens");
        }
    }

    public static TheoryData<GgmlType, int, int, int, int, bool, bool, KvCacheType> NormQkvRopeCases() => new()
    {
        { GgmlType.F32, 2, 1, 32, 32, false, false, KvCacheType.F32 },
        { GgmlType.Q8_0, 4, 2, 64, 64, true, true, KvCacheType.F32 },
        { GgmlType.Q4_0, 4, 2, 64, 32, false, true, KvCacheType.F32 },   // partial rotation
        { GgmlType.Q4_K, 2, 2, 32, 16, true, false, KvCacheType.F32 },   // partial rotation, NeoX
        { GgmlType.BF16, 3, 1, 20, 20, false, true, KvCacheType.F32 },
        { GgmlType.Q8_0, 4, 2, 64, 64, true, true, KvCacheType.F16 },
        { GgmlType.Q4_K, 2, 2, 32, 16, true, false, KvCacheType.F16 },   // partial rotation, NeoX
        { GgmlType.Q8_0, 4, 2, 64, 64, true, true, KvCacheType.Q8_0 },
        { GgmlType.F32, 2, 1, 32, 16, false, false, KvCacheType.Q8_0 },  // partial rotation
        { GgmlType.Q3_K, 4, 2, 64, 64, true, true, KvCacheType.F16 },
        { GgmlType.Q2_K, 2, 2, 32, 16, true, false, KvCacheType.F32 },   // partial rotation, NeoX
        { GgmlType.IQ4_XS, 4, 2, 64, 64, false, true, KvCacheType.Q8_0 },
    };

    /// <summary>
    /// The attention block's front as LlamaModel calls it (NormQkvRope, then Attention) runs the norm, the matmuls, RoPE and
    /// the KV store as one launch, then the attention kernel(s). xb, q, k, v and the
    /// attention output match references built from VectorOps (RmsNormRef, RopeHead, AttendRef) and the dequantized
    /// weights, for a prefill of two sequences and decode steps.
    /// </summary>
    [Theory]
    [MemberData(nameof(NormQkvRopeCases))]
    public void NormQkvRopeAndStoreRunAsOneLaunch(GgmlType type, int heads, int kvHeads, int headDim, int dims, bool neox, bool reducing,
        KvCacheType kv) => NormQkvRope(type, type, heads, kvHeads, headDim, dims, neox, reducing, kv);

    /// <summary>
    /// As <see cref="NormQkvRopeAndStoreRunAsOneLaunch"/> with V in another format than Q and K, as Q4_K_M files keep attn_v in
    /// Q6_K: still one launch before attention (MatMulNorm&lt;Q4_K, Q6_K&gt;), each part against its own dequantized weight.
    /// </summary>
    [Theory]
    [InlineData(false, KvCacheType.F32)]
    [InlineData(true, KvCacheType.F16)]
    [InlineData(true, KvCacheType.Q8_0)]
    public void Q4_KWithQ6_KValuesRunAsOneLaunch(bool reducing, KvCacheType kv) =>
        NormQkvRope(GgmlType.Q4_K, GgmlType.Q6_K, 4, 2, 64, 64, true, reducing, kv);

    /// <summary>
    /// The attn_v types of the low-bit files beside their attn_q / attn_k type (tools/convert-weights' QuantRules, as llama-quantize
    /// chooses): one launch before attention as <see cref="Q4_KWithQ6_KValuesRunAsOneLaunch"/>.
    /// </summary>
    public static TheoryData<GgmlType, GgmlType, bool, KvCacheType> LowBitMixedCases() => new()
    {
        { GgmlType.Q3_K, GgmlType.Q4_K, false, KvCacheType.F16 },   // Q3_K_M
        { GgmlType.Q3_K, GgmlType.Q5_K, true, KvCacheType.F32 },    // Q3_K_M's first two attn_v, Q3_K_L
        { GgmlType.Q2_K, GgmlType.Q4_K, true, KvCacheType.F16 },    // Q2_K, GQA of 4 or more
        { GgmlType.Q2_K, GgmlType.Q3_K, false, KvCacheType.Q8_0 },  // Q2_K, GQA below 4
        { GgmlType.Q2_K, GgmlType.Q5_K, false, KvCacheType.F16 },   // Q2_K of a 70B
        { GgmlType.IQ4_XS, GgmlType.Q5_K, true, KvCacheType.F16 },  // IQ4_XS, GQA of 4 or more
    };

    [Theory]
    [MemberData(nameof(LowBitMixedCases))]
    public void LowBitWithTheirValueTypesRunAsOneLaunch(GgmlType qkType, GgmlType vType, bool reducing, KvCacheType kv) =>
        NormQkvRope(qkType, vType, 4, 2, 64, 64, true, reducing, kv);

    private void NormQkvRope(GgmlType type, GgmlType vType, int heads, int kvHeads, int headDim, int dims, bool neox, bool reducing,
        KvCacheType kv)
    {
        var b = backends.Get(reducing);
        var rng = new Random(heads * 977 + headDim + dims + (int)type);
        const int layers = 2, layer = 0, ctx = 48, sequences = 2;
        int cols = GgmlTypeInfo.BlockSize(type) == 256 ? 256 : 96;
        int qDim = heads * headDim, kvDim = kvHeads * headDim;
        float scale = 1f / MathF.Sqrt(headDim);
        var rope = new RopeConfig(dims, 10000f, 1f, neox, null);
        b.CreateKvCache(new KvCacheConfig(layers, sequences, ctx, kvHeads, headDim, kv, kv));
        var ws = Check.Random(rng, cols);
        var normW = b.UploadWeight("norm", GgmlType.F32, 1, cols, System.Runtime.InteropServices.MemoryMarshal.AsBytes(ws.AsSpan()));
        int[] rows = [qDim, kvDim, kvDim];
        GgmlType[] types = [type, type, vType];
        var parts = rows.Select((r, i) => Check.RandomWeight(rng, types[i], r, cols)).ToArray();
        var weights = parts.Select((p, i) => b.UploadWeight($"w{i}", types[i], rows[i], cols, p.Bytes)).ToArray();
        var x = b.Allocate(GpuBackends.MaxBatch, cols);
        var xb = b.Allocate(GpuBackends.MaxBatch, cols);
        var q = b.Allocate(GpuBackends.MaxBatch, qDim);
        var k = b.Allocate(GpuBackends.MaxBatch, kvDim);
        var v = b.Allocate(GpuBackends.MaxBatch, kvDim);
        var o = b.Allocate(GpuBackends.MaxBatch, qDim);
        var kHost = new float[sequences, ctx * kvDim];
        var vHost = new float[sequences, ctx * kvDim];
        var cos = new float[dims / 2];
        var sin = new float[dims / 2];

        var prefill = Enumerable.Range(0, 5).Select(p => (Seq: 0, Pos: p)).Concat(Enumerable.Range(0, 3).Select(p => (Seq: 1, Pos: p))).ToArray();
        (int Seq, int Pos)[][] batches = [prefill, [(1, 3), (0, 5)], [(0, 6)]];
        foreach (var batch in batches)
        {
            int n = batch.Length;
            var xs = Check.Random(rng, n * cols, 2f);
            b.Write(x, xs);
            b.SetBatch(new int[n], [.. batch.Select(e => e.Pos)], [.. batch.Select(e => e.Seq)]);
            long before = b.Launches;
            var shape = new AttentionShape(heads, kvHeads, headDim, rope, 1e-5f);
            b.NormQkvRope(layer, x, new QkvWeights(normW, weights[0], weights[1], weights[2]), shape, xb, q, k, v);
            long atAttention = b.Launches;
            b.Attention(layer, q, o, shape);
            b.Synchronize();
            Assert.Equal(kv == KvCacheType.Q8_0 ? 2 : 1, atAttention - before); // a q8_0 cache adds its block store
            Assert.Equal(kv == KvCacheType.Q8_0 ? 3 : 2, b.Launches - before); // norm+qkv+rope+store, attention

            var normed = new float[n * cols];
            for (int t = 0; t < n; t++) VectorOps.RmsNormRef(xs.AsSpan(t * cols, cols), ws, 1e-5f, normed.AsSpan(t * cols, cols));
            var outs = new float[3][];
            for (int i = 0; i < 3; i++)
            {
                outs[i] = new float[n * rows[i]];
                for (int t = 0; t < n; t++)
                    for (int r = 0; r < rows[i]; r++)
                    {
                        double sum = 0;
                        for (int j = 0; j < cols; j++) sum += (double)parts[i].Dequantized[r * cols + j] * normed[t * cols + j];
                        outs[i][t * rows[i] + r] = (float)sum;
                    }
            }
            var (qs, ks, vs) = (outs[0], outs[1], outs[2]);
            for (int t = 0; t < n; t++)
            {
                rope.CosSin(batch[t].Pos, cos, sin);
                for (int h = 0; h < heads; h++) VectorOps.RopeHead(qs.AsSpan(t * qDim + h * headDim, headDim), dims, neox, cos, sin);
                for (int h = 0; h < kvHeads; h++) VectorOps.RopeHead(ks.AsSpan(t * kvDim + h * headDim, headDim), dims, neox, cos, sin);
            }
            StoreKv(kHost, vHost, batch, ks, vs, kvDim, kv, kv);
            Check.Close(Check.Read(b, xb, n), normed, $"{type} xb, batch of {n}");
            Check.Close(Check.Read(b, q, n), qs, $"{type} rotated q, batch of {n}");
            Check.Close(Check.Read(b, k, n), ks, $"{type} rotated k, batch of {n}");
            Check.Close(Check.Read(b, v, n), vs, $"{type} v, batch of {n}");
            var expected = ReferenceAttention(qs, kHost, vHost, batch, heads, kvHeads, headDim, scale);
            Check.Close(Check.Read(b, o, n), expected,
                $"{type} norm + qkv + rope + attention {heads}/{kvHeads} heads of {headDim}, dims {dims}, {kv} cache, batch of {n}");
        }
    }

    /// <summary>
    /// The logits path as LlamaModel calls it (NormMatMulRows of one row: the gather, its norm, the output matmul) is one
    /// launch: the copy holds the normalized row (VectorOps.RmsNormRef) and the logits match the dequantized reference.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q8_0, false)]
    [InlineData(GgmlType.Q8_0, true)]
    [InlineData(GgmlType.BF16, true)]
    public void GatherNormAndOutputMatMulRunAsOneLaunch(GgmlType type, bool reducing)
    {
        var b = backends.Get(reducing);
        var rng = new Random(61 + (int)type);
        const int cols = 128, rows = 41, n = 5, pick = 3;
        var ws = Check.Random(rng, cols);
        var normW = b.UploadWeight("norm", GgmlType.F32, 1, cols, System.Runtime.InteropServices.MemoryMarshal.AsBytes(ws.AsSpan()));
        var (bytes, deq) = Check.RandomWeight(rng, type, rows, cols);
        var w = b.UploadWeight("output", type, rows, cols, bytes);
        var xs = Check.Random(rng, n * cols, 3f);
        var x = b.Allocate(GpuBackends.MaxBatch, cols);
        var last = b.Allocate(GpuBackends.MaxBatch, cols);
        var logits = b.Allocate(GpuBackends.MaxBatch, rows);
        b.Write(x, xs);
        Check.SetTokens(b, n);
        long before = b.Launches;
        b.NormMatMulRows(x, [pick], normW, 1e-5f, w, last, logits);
        b.Synchronize();
        Assert.Equal(1, b.Launches - before);

        var normed = new float[cols];
        VectorOps.RmsNormRef(xs.AsSpan(pick * cols, cols), ws, 1e-5f, normed);
        var expected = new float[rows];
        for (int r = 0; r < rows; r++)
        {
            double sum = 0;
            for (int j = 0; j < cols; j++) sum += (double)deq[r * cols + j] * normed[j];
            expected[r] = (float)sum;
        }
        Check.Close(Check.Read(b, last, 1), normed, $"{type} gathered, normalized row");
        Check.Close(Check.Read(b, logits, 1), expected, $"{type} logits");
        Check.Close(Check.Read(b, x, n), xs, $"{type} gather source");

        // Without a matmul after it, the gathered norm still runs as one launch.
        before = b.Launches;
        b.NormRow(x, 1, normW, 1e-5f, last);
        Check.Close(Check.Read(b, last, 1), Norm(xs.AsSpan(cols, cols), ws), $"{type} gathered norm alone");
        Assert.Equal(1, b.Launches - before);

        static float[] Norm(ReadOnlySpan<float> row, float[] weight)
        {
            var r = new float[row.Length];
            VectorOps.RmsNormRef(row, weight, 1e-5f, r);
            return r;
        }
    }

    /// <summary>
    /// Writes the batch's k and v rows into the host copy of the cache ([sequence, position · kvDim + j]) as the cache gives them
    /// back: rounded to half by System.Half where that part is f16, through ggml's reference q8_0 quantizer and dequantizer
    /// (Q8_0Format, blocks of 32 along each head) where it is q8_0.
    /// </summary>
    internal static void StoreKv(float[,] kHost, float[,] vHost, (int Seq, int Pos)[] batch, float[] ks, float[] vs, int kvDim,
        KvCacheType kType = KvCacheType.F32, KvCacheType vType = KvCacheType.F32)
    {
        for (int t = 0; t < batch.Length; t++)
        {
            var k = Stored(ks.AsSpan(t * kvDim, kvDim), kType);
            var v = Stored(vs.AsSpan(t * kvDim, kvDim), vType);
            for (int j = 0; j < kvDim; j++)
            {
                kHost[batch[t].Seq, batch[t].Pos * kvDim + j] = k[j];
                vHost[batch[t].Seq, batch[t].Pos * kvDim + j] = v[j];
            }
        }

        static unsafe float[] Stored(ReadOnlySpan<float> row, KvCacheType type)
        {
            var r = row.ToArray();
            if (type == KvCacheType.F16) for (int j = 0; j < r.Length; j++) r[j] = (float)(Half)r[j];
            if (type != KvCacheType.Q8_0) return r;
            var bytes = new byte[r.Length / Q8_0Format.BlockSize * Q8_0Format.TypeSize];
            fixed (float* x = r)
            fixed (byte* q = bytes)
            {
                Q8_0Format.QuantizeRef(x, q, r.Length);
                Q8_0Format.DequantizeRef(q, x, r.Length);
            }
            return r;
        }
    }

    /// <summary>
    /// The scalar reference attention (<see cref="VectorOps.AttendRef"/>) of every token and head of the batch over the host
    /// cache.
    /// </summary>
    internal static unsafe float[] ReferenceAttention(float[] qs, float[,] kHost, float[,] vHost, (int Seq, int Pos)[] batch, int heads,
        int kvHeads, int headDim, float scale)
    {
        int qDim = heads * headDim, kvDim = kvHeads * headDim, cacheFloats = kHost.GetLength(1);
        var expected = new float[batch.Length * qDim];
        var scores = new float[cacheFloats / kvDim];
        for (int t = 0; t < batch.Length; t++)
        {
            var (seq, pos) = batch[t];
            var keys = new float[cacheFloats];
            var values = new float[cacheFloats];
            for (int j = 0; j < keys.Length; j++) { keys[j] = kHost[seq, j]; values[j] = vHost[seq, j]; }
            fixed (float* kp = keys)
            fixed (float* vp = values)
                for (int h = 0; h < heads; h++)
                {
                    int kvh = h / (heads / kvHeads);
                    VectorOps.AttendRef(qs.AsSpan(t * qDim + h * headDim, headDim), kp + kvh * headDim, vp + kvh * headDim, kvDim, pos + 1,
                        scale, scores, expected.AsSpan(t * qDim + h * headDim, headDim));
                }
        }
        return expected;
    }
}
