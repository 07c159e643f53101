using ILGPU;

namespace Infer.Kernels.Gpu.Kernels;

/// <summary>Four float32 accumulators, one per token of a matmul tile.</summary>
internal struct Float4
{
    public float X, Y, Z, W;
}

/// <summary>Eight decoded weights: one k-quant unit.</summary>
internal struct Float8
{
    public float A, B, C, D, E, F, G, H;
}

/// <summary>Offsets (in floats) of the activation rows of up to four tokens.</summary>
internal struct Rows4
{
    public long R0, R1, R2, R3;
}

/// <summary>
/// How a weight format is stored on the device and decoded inside kernels. Weights live in two buffers: 32-bit words
/// (quants, or packed halves, or float bits) and, for block formats, one f16 scale per 32-element block.
/// A "unit" is what one thread decodes per step of a dot product: one word.
/// </summary>
internal interface IWeightFormat
{
    /// <summary>Units in one row of <paramref name="cols"/> elements.</summary>
    int Units(int cols);

    /// <summary>dot(W[row], x[xo..]) restricted to one unit.</summary>
    float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo);

    /// <summary>The same unit dotted with four activation rows.</summary>
    Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r);

    /// <summary>W[row, j] as float32.</summary>
    float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j);
}

internal static class Numeric
{
    /// <summary>IEEE half bits to float32, exactly (zero, subnormals, inf and NaN included).</summary>
    public static float HalfToFloat(int h)
    {
        uint sign = (uint)(h & 0x8000) << 16;
        int exp = (h >> 10) & 0x1F;
        int mant = h & 0x3FF;
        if (exp == 0)
        {
            float v = mant * 5.9604644775390625e-8f; // mant * 2^-24
            return sign != 0 ? -v : v;
        }
        if (exp == 31) return Interop.IntAsFloat(sign | 0x7F800000u | ((uint)mant << 13));
        return Interop.IntAsFloat(sign | ((uint)(exp + 112) << 23) | ((uint)mant << 13));
    }

    /// <summary>
    /// float32 to IEEE half bits, rounded to nearest even as <see cref="System.Half"/> and F16C (ggml) round: overflow to
    /// infinity, subnormals, NaN kept NaN (quiet, sign kept, the top payload bits). Integer arithmetic only, so it gives the
    /// same bits on every device.
    /// </summary>
    public static ushort FloatToHalf(float f)
    {
        uint x = Interop.FloatAsInt(f);
        uint sign = (x >> 16) & 0x8000u;
        uint abs = x & 0x7FFFFFFFu;
        if (abs > 0x7F800000u) return (ushort)(sign | 0x7E00u | ((abs >> 13) & 0x3FFu)); // NaN
        if (abs >= 0x477FF000u) return (ushort)(sign | 0x7C00u); // 65520 and above round to infinity
        if (abs >= 0x38800000u) // normal: rebias the exponent, round the 13 dropped bits to nearest even
            return (ushort)(sign | ((abs - 0x38000000u + 0xFFFu + ((abs >> 13) & 1u)) >> 13));
        if (abs <= 0x33000000u) return (ushort)sign; // at most 2^-25: rounds to zero (2^-25 is a tie, to even)
        // subnormal: round(m * 2^(e - 126)) for the 24-bit significand m, a right shift of 14..24
        int shift = 126 - (int)(abs >> 23);
        uint m = (abs & 0x7FFFFFu) | 0x800000u;
        uint h = m >> shift, rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (h & 1u) != 0)) h++;
        return (ushort)(sign | h);
    }

    /// <summary>C's roundf (half away from zero) for |v| below 2^31, exactly: the truncation and its exact remainder.</summary>
    public static int RoundHalfAway(float v)
    {
        int t = (int)v;
        float frac = v - t;
        if (frac >= 0.5f) t++;
        else if (frac <= -0.5f) t--;
        return t;
    }

    public static float BF16ToFloat(int h) => Interop.IntAsFloat((uint)(h & 0xFFFF) << 16);

    /// <summary>Signed byte <paramref name="k"/> (0..3) of a word.</summary>
    public static int SByte(int word, int k) => (word << (24 - 8 * k)) >> 24;
}

