using ILGPU.Runtime.CPU;
using Infer.Kernels.Gpu.Kernels;
using Infer.Runtime.Gguf;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Tests;

namespace Infer.Kernels.Gpu.Tests;

/// <summary>
/// The int8 GEMM of prefill batches (<see cref="GpuKernels.GemmQ8Wide{TF}"/>, the default, and the first kernel
/// <see cref="GpuKernels.GemmQ8{TF}"/>, after <see cref="GpuKernels.QuantizeQ8"/>) on ILGPU's CPU accelerator, where each thread
/// computes its tensor-core fragment from the shared tiles, for every format of int8 blocks: against ggml's dequantized weights
/// times the activations quantized by ggml's q8_0 rule on the host (NMSE ≤ 1e-10: the GEMM sums each block's quants exactly in
/// integers, so only the float order of the scaling differs), over partial row tiles, token tiles, several k stages and a k that
/// is not a multiple of the stage; and against the float32 product within what int8 activations cost.
/// </summary>
public sealed class GemmTests : IDisposable
{
    private const int MaxBatch = 80;
    private readonly GpuBackend _backend = Open(gemmMinTokens: 1);

    /// <summary>
    /// ILGPU's CPU accelerator with groups of eight 32-thread warps, as the wide GEMM's groups (the default shape has 4 threads);
    /// <paramref name="gemmKernel"/> as <see cref="GpuBackendOptions.GemmKernel"/> (2: the wide kernel on every shape, however few its tiles).
    /// </summary>
    internal static GpuBackend Open(int gemmMinTokens, int maxBatch = MaxBatch, int gemmKernel = 2) =>
        new(GpuContextFactory.OpenIlgpuCpu(new CPUDevice(numThreadsPerWarp: 32, numWarpsPerMultiprocessor: 8, numMultiprocessors: 2)),
            new GpuBackendOptions(maxBatch, GemmMinTokens: gemmMinTokens, GemmKernel: gemmKernel));

    public void Dispose() => _backend.Dispose();

    public static TheoryData<GgmlType> Types() =>
    [
        GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
        GgmlType.Q3_K,
        GgmlType.IQ4_XS,
        GgmlType.Q4_1,
        GgmlType.Q5_0,
        GgmlType.Q5_1,
        GgmlType.IQ4_NL,
    ];

    /// <summary>
    /// The wide kernel (128 × 64 tiles, stages of 4 blocks): rows 1, 63, 130 (a partial second row tile), 200; cols of 1, 3, 9 and
    /// 19 blocks of 32 (one, one partial, three partial and five partial stages) or 1, 3, 5 super-blocks; tokens across 64.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Int8GemmSumsEachBlockExactly(GgmlType type)
    {
        Assert.Contains("GemmQ8Wide", _backend.Int8GemmStatus);
        var shapes = GgmlTypeInfo.BlockSize(type) == 32
            ? new[] { (1, 32), (63, 96), (130, 288), (200, 608) }
            : [(1, 256), (63, 768), (130, 256), (200, 1280)];
        CheckGemm(_backend, type, shapes, [1, 5, 33, 64, 70]);
    }

