namespace Infer.ConvertWeights;

/// <summary>Scalar float16 / bfloat16 conversions, rounding as ggml and gguf-py do.</summary>
public static class FloatBits
{
    /// <summary>ggml_compute_fp32_to_bf16: NaN stays a quiet NaN, everything else rounds to nearest even.</summary>
    public static ushort F32ToBf16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7fffffff) > 0x7f800000) return (ushort)((u >> 16) | 64);
        return (ushort)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
    }

    public static float Bf16ToF32(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    /// <summary>IEEE binary16, round to nearest even (what F16C and numpy's astype(float16) do).</summary>
    public static ushort F32ToF16(float f) => BitConverter.HalfToUInt16Bits((Half)f);

    public static float F16ToF32(ushort h) => (float)BitConverter.UInt16BitsToHalf(h);

    public static void Bf16ToF32(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        for (int i = 0; i < src.Length; i++) dst[i] = Bf16ToF32(src[i]);
    }

    public static void F16ToF32(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        for (int i = 0; i < src.Length; i++) dst[i] = F16ToF32(src[i]);
    }
}
