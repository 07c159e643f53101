using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Tests.Backend;

/// <summary>
/// Activations over another's memory (<see cref="CpuBackend.AllocateShared"/>, what the model uses for buffers whose lifetimes
/// do not overlap): the same memory, and one write count, so a matmul never reuses an input quantized before a write through the other.
/// </summary>
public unsafe class SharedActivationTests
{
    [Fact]
    public void SharedActivationSeesTheParentsWritesAndRequantizes()
    {
        const int rows = 16, cols = 64, tokens = 4;
        var rng = new Random(5);
        var wf = new float[rows * cols];
        for (int i = 0; i < wf.Length; i++) wf[i] = (float)(rng.NextDouble() * 2 - 1);
        var w = new byte[rows * GgmlTypeInfo.RowBytes(GgmlType.Q8_0, cols)];
        RowCodec.Quantize(GgmlType.Q8_0, wf, w);
        using var backend = new CpuBackend(threads: 2, maxBatch: tokens);
        fixed (byte* pw = w)
        {
            var weight = backend.CreateWeight("w", GgmlType.Q8_0, rows, cols, pw);
            var parent = backend.Allocate(tokens, 2 * cols);
            var child = backend.AllocateShared(parent, tokens, cols);
            var separate = backend.Allocate(tokens, cols);
            var y = backend.Allocate(tokens, rows);
            var ids = new int[tokens];
            backend.SetBatch(ids, ids, ids);

            var first = Random(rng, tokens * cols);
            first.CopyTo(backend.View(child, tokens));
            backend.MatMul(weight, child, y); // quantizes child's rows
            var y1 = backend.View(y, tokens).ToArray();

            // a write through the parent changes the child's rows (its first tokens x cols floats)
            var second = Random(rng, tokens * 2 * cols);
            second.CopyTo(backend.View(parent, tokens));
            backend.MatMul(weight, child, y); // (before anything else marks the child written)
            var y2 = backend.View(y, tokens).ToArray();
            Assert.Equal(second.AsSpan(0, tokens * cols).ToArray(), backend.View(child, tokens).ToArray());

            second.AsSpan(0, tokens * cols).CopyTo(backend.View(separate, tokens));
            backend.MatMul(weight, separate, y);
            Assert.Equal(backend.View(y, tokens).ToArray(), y2); // the child's second product is of the new rows...
            Assert.NotEqual(y1, y2); // ...not the first rows' cached quantization

            Assert.Throws<ArgumentException>(() => backend.AllocateShared(parent, tokens, 2 * cols + 1));
        }
    }

    private static float[] Random(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 4 - 2);
        return x;
    }
}
