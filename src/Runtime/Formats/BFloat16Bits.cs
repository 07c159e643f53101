using System.Runtime.CompilerServices;

namespace Infer.Runtime.Formats;

/// <summary>bfloat16 bits ↔ float32 as ggml converts them (<c>ggml_compute_fp32_to_bf16</c>): round to nearest even, NaN forced quiet.</summary>
public static class BFloat16Bits
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    public static ushort FromFloat(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (ushort)((u >> 16) | 64); // NaN: keep the sign and top payload, force quiet
        return (ushort)((u + (0x7FFFu + ((u >> 16) & 1))) >> 16);
    }
}
