using System.Text.Json;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Tests.Formats;

/// <summary>
/// Q2_K, Q3_K, IQ4_NL and IQ4_XS against ggml itself: <c>Formats/Ggml/kquants-ref.json</c> holds what llama.cpp's libggml-base
/// (<c>quantize_row_q{2,3}_K_ref</c>, <c>quantize_iq4_{nl,xs}</c> without an importance matrix, their dequantizers) made of 8
/// super-blocks of fixed input (uniform, weight-like, an outlier, zeros, positive only, constant, below ggml's epsilon, a large
/// value per group); <c>kquants-ref.c</c> beside it regenerates it.
/// </summary>
public class LowBitKQuantTests
{
    private static readonly Lazy<JsonElement> Reference = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Formats", "Ggml", "kquants-ref.json"))).RootElement);

    private static float[] Floats(string key) =>
        Convert.FromHexString(Reference.Value.GetProperty(key).GetString()!).Chunk(4)
            .Select(b => BitConverter.Int32BitsToSingle((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3])).ToArray();

    private static byte[] Bytes(string key) => Convert.FromHexString(Reference.Value.GetProperty(key).GetString()!);

    [Theory]
    [InlineData(GgmlType.Q2_K, "q2_k")]
    [InlineData(GgmlType.Q3_K, "q3_k")]
    [InlineData(GgmlType.IQ4_NL, "iq4_nl")]
    [InlineData(GgmlType.IQ4_XS, "iq4_xs")]
    public void QuantizeRefEqualsGgmlByteForByte(GgmlType type, string key)
    {
        float[] input = Floats("input");
        byte[] expected = Bytes(key);
        var actual = new byte[expected.Length];
        RowCodec.Quantize(type, input, actual);
        int typeSize = (int)GgmlTypeInfo.RowBytes(type, GgmlTypeInfo.BlockSize(type));
        for (int b = 0; b < expected.Length / typeSize; b++)
        {
            string ggml = Convert.ToHexString(expected, b * typeSize, typeSize), ours = Convert.ToHexString(actual, b * typeSize, typeSize);
            Assert.True(ggml == ours, $"{key} super-block {b}: ggml {ggml}, ours {ours}");
        }
    }

    [Theory]
    [InlineData(GgmlType.Q2_K, "q2_k")]
    [InlineData(GgmlType.Q3_K, "q3_k")]
    [InlineData(GgmlType.IQ4_NL, "iq4_nl")]
    [InlineData(GgmlType.IQ4_XS, "iq4_xs")]
    public void DequantizeRefEqualsGgmlBitForBit(GgmlType type, string key)
    {
        float[] expected = Floats(key + "_dequant");
        var actual = new float[expected.Length];
        RowCodec.Dequantize(type, Bytes(key), actual);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                $"{key} element {i}: ggml {expected[i]:R}, ours {actual[i]:R}");
    }

    [Theory]
    [InlineData(GgmlType.Q2_K, 0.45)]
    [InlineData(GgmlType.Q3_K, 0.2)]
    [InlineData(GgmlType.IQ4_NL, 0.12)]
    [InlineData(GgmlType.IQ4_XS, 0.12)]
    public void RoundTripOfUniformValuesStaysWithinTheFormatsStep(GgmlType type, double bound)
    {
        // independent of the fixture: random rows, every super-block's error measured against its own range
        var rng = new Random(11);
        var x = new float[256 * 16];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        var q = new byte[GgmlTypeInfo.RowBytes(type, x.Length)];
        var y = new float[x.Length];
        RowCodec.Quantize(type, x, q);
        RowCodec.Dequantize(type, q, y);
        double rms = Math.Sqrt(x.Zip(y, (a, b) => (double)(a - b) * (a - b)).Average());
        Assert.InRange(rms, 0.01, bound);
    }
}
