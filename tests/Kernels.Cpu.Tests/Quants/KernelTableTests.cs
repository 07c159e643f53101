using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Tests.Quants;

public unsafe class KernelTableTests
{
    [Theory]
    [InlineData(GgmlType.Q8_0, GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0, GgmlType.Q8_0)]
    [InlineData(GgmlType.Q5_0, GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_1, GgmlType.Q8_1)]
    [InlineData(GgmlType.Q5_1, GgmlType.Q8_1)]
    [InlineData(GgmlType.Q2_K, GgmlType.Q8_K)]
    [InlineData(GgmlType.Q3_K, GgmlType.Q8_K)]
    [InlineData(GgmlType.IQ4_NL, GgmlType.Q8_0)]
    [InlineData(GgmlType.IQ4_XS, GgmlType.Q8_K)]
    [InlineData(GgmlType.Q4_K, GgmlType.Q8_K)]
    [InlineData(GgmlType.Q5_K, GgmlType.Q8_K)]
    [InlineData(GgmlType.Q6_K, GgmlType.Q8_K)]
    [InlineData(GgmlType.F32, GgmlType.F32)]
    [InlineData(GgmlType.F16, GgmlType.F32)]
    [InlineData(GgmlType.BF16, GgmlType.F32)]
    public void PairsWeightTypesWithGgmlVecDotTypes(GgmlType type, GgmlType vecDot)
    {
        var k = QuantKernels.Get(type);
        Assert.True(QuantKernels.IsSupported(type));
        Assert.Equal(type, k.Type);
        Assert.Equal(vecDot, k.VecDotType);
        Assert.Equal(GgmlTypeInfo.BlockSize(type), k.BlockSize);
        Assert.Equal(GgmlTypeInfo.TypeSize(type), k.TypeSize);
        // Q8_0 and Q8_1 activation rows carry two 4-byte values per block after the blocks (read by the repacked kernels)
        long trailers = vecDot is GgmlType.Q8_0 or GgmlType.Q8_1 ? 4096 / 32 * 8 : 0;
        Assert.Equal(GgmlTypeInfo.RowBytes(vecDot, 4096) + trailers, k.ActivationRowBytes(4096));
        Assert.True(k.Dot != null && k.Dot4 != null && k.Dequantize != null);
        Assert.Equal(vecDot == GgmlType.F32, k.QuantizeActivations == null);
        Assert.Same(k, QuantKernels.Get(type));
    }

    [Fact]
    public void QuantizeActivationsProducesTheReferenceBytes()
    {
        foreach (var type in QuantKernels.SupportedWeightTypes)
        {
            var k = QuantKernels.Get(type);
            if (k.QuantizeActivations == null) continue;
            float[] x = QuantTestUtil.RandomData(4096, 3, 1.5f);
            // one guard byte after the row: the quantizer must write exactly ActivationRowBytes
            var y = new byte[k.ActivationRowBytes(4096) + 1];
            y[^1] = 0xA5;
            fixed (float* px = x) fixed (byte* py = y) k.QuantizeActivations(px, py, 4096);
            byte[] reference = QuantTestUtil.Quantize(k.VecDotType, x);
            Assert.Equal(reference, y.AsSpan(0, reference.Length).ToArray());
            Assert.Equal(0xA5, y[^1]);
            if (k.VecDotType == GgmlType.Q8_0)
            {
                for (int b = 0; b < 4096 / 32; b++)
                {
                    int sum = 0;
                    for (int j = 0; j < 32; j++) sum += (sbyte)reference[b * 34 + 2 + j];
                    // Σqs, or −128·Σqs for the AVX-VNNI Q8_0 kernels (the weights' bias, read by one broadcast load)
                    Assert.Equal(sum * k.ActivationSumFactor, BitConverter.ToInt32(y, reference.Length + 4 * b));
                    // the block's scale as float32, after the sums
                    Assert.Equal((float)BitConverter.ToHalf(reference, b * 34), BitConverter.ToSingle(y, reference.Length + 4 * 4096 / 32 + 4 * b));
                }
            }
            else if (k.VecDotType == GgmlType.Q8_1)
            {
                for (int b = 0; b < 4096 / 32; b++)
                {
                    // the block's d, then its s, as float32
                    Assert.Equal((float)BitConverter.ToHalf(reference, b * 36), BitConverter.ToSingle(y, reference.Length + 4 * b));
                    float s = BitConverter.ToSingle(y, reference.Length + 4 * 4096 / 32 + 4 * b);
                    Assert.Equal((float)BitConverter.ToHalf(reference, b * 36 + 2), s);
                }
            }
            else Assert.Equal(reference.Length + 1, y.Length);
        }
    }

    [Theory]
    [InlineData(GgmlType.IQ2_XXS)]
    [InlineData(GgmlType.IQ3_S)]
    [InlineData(GgmlType.Q8_K)]
    [InlineData((GgmlType)77)]
    public void UnsupportedTypesThrowNamingTheType(GgmlType type)
    {
        Assert.False(QuantKernels.IsSupported(type));
        var ex = Assert.Throws<NotSupportedException>(() => QuantKernels.Get(type));
        Assert.Contains(GgmlTypeInfo.Name(type), ex.Message);
    }

    [Fact]
    public void QuantizeRejectsBadSizes()
    {
        Assert.Throws<ArgumentException>(() => RowCodec.Quantize(GgmlType.Q4_0, new float[33], new byte[36]));
        Assert.Throws<ArgumentException>(() => RowCodec.Quantize(GgmlType.Q4_0, new float[32], new byte[17]));
        Assert.Throws<ArgumentException>(() => RowCodec.Dequantize(GgmlType.Q6_K, new byte[209], new float[256]));
        var ex = Assert.Throws<NotSupportedException>(() => RowCodec.Quantize(GgmlType.IQ2_XXS, new float[256], new byte[66]));
        Assert.Contains("IQ2_XXS", ex.Message);
    }

    [Fact]
    public void DequantizeKernelMatchesPublicDequantize()
    {
        foreach (var type in QuantKernels.SupportedWeightTypes)
        {
            float[] x = QuantTestUtil.RandomData(1024, 9, 0.3f);
            byte[] q = QuantTestUtil.Quantize(type, x);
            var y = new float[1024];
            var k = QuantKernels.Get(type);
            fixed (byte* pq = q) fixed (float* py = y) k.Dequantize(pq, py, 1024);
            Assert.Equal(QuantTestUtil.Dequantize(type, q, 1024), y);
        }
    }
}
