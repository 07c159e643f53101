using ILGPU;

namespace Infer.Kernels.Gpu.Kernels;

/// <summary>
/// Helpers of the 32-element formats beside Q4_0 (Q4_1, Q5_0, Q5_1, IQ4_NL). Those without a min are split as Q4_0 (f16 d in the
/// scales buffer; the quant bytes in words: Q5_0's qh, then its 16 bytes of nibbles); Q4_1 and Q5_1 keep their whole blocks as
/// words (d | m, Q5_1's qh, the nibbles), since the GEMM reads a block's min from the words. A unit is one word of nibbles, as Q4_0's:
/// elements 4k..4k+3 (low nibbles) and 16+4k..16+4k+3 (high nibbles) of a block, k = unit % 4.
/// </summary>
internal static class Legacy
{
    /// <summary>A unit's quants as bytes (elements 4k.. in <see cref="Lo"/>, 16+4k.. in <see cref="Hi"/>), its d and m (w = d·q + m).</summary>
    public struct Unit
    {
        public int Lo, Hi;
        public float D, M;
    }

    /// <summary>Units in a row: one per word of nibbles.</summary>
    public static int Units(int cols) => cols / 32 * 4;

    /// <summary>The low (k &lt; 4) or high nibbles of quant word k % 4 of a block: quants 4k..4k+3 of the block (k = 0..7).</summary>
    public static int Nibbles(int word, int k) => (k < 4 ? word : word >> 4) & 0x0F0F0F0F;

    /// <summary>
    /// Bits <paramref name="first"/>..+3 of qh (the fifth bits of four consecutive quants) as 0x10 in bytes 0..3: the four bits
    /// times 1 + 2^7 + 2^14 + 2^21 put bit i at bit 8i (the four copies do not overlap, so nothing carries).
    /// </summary>
    public static int HighBits(int qh, int first) => ((((qh >> first) & 0xF) * 0x00204081) & 0x01010101) << 4;

    /// <summary>
    /// Four 5-bit quants (0..31, one per byte) minus 16 as signed bytes (v ^ 16 is v − 16 in five bits; its bit 4, times 0x0E, fills
    /// the byte's top three bits).
    /// </summary>
    public static int Signed5(int v)
    {
        int s = (v & 0x1F1F1F1F) ^ 0x10101010;
        return s | ((s & 0x10101010) * 0x0E);
    }

    /// <summary>The weight of element i (0..31) of a block from the unit that holds it (unit k = (i % 16) / 4).</summary>
    public static float Element(Unit u, int i) => u.D * Numeric.SByte(i < 16 ? u.Lo : u.Hi, i & 3) + u.M;

    /// <summary>The unit's 8 weights d·q + m against x[j..j+3] and x[j+16..j+19].</summary>
    public static float Dot8(Unit u, ArrayView<float> x, long j)
    {
        float d = u.D, m = u.M;
        int lo = u.Lo, hi = u.Hi;
        return (d * Numeric.SByte(lo, 0) + m) * x[j] + (d * Numeric.SByte(lo, 1) + m) * x[j + 1]
            + (d * Numeric.SByte(lo, 2) + m) * x[j + 2] + (d * Numeric.SByte(lo, 3) + m) * x[j + 3]
            + (d * Numeric.SByte(hi, 0) + m) * x[j + 16] + (d * Numeric.SByte(hi, 1) + m) * x[j + 17]
            + (d * Numeric.SByte(hi, 2) + m) * x[j + 18] + (d * Numeric.SByte(hi, 3) + m) * x[j + 19];
    }

    /// <summary>Where a unit's elements start in its row: block · 32 + 4k.</summary>
    public static int First(int unit) => (unit >> 2) * 32 + (unit & 3) * 4;

    public static Float4 Dot4(Unit u, ArrayView<float> x, Rows4 r, int j) => new()
    {
        X = Dot8(u, x, r.R0 + j), Y = Dot8(u, x, r.R1 + j), Z = Dot8(u, x, r.R2 + j), W = Dot8(u, x, r.R3 + j),
    };

