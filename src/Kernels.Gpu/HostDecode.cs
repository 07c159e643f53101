using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Gpu;

/// <summary>Host-side decoding of one row of a weight to float32 (norm and bias vectors), through the format layer's references.</summary>
internal static unsafe class HostDecode
{
    public static bool CanDecode(GgmlType type) => RowCodec.IsSupported(type);

    /// <summary>Decodes one row of <paramref name="type"/> at <paramref name="src"/> into <paramref name="dst"/> (dst.Length elements).</summary>
    public static void Row(GgmlType type, byte* src, Span<float> dst)
    {
        if (!CanDecode(type)) throw new NotSupportedException($"cannot decode {GgmlTypeInfo.Name(type)}");
        long bytes = GgmlTypeInfo.RowBytes(type, dst.Length);
        RowCodec.Dequantize(type, new ReadOnlySpan<byte>(src, checked((int)bytes)), dst);
    }
}