/// <summary>F32: words hold float bits, row-major, unit = one element.</summary>
internal struct F32Words : IWeightFormat
{
    public int Units(int cols) => cols;

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo) =>
        Interop.IntAsFloat((uint)words[(long)row * cols + unit]) * x[xo + unit];

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r)
    {
        float w = Interop.IntAsFloat((uint)words[(long)row * cols + unit]);
        return new Float4 { X = w * x[r.R0 + unit], Y = w * x[r.R1 + unit], Z = w * x[r.R2 + unit], W = w * x[r.R3 + unit] };
    }

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j) =>
        Interop.IntAsFloat((uint)words[(long)row * cols + j]);
}

/// <summary>
/// F16 / BF16 share the packing: two halves per word (element 2u in the low half), rows padded to whole words.
/// </summary>
internal struct F16Words : IWeightFormat
{
    public int Units(int cols) => (cols + 1) / 2;

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo)
    {
        int w = words[(long)row * Units(cols) + unit];
        int j = 2 * unit;
        float s = Numeric.HalfToFloat(w) * x[xo + j];
        if (j + 1 < cols) s += Numeric.HalfToFloat(w >> 16) * x[xo + j + 1];
        return s;
    }

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r)
    {
        int w = words[(long)row * Units(cols) + unit];
        int j = 2 * unit;
        float a = Numeric.HalfToFloat(w);
        var f = new Float4 { X = a * x[r.R0 + j], Y = a * x[r.R1 + j], Z = a * x[r.R2 + j], W = a * x[r.R3 + j] };
        if (j + 1 < cols)
        {
            float b = Numeric.HalfToFloat(w >> 16);
            f.X += b * x[r.R0 + j + 1];
            f.Y += b * x[r.R1 + j + 1];
            f.Z += b * x[r.R2 + j + 1];
            f.W += b * x[r.R3 + j + 1];
        }
        return f;
    }

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j)
    {
        int w = words[(long)row * Units(cols) + j / 2];
        return Numeric.HalfToFloat((j & 1) == 0 ? w : w >> 16);
    }
}

/// <inheritdoc cref="F16Words"/>
internal struct BF16Words : IWeightFormat
{
    public int Units(int cols) => (cols + 1) / 2;

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo)
    {
        int w = words[(long)row * Units(cols) + unit];
        int j = 2 * unit;
        float s = Numeric.BF16ToFloat(w) * x[xo + j];
        if (j + 1 < cols) s += Numeric.BF16ToFloat(w >> 16) * x[xo + j + 1];
        return s;
    }

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r)
    {
        int w = words[(long)row * Units(cols) + unit];
        int j = 2 * unit;
        float a = Numeric.BF16ToFloat(w);
        var f = new Float4 { X = a * x[r.R0 + j], Y = a * x[r.R1 + j], Z = a * x[r.R2 + j], W = a * x[r.R3 + j] };
        if (j + 1 < cols)
        {
            float b = Numeric.BF16ToFloat(w >> 16);
            f.X += b * x[r.R0 + j + 1];
            f.Y += b * x[r.R1 + j + 1];
            f.Z += b * x[r.R2 + j + 1];
            f.W += b * x[r.R3 + j + 1];
        }
        return f;
    }

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j)
    {
        int w = words[(long)row * Units(cols) + j / 2];
        return Numeric.BF16ToFloat((j & 1) == 0 ? w : w >> 16);
    }
}

/// <summary>
/// Q8_0 (blocks of 32 int8 with an f16 scale d: w = d * q), split on upload into scales [rows * nb] and quants
/// [rows * nb * 8 words]. Unit = one word = four consecutive quants.
/// </summary>
internal struct Q8_0Words : IInt8Blocks
{
    public int Units(int cols) => cols / 32 * 8;

