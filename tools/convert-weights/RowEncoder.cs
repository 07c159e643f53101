using System.Runtime.InteropServices;
using Infer.Runtime;
using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights;

/// <summary>Encodes float32 rows into a GGUF tensor type (F32, F16, BF16, or a block-quantized type).</summary>
public static class RowEncoder
{
    /// <summary>Bytes of <paramref name="rows"/> rows of <paramref name="rowLength"/> elements.</summary>
    public static long Bytes(GgmlType type, long rowLength, long rows) => GgmlTypeInfo.RowBytes(type, rowLength) * rows;

    /// <summary>Encodes whole rows: <paramref name="src"/> holds a multiple of <paramref name="rowLength"/> floats.</summary>
    public static void Encode(GgmlType type, ReadOnlySpan<float> src, int rowLength, Span<byte> dst)
    {
        switch (type)
        {
            case GgmlType.F32:
                MemoryMarshal.AsBytes(src).CopyTo(dst);
                break;
            case GgmlType.F16:
                {
                    var d = MemoryMarshal.Cast<byte, ushort>(dst);
                    for (int i = 0; i < src.Length; i++) d[i] = FloatBits.F32ToF16(src[i]);
                    break;
                }
            case GgmlType.BF16:
                {
                    var d = MemoryMarshal.Cast<byte, ushort>(dst);
                    for (int i = 0; i < src.Length; i++) d[i] = FloatBits.F32ToBf16(src[i]);
                    break;
                }
            default:
                QuantizeRows(type, src, rowLength, dst);
                break;
        }
    }

    private static void QuantizeRows(GgmlType type, ReadOnlySpan<float> src, int rowLength, Span<byte> dst) =>
        throw new UnsupportedModelException(null, $"quantizing to {GgmlTypeInfo.Name(type)} is not available in this build");
}