    /// <summary>
    /// A unit against int8 activations: x_d·(d·Σq·x_q + m·Σx_q) over its 8 elements, <paramref name="lo"/> and <paramref name="hi"/>
    /// its quants as signed bytes (two dp4a; where the format has a min, two more of ones for the activations' sum).
    /// </summary>
    public static float Dot1Q8(int lo, int hi, float d, float m, bool hasMin, ArrayView<int> xq, ArrayView<float> xd, int unit)
    {
        int x0 = (unit >> 2) * 8 + (unit & 3);
        int a = xq[x0], b = xq[x0 + 4];
        float s = d * Numeric.Dp4a(lo, a, Numeric.Dp4a(hi, b, 0));
        if (hasMin) s += m * Numeric.Dp4a(0x01010101, a, Numeric.Dp4a(0x01010101, b, 0));
        return xd[unit >> 2] * s;
    }

    /// <summary>
    /// <see cref="Dot1Q8(int, int, float, float, bool, ArrayView{int}, ArrayView{float}, int)"/> of a unit of a format with a min, its
    /// quants centred: d·(q − c) + (m + c·d). Weights near zero make m and d·q nearly cancel; centred, the min term is small, so the
    /// float32 sum keeps the precision of Q4_0's (m + c·d is exact in float32 unless m and d are 2^13 apart).
    /// </summary>
    public static float Dot1Q8Centred(Unit u, int lo, int hi, int c, ArrayView<int> xq, ArrayView<float> xd, int unit) =>
        Dot1Q8(lo, hi, u.D, u.M + c * u.D, true, xq, xd, unit);
}


/// <summary>
/// Q4_1 (20-byte blocks of 32: f16 d, f16 m, Q4_0's 16 bytes of nibbles; w = d·q + m, q 0..15), uploaded whole as 5 words per
/// block: d | m, then the nibbles. Unit = one word of nibbles (<see cref="Legacy"/>).
/// </summary>
internal struct Q4_1Words : IInt8Blocks
{
    public const int WordsPerBlock = 5;

    private static Legacy.Unit Locate(ArrayView<int> words, long block, int k)
    {
        long w0 = block * WordsPerBlock;
        int q = words[w0 + 1 + (k & 3)], dm = words[w0];
        return new Legacy.Unit
        {
            Lo = q & 0x0F0F0F0F, Hi = (q >> 4) & 0x0F0F0F0F, D = Numeric.HalfToFloat(dm), M = Numeric.HalfToFloat(dm >> 16),
        };
    }

    private static long Block(int row, int cols, int unit) => (long)row * (cols / 32) + (unit >> 2);

    public int Units(int cols) => Legacy.Units(cols);

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo) =>
        Legacy.Dot8(Locate(words, Block(row, cols, unit), unit), x, xo + Legacy.First(unit));

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r) =>
        Legacy.Dot4(Locate(words, Block(row, cols, unit), unit), x, r, Legacy.First(unit));

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j) =>
        Legacy.Element(Locate(words, (long)row * (cols / 32) + j / 32, (j & 15) >> 2), j & 31);

    public bool Int8Dot => true;

    public bool BlockDot => false;

    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r) => 0f;

    /// <summary>The unit's quants as q − 8 (Q4_0's signed nibbles) and m + 8d (<see cref="Legacy.Dot1Q8Centred"/>).</summary>
    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd)
    {
        var u = Locate(words, Block(row, cols, unit), unit);
        return Legacy.Dot1Q8Centred(u, Q4_0Words.Signed4(u.Lo), Q4_0Words.Signed4(u.Hi), 8, xq, xd, unit);
    }

    /// <summary>
    /// Quants 4kw..4kw+3 minus 8 (−8..7): the low nibbles of word kw (kw &lt; 4) or the high nibbles of word kw − 4, centred as in
    /// <see cref="Legacy.Dot1Q8Centred"/>.
    /// </summary>
    public int QuantWord(ArrayView<int> words, long block, int kw) =>
        Q4_0Words.Signed4(Legacy.Nibbles(words[block * WordsPerBlock + 1 + (kw & 3)], kw));

    public float BlockScale(ArrayView<int> words, ArrayView<ushort> scales, long block, int step) =>
        Numeric.HalfToFloat(words[block * WordsPerBlock]);

    /// <summary>−(m + 8d): the GEMM subtracts a block's min, Q4_1 adds m (and <see cref="QuantWord"/> took 8 from each q).</summary>
    public float BlockMin(ArrayView<int> words, long block)
    {
        int dm = words[block * WordsPerBlock];
        return -(Numeric.HalfToFloat(dm >> 16) + 8 * Numeric.HalfToFloat(dm));
    }

    public bool HasMins => true;

    public bool ScalePerStep => false;
}