    public int QuantWord(ArrayView<int> words, long block, int kw) => words[block * 8 + kw];

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo)
    {
        long block = (long)row * (cols / 32) + (unit >> 3);
        int q = words[block * 8 + (unit & 7)];
        float d = Numeric.HalfToFloat(scales[block]);
        long j = xo + (long)(unit >> 3) * 32 + (unit & 7) * 4;
        float s = Numeric.SByte(q, 0) * x[j] + Numeric.SByte(q, 1) * x[j + 1] + Numeric.SByte(q, 2) * x[j + 2] + Numeric.SByte(q, 3) * x[j + 3];
        return d * s;
    }

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r)
    {
        long block = (long)row * (cols / 32) + (unit >> 3);
        int q = words[block * 8 + (unit & 7)];
        float d = Numeric.HalfToFloat(scales[block]);
        int j = (unit >> 3) * 32 + (unit & 7) * 4;
        float q0 = d * Numeric.SByte(q, 0), q1 = d * Numeric.SByte(q, 1), q2 = d * Numeric.SByte(q, 2), q3 = d * Numeric.SByte(q, 3);
        return new Float4
        {
            X = q0 * x[r.R0 + j] + q1 * x[r.R0 + j + 1] + q2 * x[r.R0 + j + 2] + q3 * x[r.R0 + j + 3],
            Y = q0 * x[r.R1 + j] + q1 * x[r.R1 + j + 1] + q2 * x[r.R1 + j + 2] + q3 * x[r.R1 + j + 3],
            Z = q0 * x[r.R2 + j] + q1 * x[r.R2 + j + 1] + q2 * x[r.R2 + j + 2] + q3 * x[r.R2 + j + 3],
            W = q0 * x[r.R3 + j] + q1 * x[r.R3 + j + 1] + q2 * x[r.R3 + j + 2] + q3 * x[r.R3 + j + 3],
        };
    }

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j)
    {
        long block = (long)row * (cols / 32) + j / 32;
        int i = j & 31;
        return Numeric.HalfToFloat(scales[block]) * Numeric.SByte(words[block * 8 + (i >> 2)], i & 3);
    }
}

/// <summary>
/// Q4_0 (blocks of 32: f16 scale d, 16 bytes of nibbles; byte k holds element k in its low nibble and element k+16 in
/// its high nibble; w = d * (nibble - 8)), split into scales and quants [rows * nb * 4 words]. Unit = one word =
/// elements j..j+3 and j+16..j+19.
/// </summary>
internal struct Q4_0Words : IInt8Blocks
{
    public int Units(int cols) => cols / 32 * 4;

    /// <summary>
    /// Quants 4kw..4kw+3: the low nibbles of word kw (kw &lt; 4) or the high nibbles of word kw − 4, each minus 8 as a signed byte
    /// (v ^ 8 is v − 8 in four bits; its bit 3, times 0x1E, fills the byte's top four bits).
    /// </summary>
    public int QuantWord(ArrayView<int> words, long block, int kw)
    {
        int q = words[block * 4 + (kw & 3)];
        int s = ((kw < 4 ? q : q >> 4) & 0x0F0F0F0F) ^ 0x08080808;
        return s | ((s & 0x08080808) * 0x1E);
    }

    private static int Lo(int q, int k) => ((q >> (8 * k)) & 0xF) - 8;
    private static int Hi(int q, int k) => ((q >> (8 * k + 4)) & 0xF) - 8;

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo)
    {
        long block = (long)row * (cols / 32) + (unit >> 2);
        int q = words[block * 4 + (unit & 3)];
        float d = Numeric.HalfToFloat(scales[block]);
        long j = xo + (long)(unit >> 2) * 32 + (unit & 3) * 4;
        float s = Lo(q, 0) * x[j] + Lo(q, 1) * x[j + 1] + Lo(q, 2) * x[j + 2] + Lo(q, 3) * x[j + 3]
                + Hi(q, 0) * x[j + 16] + Hi(q, 1) * x[j + 17] + Hi(q, 2) * x[j + 18] + Hi(q, 3) * x[j + 19];
        return d * s;
    }

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r)
    {
        long block = (long)row * (cols / 32) + (unit >> 2);
        int q = words[block * 4 + (unit & 3)];
        float d = Numeric.HalfToFloat(scales[block]);
        int j = (unit >> 2) * 32 + (unit & 3) * 4;
        return new Float4
        {
            X = d * Dot8(q, x, r.R0 + j),
            Y = d * Dot8(q, x, r.R1 + j),
            Z = d * Dot8(q, x, r.R2 + j),
            W = d * Dot8(q, x, r.R3 + j),
        };
    }

    private static float Dot8(int q, ArrayView<float> x, long j) =>
        Lo(q, 0) * x[j] + Lo(q, 1) * x[j + 1] + Lo(q, 2) * x[j + 2] + Lo(q, 3) * x[j + 3]
        + Hi(q, 0) * x[j + 16] + Hi(q, 1) * x[j + 17] + Hi(q, 2) * x[j + 18] + Hi(q, 3) * x[j + 19];

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j)
    {
        long block = (long)row * (cols / 32) + j / 32;
        int i = j & 31;
        int k = i & 15;
        int q = words[block * 4 + (k >> 2)];
        int v = i < 16 ? Lo(q, k & 3) : Hi(q, k & 3);
        return Numeric.HalfToFloat(scales[block]) * v;
    }
}

