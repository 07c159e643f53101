using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Infer.Runtime.Formats;

/// <summary>
/// IEEE half precision bits ↔ float32 exactly as ggml converts them (ggml-impl.h, <c>ggml_compute_fp32_to_fp16</c> /
/// <c>ggml_compute_fp16_to_fp32</c>): round to nearest even, NaN kept quiet (0x7E00 with the sign).
/// The scalar bit tricks are the reference; <see cref="ToFloat"/> reads a 64k-entry table built from them.
/// </summary>
public static unsafe class HalfBits
{
    private static readonly float Pow2Minus112 = BitConverter.UInt32BitsToSingle((127 - 112) << 23);
    private static readonly float Pow2Plus112 = BitConverter.UInt32BitsToSingle((127 + 112) << 23);
    private static readonly float Pow2Minus110 = BitConverter.UInt32BitsToSingle((127 - 110) << 23);

    /// <summary>
    /// All 65536 half values as floats (256 KiB, native, never freed). Declared after the constants it reads: static initializers
    /// run in textual order.
    /// </summary>
    private static readonly float* Table = BuildTable();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(ushort h) => Table[h];

    /// <summary>ggml's <c>ggml_compute_fp16_to_fp32</c>.</summary>
    public static float ToFloatRef(ushort h)
    {
        uint w = (uint)h << 16;
        uint sign = w & 0x80000000u;
        uint twoW = w + w;
        const uint expOffset = 0xE0u << 23;
        float normalized = BitConverter.UInt32BitsToSingle((twoW >> 4) + expOffset) * Pow2Minus112;
        const uint magicMask = 126u << 23;
        float denormalized = BitConverter.UInt32BitsToSingle((twoW >> 17) | magicMask) - 0.5f;
        const uint denormalizedCutoff = 1u << 27;
        uint result = sign | (twoW < denormalizedCutoff
            ? BitConverter.SingleToUInt32Bits(denormalized)
            : BitConverter.SingleToUInt32Bits(normalized));
        return BitConverter.UInt32BitsToSingle(result);
    }

    /// <summary>ggml's <c>ggml_compute_fp32_to_fp16</c>: round to nearest even; overflow gives infinity; NaN gives 0x7E00 | sign.</summary>
    public static ushort FromFloat(float f)
    {
        float baseValue = (MathF.Abs(f) * Pow2Plus112) * Pow2Minus110;
        uint w = BitConverter.SingleToUInt32Bits(f);
        uint shl1W = w + w;
        uint sign = w & 0x80000000u;
        uint bias = shl1W & 0xFF000000u;
        if (bias < 0x71000000u) bias = 0x71000000u;
        baseValue = BitConverter.UInt32BitsToSingle((bias >> 1) + 0x07800000u) + baseValue;
        uint bits = BitConverter.SingleToUInt32Bits(baseValue);
        uint expBits = (bits >> 13) & 0x00007C00u;
        uint mantissaBits = bits & 0x00000FFFu;
        uint nonSign = expBits + mantissaBits;
        return (ushort)((sign >> 16) | (shl1W > 0xFF000000u ? 0x7E00u : nonSign));
    }

    private static float* BuildTable()
    {
        var table = (float*)NativeMemory.AlignedAlloc(65536 * sizeof(float), 64);
        for (int i = 0; i < 65536; i++) table[i] = ToFloatRef((ushort)i);
        return table;
    }
}
