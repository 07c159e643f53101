using ILGPU.Runtime.CPU;
using Infer.Kernels.Gpu.Kernels;
using Infer.Runtime.Gguf;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Tests;

namespace Infer.Kernels.Gpu.Tests;

/// <summary>
/// The int8 GEMM of prefill batches (<see cref="GpuKernels.GemmQ8{TF}"/> after <see cref="GpuKernels.QuantizeQ8"/>) on ILGPU's CPU
/// accelerator, where each thread computes its tensor-core fragment from the shared tiles, for Q8_0, Q4_0, Q4_K and Q6_K:
/// against ggml's dequantized weights times the activations quantized by ggml's q8_0 rule on the host (NMSE ≤ 1e-10: the GEMM
/// sums each block's quants exactly in integers, so only the float order of the scaling differs), over partial row tiles,
/// token tiles and stages; and against the float32 product within what int8 activations cost.
/// </summary>
public sealed class GemmTests : IDisposable
{
    private const int MaxBatch = 80;
    private readonly GpuBackend _backend = Open(gemmMinTokens: 1);

    /// <summary>ILGPU's CPU accelerator with groups of four 32-thread warps, as the GEMM's groups (the default shape has 4 threads).</summary>
    internal static GpuBackend Open(int gemmMinTokens, int maxBatch = MaxBatch) =>
        new(GpuContextFactory.OpenIlgpuCpu(new CPUDevice(numThreadsPerWarp: 32, numWarpsPerMultiprocessor: 4, numMultiprocessors: 2)),
            new GpuBackendOptions(maxBatch, GemmMinTokens: gemmMinTokens));

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

    [Theory]
    [MemberData(nameof(Types))]
    public void Int8GemmSumsEachBlockExactly(GgmlType type)
    {
        var rng = new Random(7 + (int)type);
        List<float> allGot = [], allPlain = [];
        var shapes = GgmlTypeInfo.BlockSize(type) == 32
            ? new[] { (1, 32), (63, 96), (64, 64), (65, 288), (130, 32) }
            : [(1, 256), (63, 768), (65, 256), (130, 512)];
        foreach (var (rows, cols) in shapes)
        {
            var (bytes, deq) = Check.RandomWeight(rng, type, rows, cols);
            var weight = _backend.UploadWeight("w", type, rows, cols, bytes);
            foreach (int n in new[] { 1, 5, 31, 32, 33, 70 })
            {
                var xs = Check.Random(rng, n * cols, scale: 3f);
                var x = _backend.Allocate(MaxBatch, cols);
                var y = _backend.Allocate(MaxBatch, rows + 5); // a row stride that differs from the weight's rows
                _backend.Write(x, xs);
                Check.SetTokens(_backend, n);
                _backend.MatMul(weight, x, y);
                var got = Check.Read(_backend, y, n);

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
        using var backend = Open(gemmMinTokens: 2, maxBatch: 64);
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