/// <summary>Helpers for the k-quant formats, whose super-blocks of 256 elements are uploaded as raw 32-bit words.</summary>
internal static class KQuant
{
    /// <summary>Byte <paramref name="k"/> of the block starting at word <paramref name="word0"/>.</summary>
    public static int Byte(ArrayView<int> words, long word0, int k) => (words[word0 + (k >> 2)] >> (8 * (k & 3))) & 0xFF;

    /// <summary>A decoded unit dotted with x[j..j+7], summed in element order.</summary>
    public static float Dot8(Float8 w, ArrayView<float> x, long j)
    {
        float s = w.A * x[j];
        s += w.B * x[j + 1];
        s += w.C * x[j + 2];
        s += w.D * x[j + 3];
        s += w.E * x[j + 4];
        s += w.F * x[j + 5];
        s += w.G * x[j + 6];
        s += w.H * x[j + 7];
        return s;
    }

    /// <summary><see cref="Dot8"/> of one decoded unit with x[j..j+7] of the four activation rows of <paramref name="r"/>.</summary>
    public static Float4 Dot8x4(Float8 w, ArrayView<float> x, Rows4 r, int j) => new()
    {
        X = Dot8(w, x, r.R0 + j), Y = Dot8(w, x, r.R1 + j), Z = Dot8(w, x, r.R2 + j), W = Dot8(w, x, r.R3 + j),
    };
}

/// <summary>
/// Q4_K (144-byte super-blocks of 256: f16 d, f16 dmin, 12 bytes of packed 6-bit scales and mins, 128 bytes of nibbles;
/// w = d * sc * q - dmin * m per 32-element sub-block), uploaded as 36 words per block. Unit = 8 elements.
/// </summary>
internal struct Q4_KWords : IWeightFormat
{
    public const int WordsPerBlock = 36;

    public int Units(int cols) => cols / 8;

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo)
    {
        var w = Unit(words, row, cols, unit);
        return KQuant.Dot8(w, x, xo + unit * 8);
    }

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r)
    {
        return KQuant.Dot8x4(Unit(words, row, cols, unit), x, r, unit * 8);
    }

    /// <summary>
    /// The 8 weights of a unit, decoded with one read of their sub-block's scale and min and two words of nibbles (the unit's 8
    /// quant bytes are word-aligned: 8 consecutive bytes of one 32-byte group). Each value is what <see cref="Element"/> gives.
    /// </summary>
    private static Float8 Unit(ArrayView<int> words, int row, int cols, int unit)
    {
        int j = unit * 8;
        long w0 = ((long)row * (cols / 256) + j / 256) * WordsPerBlock;
        int e = j & 255;
        int sub = e >> 6, within = e & 63;
        var (sc, m) = ScaleMin(words, w0, 2 * sub + (within >= 32 ? 1 : 0));
        int dw = words[w0];
        float d = Numeric.HalfToFloat(dw), dmin = Numeric.HalfToFloat(dw >> 16);
        float dm = dmin * m;
        long q = w0 + 4 + sub * 8 + ((within & 31) >> 2);
        int shift = within < 32 ? 0 : 4;
        int q0 = words[q] >> shift, q1 = words[q + 1] >> shift;
        return new Float8
        {
            A = d * sc * (q0 & 0xF) - dm, B = d * sc * ((q0 >> 8) & 0xF) - dm,
            C = d * sc * ((q0 >> 16) & 0xF) - dm, D = d * sc * ((q0 >> 24) & 0xF) - dm,
            E = d * sc * (q1 & 0xF) - dm, F = d * sc * ((q1 >> 8) & 0xF) - dm,
            G = d * sc * ((q1 >> 16) & 0xF) - dm, H = d * sc * ((q1 >> 24) & 0xF) - dm,
        };
    }

    /// <summary>The 6-bit scale and min of sub-block <paramref name="s"/> (0..7) from the block's 12 packed bytes.</summary>
    private static (int Scale, int Min) ScaleMin(ArrayView<int> words, long w0, int s)
    {
        if (s < 4) return (KQuant.Byte(words, w0, 4 + s) & 63, KQuant.Byte(words, w0, 4 + s + 4) & 63);
        int b = KQuant.Byte(words, w0, 4 + s + 4);
        return ((b & 0xF) | ((KQuant.Byte(words, w0, 4 + s - 4) >> 6) << 4), (b >> 4) | ((KQuant.Byte(words, w0, 4 + s) >> 6) << 4));
    }

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j)
    {
        long w0 = ((long)row * (cols / 256) + j / 256) * WordsPerBlock;
        int e = j & 255;
        int sub = e >> 6, within = e & 63;
        var (sc, m) = ScaleMin(words, w0, 2 * sub + (within >= 32 ? 1 : 0));
        int q = KQuant.Byte(words, w0, 16 + sub * 32 + (within & 31));
        int nib = within < 32 ? q & 0xF : q >> 4;
        int dw = words[w0];
        float d = Numeric.HalfToFloat(dw), dmin = Numeric.HalfToFloat(dw >> 16);
        return d * sc * nib - dmin * m;
    }
}