    /// <summary>The first kernel (64 × 32 tiles, <see cref="GpuBackendOptions.GemmKernel"/> 1) on the shapes it was written for.</summary>
    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.Q5_1)]
    public void FirstKernelSumsEachBlockExactly(GgmlType type)
    {
        using var b = Open(gemmMinTokens: 1, gemmKernel: 1);
        Assert.Contains("GemmQ8,", b.Int8GemmStatus);
        var shapes = GgmlTypeInfo.BlockSize(type) == 32
            ? new[] { (1, 32), (63, 96), (65, 288), (130, 32) }
            : [(1, 256), (63, 768), (130, 512)];
        CheckGemm(b, type, shapes, [1, 5, 31, 32, 33, 70]);
    }

    /// <summary>
    /// Q, K and V (gate and up) share one GEMM launch: parts of 130, 63 and 200 rows (3, 1 and 2 row tiles of the wide kernel; 3, 1
    /// and 4 of the first) give each part exactly what its own launch gives; a third part of another format takes a launch of its
    /// own; MatMulAdd on the GEMM adds into the residual in the same launch (y and residual + y, bit for bit).
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q8_0, 2)]
    [InlineData(GgmlType.Q4_K, 2)]
    [InlineData(GgmlType.Q4_0, 1)]
    public void PartsShareOneLaunch(GgmlType type, int gemmKernel)
    {
        using var b = Open(gemmMinTokens: 1, gemmKernel: gemmKernel);
        var rng = new Random(5 + (int)type);
        int cols = GgmlTypeInfo.BlockSize(type) == 32 ? 96 : 512, n = 37;
        int[] rows = [130, 63, 200];
        var third = type == GgmlType.Q4_K ? GgmlType.Q6_K : type;
        var w = new[] { type, type, third }
            .Select((t, i) => b.UploadWeight($"w{i}", t, rows[i], cols, Check.RandomWeight(rng, t, rows[i], cols).Bytes)).ToArray();
        var x = b.Allocate(MaxBatch, cols);
        b.Write(x, Check.Random(rng, n * cols, 3f));
        Check.SetTokens(b, n);
        var alone = new float[3][];
        for (int i = 0; i < 3; i++)
        {
            var y = b.Allocate(MaxBatch, rows[i]);
            b.MatMul(w[i], x, y);
            alone[i] = Check.Read(b, y, n);
        }
        var ys = rows.Select(r => b.Allocate(MaxBatch, r)).ToArray();
        long before = b.Launches;
        b.Gemms(x, [(w[0], ys[0]), (w[1], ys[1]), (w[2], ys[2])]);
        Assert.Equal(third == type ? 2 : 3, b.Launches - before); // quantize + one GEMM (+ one for the other format)
        for (int i = 0; i < 3; i++) Assert.Equal(alone[i], Check.Read(b, ys[i], n));

        var residual = b.Allocate(MaxBatch, rows[0]);
        var r0 = Check.Random(rng, n * rows[0], 1f);
        b.Write(residual, r0);
        before = b.Launches;
        b.MatMulAdd(w[0], x, ys[0], residual);
        Assert.Equal(2, b.Launches - before); // quantize + GEMM, the add in its stores
        Assert.Equal(alone[0], Check.Read(b, ys[0], n));
        Assert.Equal(r0.Select((v, i) => v + alone[0][i]).ToArray(), Check.Read(b, residual, n));
    }

    private static void CheckGemm(GpuBackend backend, GgmlType type, (int Rows, int Cols)[] shapes, int[] tokens)
    {
        var rng = new Random(7 + (int)type);
        List<float> allGot = [], allPlain = [];
        foreach (var (rows, cols) in shapes)
        {
            var (bytes, deq) = Check.RandomWeight(rng, type, rows, cols);
            var weight = backend.UploadWeight("w", type, rows, cols, bytes);
            foreach (int n in tokens)
            {
                var xs = Check.Random(rng, n * cols, scale: 3f);
                var x = backend.Allocate(MaxBatch, cols);
                var y = backend.Allocate(MaxBatch, rows + 5); // a row stride that differs from the weight's rows
                backend.Write(x, xs);
                Check.SetTokens(backend, n);
                long before = backend.Launches;
                backend.MatMul(weight, x, y);
                Assert.Equal(2, backend.Launches - before); // quantize + GEMM
                var got = Check.Read(backend, y, n);

                // the dequantized weights (scale · q − min, ggml's reference decoders) times the int8 activations: what the GEMM's
                // integer block sums, scaled, add up to
                var xq = Check.Int8Activations(xs);
                var exact = new float[got.Length];
                var plain = new float[got.Length];
                for (int t = 0; t < n; t++)
                    for (int r = 0; r < rows; r++)
                    {
                        double s = 0, f = 0;
                        for (int j = 0; j < cols; j++)
                        {
                            s += (double)deq[r * cols + j] * xq[t * cols + j];
                            f += (double)deq[r * cols + j] * xs[t * cols + j];
                        }
                        exact[t * (rows + 5) + r] = (float)s;
                        plain[t * (rows + 5) + r] = (float)f;
                    }
                string what = $"{type} [{rows} x {cols}] x {n} tokens";
                double nmse = Check.Nmse(got, exact);
                Assert.True(nmse <= 1e-10, $"{what}: NMSE {nmse:E2} against the int8-activation product");
                allGot.AddRange(got);
                allPlain.AddRange(plain);
            }
        }
        // int8 activations (a step of max|x| / 127 per block) against the float32 product, over all cases: about 1.5e-5 expected
        double nmseFloat = Check.Nmse(allGot.ToArray(), allPlain.ToArray());
        Assert.True(nmseFloat is > 1e-8 and <= 1e-4, $"{type}: NMSE {nmseFloat:E2} against the float32 product");
    }

    [Fact]
    public void BatchesBelowTheThresholdKeepTheFloatMatMul()
    {
        using var b = Open(gemmMinTokens: 8);
        var rng = new Random(3);
        int rows = 40, cols = 64;
        var (bytes, deq) = Check.RandomWeight(rng, GgmlType.Q8_0, rows, cols);
        var weight = b.UploadWeight("w", GgmlType.Q8_0, rows, cols, bytes);
        foreach (int n in new[] { 7, 8 })
        {
            var xs = Check.Random(rng, n * cols);
            var x = b.Allocate(MaxBatch, cols);
            var y = b.Allocate(MaxBatch, rows);
            b.Write(x, xs);
            Check.SetTokens(b, n);
            long before = b.Launches;
            b.MatMul(weight, x, y);
            var got = Check.Read(b, y, n);
            var expected = new float[n * rows];
            for (int t = 0; t < n; t++)
                for (int r = 0; r < rows; r++)
                {
                    double s = 0;
                    for (int j = 0; j < cols; j++) s += (double)deq[r * cols + j] * xs[t * cols + j];
                    expected[t * rows + r] = (float)s;
                }
            double nmse = Check.Nmse(got, expected);
            if (n < 8)
            {
                Assert.Equal(1, b.Launches - before); // the float matmul
                Assert.True(nmse <= 1e-7, $"{n} tokens: NMSE {nmse:E2}");
            }
            else
            {
                Assert.Equal(2, b.Launches - before); // quantize + GEMM
                Assert.True(nmse is > 1e-9 and <= 1e-4, $"{n} tokens: NMSE {nmse:E2} (int8 activations)");
            }
        }
    }

    /// <summary>
    /// Q8_0 fixture models with every matmul of the prompt on the int8 GEMM: the last logits within llama.cpp's own Q8_0 distance
    /// from transformers (which ran the BF16 weights), the bound of the float32 path's test.
    /// </summary>
    [Theory]
    [InlineData("llama3", "prompt1")]
    [InlineData("llama2-spm", "prompt0")]
    public void Q8_0ModelOnTheGemmStaysWithinLlamaCppBound(string model, string caseId)
    {
        var c = ReferenceCase.Find(model, caseId);
        float bound = (float)ReferenceCase.LlamaCppQ8Differences(model)[caseId];
        using var file = GgufFile.Open(Fixtures.Model(model, "q8_0"));
        // the automatic choice (GemmKernel 0), as runs make it: the wide kernel where its tiles fill the two multiprocessors
        using var backend = Open(gemmMinTokens: 2, maxBatch: 64, gemmKernel: caseId == "prompt1" ? 0 : 2);
        using var m = LlamaModel.Load(file, backend, new ModelOptions(ContextLength: 64, BatchSize: 64));
        var session = new Session(m);
        long before = backend.Launches;
        session.Append(c.InputIds);
        Assert.True(c.InputIds.Length >= 2);
        float maxDiff = Logits.MaxAbsDiff(session.Logits, c.LoadLogits());
        Assert.True(maxDiff <= bound, $"{model}/{caseId} q8_0 on the GEMM: max |logit - transformers| = {maxDiff}, llama.cpp's is {bound}");
        Assert.True(backend.Launches - before > 2 + 5 * m.Config.BlockCount, "the prompt ran the unfused GEMM path"); // norms, GEMMs, adds
    }
}
