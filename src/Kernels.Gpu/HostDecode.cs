using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Gpu;

/// <summary>Host-side helpers: decoding one row of a weight to float32 (norm and bias vectors), and RoPE angles.</summary>
internal static unsafe class HostDecode
{
    public static bool CanDecode(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0 or GgmlType.Q4_0;

    /// <summary>Decodes one row of <paramref name="type"/> at <paramref name="src"/> into <paramref name="dst"/> (dst.Length elements).</summary>
    public static void Row(GgmlType type, byte* src, Span<float> dst)
    {
        int n = dst.Length;
        switch (type)
        {
            case GgmlType.F32:
                new ReadOnlySpan<float>(src, n).CopyTo(dst);
                break;
            case GgmlType.F16:
                for (int i = 0; i < n; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf(((ushort*)src)[i]);
                break;
            case GgmlType.BF16:
                for (int i = 0; i < n; i++) dst[i] = BitConverter.Int32BitsToSingle(((ushort*)src)[i] << 16);
                break;
            case GgmlType.Q8_0:
                for (int b = 0; b < n / 32; b++)
                {
                    byte* block = src + b * 34;
                    float d = (float)BitConverter.UInt16BitsToHalf((ushort)(block[0] | block[1] << 8));
                    for (int i = 0; i < 32; i++) dst[b * 32 + i] = d * (sbyte)block[2 + i];
                }
                break;
            case GgmlType.Q4_0:
                for (int b = 0; b < n / 32; b++)
                {
                    byte* block = src + b * 18;
                    float d = (float)BitConverter.UInt16BitsToHalf((ushort)(block[0] | block[1] << 8));
                    for (int i = 0; i < 16; i++)
                    {
                        dst[b * 32 + i] = d * ((block[2 + i] & 0xF) - 8);
                        dst[b * 32 + i + 16] = d * ((block[2 + i] >> 4) - 8);
                    }
                }
                break;
            default:
                throw new NotSupportedException($"cannot decode {GgmlTypeInfo.Name(type)}");
        }
    }
}
