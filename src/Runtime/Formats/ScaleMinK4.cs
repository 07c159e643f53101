namespace Infer.Runtime.Formats;

/// <summary>
/// The 12-byte packing of 8 (scale, min) 6-bit pairs that Q4_K and Q5_K share (ggml's <c>K_SCALE_SIZE</c>,
/// <c>get_scale_min_k4</c>): pairs 0..3 in the low 6 bits of bytes j and j + 4, pairs 4..7 as nibbles of bytes j + 4 with
/// their top 2 bits in the top bits of bytes j - 4 and j.
/// </summary>
public static unsafe class ScaleMinK4
{
    public const int Bytes = 12;

    /// <summary>ggml's <c>get_scale_min_k4</c>: the j-th 6-bit scale and min of a Q4_K / Q5_K super-block.</summary>
    public static void Get(int j, byte* q, out byte d, out byte m)
    {
        if (j < 4)
        {
            d = (byte)(q[j] & 63);
            m = (byte)(q[j + 4] & 63);
        }
        else
        {
            d = (byte)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
            m = (byte)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
        }
    }

    /// <summary>Packs pair j (<paramref name="ls"/>, <paramref name="lm"/>) into <paramref name="scales"/>, which starts zeroed.</summary>
    internal static void Pack(byte* scales, int j, byte ls, byte lm)
    {
        if (j < 4)
        {
            scales[j] = ls;
            scales[j + 4] = lm;
        }
        else
        {
            scales[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
            scales[j - 4] |= (byte)((ls >> 4) << 6);
            scales[j - 0] |= (byte)((lm >> 4) << 6);
        }
    }
}
