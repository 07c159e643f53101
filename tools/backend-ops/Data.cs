using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.BackendOps;

/// <summary>Random inputs and the reference (de)quantization of whole matrices, split by rows across cores.</summary>
internal static class Data
{
    /// <summary>n values uniform in [-scale, scale) (ggml's init_tensor_uniform), from <paramref name="rng"/>.</summary>
    public static float[] Uniform(Random rng, int n, float scale = 1f)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return a;
    }

    /// <summary>
    /// Like <see cref="Uniform"/> for large matrices: rows drawn in parallel from generators seeded by (seed, row block),
    /// so the values do not depend on the core count.
    /// </summary>
    public static float[] UniformLarge(int seed, long rows, int cols, float scale = 1f)
    {
        var a = new float[rows * cols];
        const int block = 64;
        Parallel.For(0, (rows + block - 1) / block, b =>
        {
            var rng = new Random(HashCode.Combine(seed, b));
            long end = Math.Min(rows, (b + 1) * block) * cols;
            for (long i = b * block * cols; i < end; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        });
        return a;
    }

    /// <summary>(rows, cols) floats in <paramref name="type"/>'s GGUF encoding, by ggml's reference quantizer.</summary>
    public static byte[] Quantize(GgmlType type, float[] values, long rows, int cols)
    {
        long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
        var bytes = new byte[rows * rowBytes];
        ForRowBlocks(rows, cols, (r0, n) =>
            RowCodec.Quantize(type, values.AsSpan((int)(r0 * cols), n * cols), bytes.AsSpan((int)(r0 * rowBytes), (int)(n * rowBytes))));
        return bytes;
    }

    /// <summary>The values the reference dequantizer decodes from (rows, cols) of <paramref name="type"/>.</summary>
    public static float[] Dequantize(GgmlType type, byte[] bytes, long rows, int cols)
    {
        long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
        var values = new float[rows * cols];
        ForRowBlocks(rows, cols, (r0, n) =>
            RowCodec.Dequantize(type, bytes.AsSpan((int)(r0 * rowBytes), (int)(n * rowBytes)), values.AsSpan((int)(r0 * cols), n * cols)));
        return values;
    }

    private static void ForRowBlocks(long rows, int cols, Action<long, int> body)
    {
        int block = (int)Math.Max(1, Math.Min(rows, (1 << 18) / Math.Max(cols, 1)));
        long blocks = (rows + block - 1) / block;
        if (blocks == 1)
        {
            body(0, (int)rows);
            return;
        }
        Parallel.For(0, blocks, b => body(b * block, (int)Math.Min(block, rows - b * block)));
    }
}