/// <summary>
/// Q6_K (210-byte super-blocks of 256: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8 scales, f16 d;
/// w = d * scale * (q - 32) per 16 elements), uploaded padded to 53 words per block. Unit = 8 elements.
/// </summary>
internal struct Q6_KWords : IWeightFormat
{
    public const int WordsPerBlock = 53;

    public int Units(int cols) => cols / 8;

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo)
    {
        var w = Unit(words, row, cols, unit);
        return KQuant.Dot8(w, x, xo + unit * 8);
    }

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r)
    {
        return KQuant.Dot8x4(Unit(words, row, cols, unit), x, r, unit * 8);
    }

    /// <summary>
    /// The 8 weights of a unit: one scale, one d, and two words each of low nibbles and high bit pairs (the unit's 8 bytes of
    /// each are consecutive and word-aligned). Each value is what <see cref="Element"/> gives.
    /// </summary>
    private static Float8 Unit(ArrayView<int> words, int row, int cols, int unit)
    {
        int j = unit * 8;
        long w0 = ((long)row * (cols / 256) + j / 256) * WordsPerBlock;
        int e = j & 255;
        int half = e >> 7, r = e & 127;
        int quarter = r >> 5, l = r & 31;
        long lo = w0 + (half * 64 + l + (quarter & 1) * 32) / 4, hi = w0 + (128 + half * 32 + l) / 4;
        int lowShift = quarter < 2 ? 0 : 4, highShift = 2 * quarter;
        int l0 = words[lo] >> lowShift, l1 = words[lo + 1] >> lowShift;
        int h0 = words[hi] >> highShift, h1 = words[hi + 1] >> highShift;
        int sc = (KQuant.Byte(words, w0, 192 + half * 8 + (l >> 4) + 2 * quarter) << 24) >> 24;
        float d = Numeric.HalfToFloat(words[w0 + 52]);
        return new Float8
        {
            A = d * sc * Q(l0, h0, 0), B = d * sc * Q(l0, h0, 1), C = d * sc * Q(l0, h0, 2), D = d * sc * Q(l0, h0, 3),
            E = d * sc * Q(l1, h1, 0), F = d * sc * Q(l1, h1, 1), G = d * sc * Q(l1, h1, 2), H = d * sc * Q(l1, h1, 3),
        };
    }

    /// <summary>Quant k of a word pair (low nibbles and high bit pairs already shifted into place): 6 bits, minus 32.</summary>
    private static int Q(int low, int high, int k) => (((low >> (8 * k)) & 0xF) | (((high >> (8 * k)) & 3) << 4)) - 32;

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j)
    {
        long w0 = ((long)row * (cols / 256) + j / 256) * WordsPerBlock;
        int e = j & 255;
        int half = e >> 7, r = e & 127;
        int quarter = r >> 5, l = r & 31;
        int ql = KQuant.Byte(words, w0, half * 64 + l + (quarter & 1) * 32);
        int low = quarter < 2 ? ql & 0xF : ql >> 4;
        int high = (KQuant.Byte(words, w0, 128 + half * 32 + l) >> (2 * quarter)) & 3;
        int q = (low | (high << 4)) - 32;
        int sc = (KQuant.Byte(words, w0, 192 + half * 8 + (l >> 4) + 2 * quarter) << 24) >> 24;
        float d = Numeric.HalfToFloat(KQuant.Byte(words, w0, 208) | (KQuant.Byte(words, w0, 209) << 8));
        return d * sc * q;
    }
}
