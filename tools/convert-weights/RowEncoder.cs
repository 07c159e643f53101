using System.Runtime.InteropServices;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights;

/// <summary>Encodes float32 rows into a GGUF tensor type (F32, F16, BF16, or a block-quantized type).</summary>
public static class RowEncoder
{
    /// <summary>Bytes of <paramref name="rows"/> rows of <paramref name="rowLength"/> elements.</summary>
    public static long Bytes(GgmlType type, long rowLength, long rows) => GgmlTypeInfo.RowBytes(type, rowLength) * rows;

    /// <summary>
    /// Encodes whole rows: <paramref name="src"/> holds a multiple of <paramref name="rowLength"/> floats. <paramref name="importance"/>:
    /// one weight per column for ggml's quantizers with an importance matrix (null: the reference ones).
    /// </summary>
    public static void Encode(GgmlType type, ReadOnlySpan<float> src, int rowLength, Span<byte> dst, float[]? importance = null)
    {
        if (type == GgmlType.F32) MemoryMarshal.AsBytes(src).CopyTo(dst);
        else if (importance is not null) RowCodec.QuantizeWeighted(type, src, dst, rowLength, importance);
        else RowCodec.Quantize(type, src, dst); // ggml's reference quantizers (and RNE float16 / bfloat16)
    }

    /// <summary>Decodes whole rows of <paramref name="type"/> to float32.</summary>
    public static void Decode(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst) => RowCodec.Dequantize(type, src, dst);
}
