using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Tests.Quants;

/// <summary>ggml's test-quantize-fns checks, on its synthetic data 0.1 + 2 cos(i + offset), 4096 values.</summary>
public class QuantizationErrorTests
{
    // tests/test-quantize-fns.cpp
    private const float MaxQuantizationTotalError = 0.002f;
    private const float MaxQuantizationTotalError2Bits = 0.0075f;
    private const float MaxQuantizationTotalError3Bits = 0.0040f;
    private const float MaxDotProductError = 0.02f;
    private const float MaxDotProductErrorLowBit = 0.04f;
    private const int TestSize = 32 * 128;

    public static TheoryData<GgmlType> AllQuantizable => [.. RowCodec.Types];
    public static TheoryData<GgmlType> AllWeightTypes => [.. QuantKernels.SupportedWeightTypes];

    /// <summary>ggml's array_rmse: sqrt(Σ diff²) / n.</summary>
    private static float ArrayRmse(float[] a, float[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) { double d = a[i] - b[i]; sum += d * d; }
        return (float)Math.Sqrt(sum) / a.Length;
    }

    [Theory]
    [MemberData(nameof(AllQuantizable))]
    public void RoundTripErrorWithinGgmlTolerance(GgmlType type)
    {
        float[] x = QuantTestUtil.GgmlData(TestSize, 0.0f);
        float[] y = QuantTestUtil.Dequantize(type, QuantTestUtil.Quantize(type, x), TestSize);
        float err = ArrayRmse(x, y);
        float bound = type switch
        {
            GgmlType.Q2_K => MaxQuantizationTotalError2Bits,
            GgmlType.Q3_K => MaxQuantizationTotalError3Bits,
            _ => MaxQuantizationTotalError,
        };
        Assert.True(err < bound, $"{type}: total quantization error {err}");
    }

    [Theory]
    [MemberData(nameof(AllWeightTypes))]
    public unsafe void DotProductErrorWithinGgmlTolerance(GgmlType type)
    {
        float[] x = QuantTestUtil.GgmlData(TestSize, 0.0f);
        float[] y = QuantTestUtil.GgmlData(TestSize, 1.0f);
        var k = QuantKernels.Get(type);
        byte[] w = QuantTestUtil.Quantize(type, x);
        byte[] a = QuantTestUtil.Quantize(k.VecDotType, y);
        double reference = 0;
        for (int i = 0; i < TestSize; i++) reference += x[i] * y[i];
        float result = QuantTestUtil.Dot(k.Dot, TestSize, w, a);
        float err = MathF.Abs(result - (float)reference) / TestSize;
        float bound = type == GgmlType.Q2_K ? MaxDotProductErrorLowBit : MaxDotProductError;
        Assert.True(err < bound, $"{type}: dot product error {err}");
    }
}