/// <summary>
/// Q5_0 (22-byte blocks of 32: f16 d, 32 bits of qh, Q4_0's 16 bytes of nibbles; w = d·(q − 16), q 0..31 with bit 4 of element e in
/// bit e of qh), split into scales [rows · nb] and 5 words per block: qh, then the nibbles. Unit = one word of nibbles.
/// </summary>
internal struct Q5_0Words : IInt8Blocks
{
    public const int WordsPerBlock = 5;

    /// <summary>Unit k's quants with their fifth bits (elements 4k.. and 16+4k..), minus 16 as signed bytes.</summary>
    private static Legacy.Unit Locate(ArrayView<int> words, ArrayView<ushort> scales, long block, int k)
    {
        long w0 = block * WordsPerBlock;
        int q = words[w0 + 1 + (k & 3)], qh = words[w0];
        return new Legacy.Unit
        {
            Lo = Legacy.Signed5((q & 0x0F0F0F0F) | Legacy.HighBits(qh, 4 * (k & 3))),
            Hi = Legacy.Signed5(((q >> 4) & 0x0F0F0F0F) | Legacy.HighBits(qh, 16 + 4 * (k & 3))),
            D = Numeric.HalfToFloat(scales[block]),
        };
    }

    private static long Block(int row, int cols, int unit) => (long)row * (cols / 32) + (unit >> 2);

    public int Units(int cols) => Legacy.Units(cols);

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo) =>
        Legacy.Dot8(Locate(words, scales, Block(row, cols, unit), unit), x, xo + Legacy.First(unit));

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r) =>
        Legacy.Dot4(Locate(words, scales, Block(row, cols, unit), unit), x, r, Legacy.First(unit));

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j) =>
        Legacy.Element(Locate(words, scales, (long)row * (cols / 32) + j / 32, (j & 15) >> 2), j & 31);

    public bool Int8Dot => true;

    public bool BlockDot => false;

    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r) => 0f;

    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd)
    {
        var u = Locate(words, scales, Block(row, cols, unit), unit);
        return Legacy.Dot1Q8(u.Lo, u.Hi, u.D, 0f, false, xq, xd, unit);
    }

    /// <summary>Quants 4kw..4kw+3 with bits 4kw..4kw+3 of qh, minus 16 (−16..15 as signed bytes).</summary>
    public int QuantWord(ArrayView<int> words, long block, int kw)
    {
        long w0 = block * WordsPerBlock;
        return Legacy.Signed5(Legacy.Nibbles(words[w0 + 1 + (kw & 3)], kw) | Legacy.HighBits(words[w0], 4 * kw));
    }

    public float BlockScale(ArrayView<int> words, ArrayView<ushort> scales, long block, int step) => Numeric.HalfToFloat(scales[block]);

    public float BlockMin(ArrayView<int> words, long block) => 0f;

    public bool HasMins => false;

    public bool ScalePerStep => false;
}

/// <summary>
/// Q5_1 (24-byte blocks of 32: f16 d, f16 m, 32 bits of qh, Q4_0's 16 bytes of nibbles; w = d·q + m, q 0..31 with bit 4 of element
/// e in bit e of qh), uploaded whole as 6 words per block: d | m, qh, then the nibbles. Unit = one word of nibbles.
/// </summary>
internal struct Q5_1Words : IInt8Blocks
{
    public const int WordsPerBlock = 6;

    /// <summary>Unit k's quants with their fifth bits (elements 4k.. and 16+4k.., 0..31), d and m.</summary>
    private static Legacy.Unit Locate(ArrayView<int> words, long block, int k)
    {
        long w0 = block * WordsPerBlock;
        int q = words[w0 + 2 + (k & 3)], qh = words[w0 + 1], dm = words[w0];
        return new Legacy.Unit
        {
            Lo = (q & 0x0F0F0F0F) | Legacy.HighBits(qh, 4 * (k & 3)),
            Hi = ((q >> 4) & 0x0F0F0F0F) | Legacy.HighBits(qh, 16 + 4 * (k & 3)),
            D = Numeric.HalfToFloat(dm), M = Numeric.HalfToFloat(dm >> 16),
        };
    }

    private static long Block(int row, int cols, int unit) => (long)row * (cols / 32) + (unit >> 2);

