using Infer.Kernels.Cpu.Quants;
using Infer.Kernels.Cpu.Tests.Quants;
using Infer.Kernels.Cpu.Threading;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Tests;

namespace Infer.Kernels.Cpu.Tests.Backend;

/// <summary>
/// Repacking in the background (<c>repackInBackground</c>): until a weight's copy is published its matmuls are exactly those of a
/// backend that never repacks; afterwards exactly those of one that repacked at load; disposing mid-way stops the thread.
/// </summary>
public unsafe class BackgroundRepackTests
{
    private static (float[] Logits, float[] Next) Run(LlamaModel model, int[] ids)
    {
        var session = new Session(model);
        session.Append(ids);
        var logits = (float[])session.Logits.Clone();
        session.Append(7);
        return (logits, (float[])session.Logits.Clone());
    }

    private static LlamaModel Load(GgufFile file, CpuBackend backend) =>
        LlamaModel.Load(file, backend, new ModelOptions(ContextLength: 64, BatchSize: 16));

    [Theory]
    [InlineData("llama3")]
    [InlineData("llama2-spm")]
    public void Q8_0ModelGivesThePlainLogitsBeforeAndTheRepackedOnesAfter(string name)
    {
        Isa.RequireRepacked(GgmlType.Q8_0, QuantKernels.IsaLevel.Best);
        int[] ids = [1, 15, 300, 2000, 9, 77, 5];
        using var file = GgufFile.Open(Fixtures.Model(name, "q8_0"));
        float[] plainLogits, plainNext, packedLogits, packedNext;
        using (var plain = Load(file, new CpuBackend(2, 16, repack: false))) (plainLogits, plainNext) = Run(plain, ids);
        using (var packed = Load(file, new CpuBackend(2, 16, repack: true))) (packedLogits, packedNext) = Run(packed, ids);
        Assert.NotEqual(plainLogits, packedLogits); // the two layouts sum in different orders: the comparisons below can tell them apart

        var backend = new CpuBackend(2, 16, repack: true, repackInBackground: true);
        backend.Background!.Gate.Reset(); // the thread waits before its first weight
        using var model = Load(file, backend);
        Assert.True(backend.RepackPending);
        Assert.Equal(0, backend.RepackedBytes);
        var (logits, next) = Run(model, ids);
        Assert.Equal(plainLogits, logits);
        Assert.Equal(plainNext, next);

        backend.Background.Gate.Set();
        backend.WaitForRepack();
        Assert.False(backend.RepackPending);
        Assert.True(backend.RepackedBytes > 0);
        (logits, next) = Run(model, ids);
        Assert.Equal(packedLogits, logits);
        Assert.Equal(packedNext, next);
    }

    [Fact]
    public void WeightsGiveThePlainProductsUntilPublishedAndTheCountsAddUp()
    {
        Isa.RequireRepacked(GgmlType.Q4_0, QuantKernels.IsaLevel.Best);
        const int rows = 40, cols = 256, tokens = 5;
        var w = new byte[rows * GgmlTypeInfo.RowBytes(GgmlType.Q4_0, cols)];
        RowCodec.Quantize(GgmlType.Q4_0, QuantTestUtil.RandomData(rows * cols, 11), w);
        var x = QuantTestUtil.RandomData(tokens * cols, 12);
        float[] Product(CpuBackend b, Runtime.Backend.IWeight weight) => MatMulTests.Product(b, weight, x, tokens);
        fixed (byte* pw = w)
        {
            using var plain = new CpuBackend(2, tokens, repack: false);
            using var packed = new CpuBackend(2, tokens, repack: true);
            var expectedPlain = Product(plain, plain.CreateWeight("w", GgmlType.Q4_0, rows, cols, pw));
            var expectedPacked = Product(packed, packed.CreateWeight("w", GgmlType.Q4_0, rows, cols, pw));
            long packedBytes = packed.RepackedBytes;
            Assert.Equal(40L / 8 * 8 * GgmlTypeInfo.RowBytes(GgmlType.Q4_0, cols), packedBytes);

            using var background = new CpuBackend(2, tokens, repack: true, repackInBackground: true);
            background.Background!.Gate.Reset();
            var a = background.CreateWeight("a", GgmlType.Q4_0, rows, cols, pw);
            var b = background.CreateWeight("b", GgmlType.Q4_0, rows, cols, pw);
            Assert.Equal(expectedPlain, Product(background, a));
            background.Background.Gate.Set();
            background.WaitForRepack();
            Assert.Equal(expectedPacked, Product(background, a));
            Assert.Equal(expectedPacked, Product(background, b));
            Assert.Equal(2 * packedBytes, background.RepackedBytes);
        }
    }

    [Fact]
    public void DisposingWhileWeightsWaitStopsTheThread()
    {
        Isa.RequireRepacked(GgmlType.Q8_0, QuantKernels.IsaLevel.Best);
        const int rows = 64, cols = 512;
        var w = new byte[rows * GgmlTypeInfo.RowBytes(GgmlType.Q8_0, cols)];
        RowCodec.Quantize(GgmlType.Q8_0, QuantTestUtil.RandomData(rows * cols, 3), w);
        fixed (byte* pw = w)
        {
            var backend = new CpuBackend(1, 4, repack: true, repackInBackground: true);
            backend.Background!.Gate.Reset();
            for (int i = 0; i < 50; i++) backend.CreateWeight($"w{i}", GgmlType.Q8_0, rows, cols, pw);
            Assert.True(backend.RepackPending);
            var dispose = new Thread(backend.Dispose);
            dispose.Start();
            Assert.True(dispose.Join(TimeSpan.FromSeconds(30)), "Dispose did not return");
            Assert.Throws<ObjectDisposedException>(() => backend.Background.Enqueue(null!, null, null, false));
        }
    }

    /// <summary>The repack thread's priority, read back from the kernel (/proc), not from our own call's result.</summary>
    [Fact]
    public void LoweringAThreadsPrioritySetsItsNiceValueAlone()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "thread priorities are set only on Linux");
        string before = NiceField(File.ReadAllText("/proc/thread-self/stat"));
        bool lowered = false;
        string? stat = null;
        var thread = new Thread(() =>
        {
            lowered = ThreadNice.Lower(19);
            stat = File.ReadAllText("/proc/thread-self/stat");
        });
        thread.Start();
        thread.Join();
        Assert.True(lowered);
        Assert.Equal("19", NiceField(stat!));
        Assert.Equal(before, NiceField(File.ReadAllText("/proc/thread-self/stat"))); // this thread is untouched
    }

    /// <summary>Field 19 of /proc/[pid]/task/[tid]/stat (after the parenthesized command name, which may hold spaces).</summary>
    private static string NiceField(string stat) => stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[16];
}
