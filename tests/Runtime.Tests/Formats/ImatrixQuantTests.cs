using System.Text.Json;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Tests.Formats;

/// <summary>
/// The quantizers with an importance matrix against ggml itself: <c>Formats/Ggml/imatrix-quants-ref.json</c> holds what llama.cpp's
/// libggml-base (<c>quantize_q2_K</c> .. <c>quantize_q5_1</c> given quant_weights, as llama-quantize --imatrix calls them) made of
/// two rows of 2048 values (the awkward super-blocks of kquants-ref.c, then weight-like values) under one row of weights spread
/// over six decades, with zero columns, a zero sub-block and a hot column; <c>imatrix-quants-ref.c</c> beside it regenerates it.
/// </summary>
public class ImatrixQuantTests
{
    private static readonly Lazy<JsonElement> Reference = new(() => JsonDocument.Parse(
        File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Formats", "Ggml", "imatrix-quants-ref.json"))).RootElement);

    private static float[] Floats(string key) =>
        Convert.FromHexString(Reference.Value.GetProperty(key).GetString()!).Chunk(4)
            .Select(b => BitConverter.Int32BitsToSingle((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3])).ToArray();

    public static TheoryData<GgmlType, string> Types => new()
    {
        { GgmlType.Q2_K, "q2_k" }, { GgmlType.Q3_K, "q3_k" }, { GgmlType.Q4_K, "q4_k" }, { GgmlType.Q5_K, "q5_k" },
        { GgmlType.Q6_K, "q6_k" }, { GgmlType.IQ4_NL, "iq4_nl" }, { GgmlType.IQ4_XS, "iq4_xs" }, { GgmlType.Q4_0, "q4_0" },
        { GgmlType.Q4_1, "q4_1" }, { GgmlType.Q5_0, "q5_0" }, { GgmlType.Q5_1, "q5_1" },
    };

    [Theory]
    [MemberData(nameof(Types))]
    public void QuantizeWithImportanceEqualsGgmlByteForByte(GgmlType type, string key)
    {
        float[] input = Floats("input"), imatrix = Floats("imatrix");
        byte[] expected = Convert.FromHexString(Reference.Value.GetProperty(key).GetString()!);
        var actual = new byte[expected.Length];
        RowCodec.QuantizeWeighted(type, input, actual, imatrix.Length, imatrix);
        int typeSize = (int)GgmlTypeInfo.RowBytes(type, GgmlTypeInfo.BlockSize(type));
        for (int b = 0; b < expected.Length / typeSize; b++)
        {
            string ggml = Convert.ToHexString(expected, b * typeSize, typeSize), ours = Convert.ToHexString(actual, b * typeSize, typeSize);
            Assert.True(ggml == ours, $"{key} block {b}: ggml {ggml}, ours {ours}");
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void ImportanceChangesTheResult(GgmlType type, string key)
    {
        // the weights reach the quantizer: the same rows without them (ggml's reference path) come out different
        float[] input = Floats("input"), imatrix = Floats("imatrix");
        byte[] weighted = Convert.FromHexString(Reference.Value.GetProperty(key).GetString()!);
        var plain = new byte[weighted.Length];
        RowCodec.QuantizeWeighted(type, input, plain, imatrix.Length, []);
        Assert.NotEqual(Convert.ToHexString(weighted), Convert.ToHexString(plain));
    }

    [Fact]
    public void WeightsThatDoNotFitARowAreRefused()
    {
        var x = new float[512];
        var y = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q4_K, 512)];
        Assert.Throws<ArgumentException>(() => RowCodec.QuantizeWeighted(GgmlType.Q4_K, x, y, 256, new float[255]));
        Assert.Throws<ArgumentException>(() => RowCodec.QuantizeWeighted(GgmlType.Q4_K, x, y, 384, new float[384]));
    }

    [Fact]
    public void TypesWithoutWeightsIgnoreThem()
    {
        // ggml's quantize_q8_0 ignores quant_weights
        float[] x = [.. Enumerable.Range(0, 64).Select(i => MathF.Sin(i))];
        var plain = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_0, 64)];
        var weighted = new byte[plain.Length];
        RowCodec.Quantize(GgmlType.Q8_0, x, plain);
        RowCodec.QuantizeWeighted(GgmlType.Q8_0, x, weighted, 64, new float[64]);
        Assert.Equal(plain, weighted);
    }
}
