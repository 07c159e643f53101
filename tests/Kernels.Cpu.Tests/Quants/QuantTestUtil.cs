using System.Runtime.InteropServices;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Tests.Quants;

/// <summary>Native buffers and data generators shared by the quant tests.</summary>
internal static unsafe class QuantTestUtil
{
    /// <summary>ggml test-quantize-fns' synthetic data: 0.1 + amplitude * cos(i + offset), evaluated as in C (double add, float cos).</summary>
    public static float[] GgmlData(int n, float offset, float amplitude = 2.0f)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(0.1 + (double)(amplitude * MathF.Cos(i + offset)));
        return x;
    }

    /// <summary>Random values with a spread of magnitudes, like real weights and activations.</summary>
    public static float[] RandomData(int n, int seed, float scale = 1.0f)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            x[i] = scale * (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return x;
    }

    public static byte[] Quantize(GgmlType type, float[] x)
    {
        if (type == GgmlType.F32) return MemoryMarshal.AsBytes(x.AsSpan()).ToArray();
        var dst = new byte[GgmlTypeInfo.RowBytes(type, x.Length)];
        RowCodec.Quantize(type, x, dst);
        return dst;
    }

    public static float[] Dequantize(GgmlType type, byte[] q, int n)
    {
        var y = new float[n];
        RowCodec.Dequantize(type, q, y);
        return y;
    }

    /// <summary>
    /// Σ|w·a| of a weight row of <paramref name="type"/> and an activation row of <paramref name="aType"/> (their first n elements,
    /// dequantized by the formats' references; an activation row's trailing block sums are ignored): the scale of the dot tests'
    /// relative tolerance.
    /// </summary>
    public static double AbsDot(GgmlType type, ReadOnlySpan<byte> w, GgmlType aType, ReadOnlySpan<byte> a, int n)
    {
        var wf = new float[n];
        var af = new float[n];
        RowCodec.Dequantize(type, w[..(int)GgmlTypeInfo.RowBytes(type, n)], wf);
        RowCodec.Dequantize(aType, a[..(int)GgmlTypeInfo.RowBytes(aType, n)], af);
        double s = 0;
        for (int i = 0; i < n; i++) s += Math.Abs((double)wf[i] * af[i]);
        return s;
    }

    /// <inheritdoc cref="AbsDot(GgmlType, ReadOnlySpan{byte}, GgmlType, ReadOnlySpan{byte}, int)"/>
    public static double AbsDot(GgmlType type, byte* w, GgmlType aType, byte* a, int n) =>
        AbsDot(type, new ReadOnlySpan<byte>(w, (int)GgmlTypeInfo.RowBytes(type, n)), aType,
            new ReadOnlySpan<byte>(a, (int)GgmlTypeInfo.RowBytes(aType, n)), n);

    public static float Dot(delegate*<int, byte*, byte*, float> dot, int n, byte[] w, byte[] a)
    {
        fixed (byte* pw = w, pa = a) return dot(n, pw, pa);
    }
}