    public int Units(int cols) => Legacy.Units(cols);

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo) =>
        Legacy.Dot8(Locate(words, Block(row, cols, unit), unit), x, xo + Legacy.First(unit));

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r) =>
        Legacy.Dot4(Locate(words, Block(row, cols, unit), unit), x, r, Legacy.First(unit));

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j) =>
        Legacy.Element(Locate(words, (long)row * (cols / 32) + j / 32, (j & 15) >> 2), j & 31);

    public bool Int8Dot => true;

    public bool BlockDot => false;

    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r) => 0f;

    /// <summary>The unit's quants as q − 16 and m + 16d (<see cref="Legacy.Dot1Q8Centred"/>).</summary>
    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd)
    {
        var u = Locate(words, Block(row, cols, unit), unit);
        return Legacy.Dot1Q8Centred(u, Legacy.Signed5(u.Lo), Legacy.Signed5(u.Hi), 16, xq, xd, unit);
    }

    /// <summary>Quants 4kw..4kw+3 with bits 4kw..4kw+3 of qh, minus 16 (−16..15; centred as in <see cref="Legacy.Dot1Q8Centred"/>).</summary>
    public int QuantWord(ArrayView<int> words, long block, int kw)
    {
        long w0 = block * WordsPerBlock;
        return Legacy.Signed5(Legacy.Nibbles(words[w0 + 2 + (kw & 3)], kw) | Legacy.HighBits(words[w0 + 1], 4 * kw));
    }

    public float BlockScale(ArrayView<int> words, ArrayView<ushort> scales, long block, int step) =>
        Numeric.HalfToFloat(words[block * WordsPerBlock]);

    /// <summary>−(m + 16d): the GEMM subtracts a block's min, Q5_1 adds m (and <see cref="QuantWord"/> took 16 from each q).</summary>
    public float BlockMin(ArrayView<int> words, long block)
    {
        int dm = words[block * WordsPerBlock];
        return -(Numeric.HalfToFloat(dm >> 16) + 16 * Numeric.HalfToFloat(dm));
    }

    public bool HasMins => true;

    public bool ScalePerStep => false;
}

/// <summary>
/// IQ4_NL (18-byte blocks of 32: f16 d, Q4_0's 16 bytes of nibbles; w = d·kvalues[q], ggml's 16 int8 values −127..113), split as
/// Q4_0 into scales [rows · nb] and quants [rows · nb · 4 words]. Unit = one word of nibbles; the values fit int8 exactly.
/// </summary>
internal struct IQ4_NLWords : IInt8Blocks
{
    private static Legacy.Unit Locate(ArrayView<int> words, ArrayView<ushort> scales, long block, int k)
    {
        int q = words[block * 4 + (k & 3)];
        return new Legacy.Unit
        {
            Lo = LowBit.KValues(q & 0x0F0F0F0F), Hi = LowBit.KValues((q >> 4) & 0x0F0F0F0F), D = Numeric.HalfToFloat(scales[block]),
        };
    }

    private static long Block(int row, int cols, int unit) => (long)row * (cols / 32) + (unit >> 2);

    public int Units(int cols) => Legacy.Units(cols);

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo) =>
        Legacy.Dot8(Locate(words, scales, Block(row, cols, unit), unit), x, xo + Legacy.First(unit));

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r) =>
        Legacy.Dot4(Locate(words, scales, Block(row, cols, unit), unit), x, r, Legacy.First(unit));

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j) =>
        Legacy.Element(Locate(words, scales, (long)row * (cols / 32) + j / 32, (j & 15) >> 2), j & 31);

    public bool Int8Dot => true;

    public bool BlockDot => false;

    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r) => 0f;

    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd)
    {
        var u = Locate(words, scales, Block(row, cols, unit), unit);
        return Legacy.Dot1Q8(u.Lo, u.Hi, u.D, 0f, false, xq, xd, unit);
    }

    /// <summary>kvalues of quants 4kw..4kw+3 as signed bytes.</summary>
    public int QuantWord(ArrayView<int> words, long block, int kw) => LowBit.KValues(Legacy.Nibbles(words[block * 4 + (kw & 3)], kw));

    public float BlockScale(ArrayView<int> words, ArrayView<ushort> scales, long block, int step) => Numeric.HalfToFloat(scales[block]);

    public float BlockMin(ArrayView<int> words, long block) => 0f;

    public bool HasMins => false;

    public bool ScalePerStep => false;
}
