using System.Runtime.CompilerServices;

namespace Infer.Runtime.Formats;

/// <summary>The scalar rounding rules of ggml's reference quantizers, reproduced bit for bit.</summary>
internal static class GgmlRounding
{
    /// <summary>C's <c>roundf</c>: nearest, halfway cases away from zero (exact for every float).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundF(float v)
    {
        float t = MathF.Truncate(v);
        return MathF.Abs(v - t) >= 0.5f ? t + MathF.CopySign(1.0f, v) : t;
    }

    /// <summary>
    /// ggml's <c>nearest_int</c>: adds 1.5 * 2^23 so the FPU rounds to nearest even, then reads the mantissa
    /// (valid for |x| ≤ 4194303).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NearestInt(float fval)
    {
        float val = fval + 12582912f;
        int i = BitConverter.SingleToInt32Bits(val);
        return (i & 0x007FFFFF) - 0x00400000;
    }

    /// <summary>C's (int8_t) cast of a float known to be in range (truncation toward zero).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int TruncToInt8(float v) => (sbyte)(int)v;
}
