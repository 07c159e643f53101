using ILGPU;
using ILGPU.Runtime.Cuda;

namespace Infer.Kernels.Gpu.Kernels;

/// <summary>
/// Helpers of the low-bit super-block formats (Q3_K, IQ4_XS): a unit of 8 signed int8 quants with one scale, and IQ4's non-linear
/// table looked up four indices at a time.
/// </summary>
internal static class LowBit
{
    /// <summary>A unit's 8 quants as signed bytes (two words, elements j..j+7, low to high), its integer scale, and d's half bits.</summary>
    public struct SignedUnit
    {
        public int Q0, Q1, Scale, D;
    }

    /// <summary>A unit's 8 weights: (d·scale)·q (each value is what the format's Element gives).</summary>
    public static Float8 Decode(SignedUnit u)
    {
        float ds = Numeric.HalfToFloat(u.D) * u.Scale;
        return new Float8
        {
            A = ds * Numeric.SByte(u.Q0, 0), B = ds * Numeric.SByte(u.Q0, 1), C = ds * Numeric.SByte(u.Q0, 2), D = ds * Numeric.SByte(u.Q0, 3),
            E = ds * Numeric.SByte(u.Q1, 0), F = ds * Numeric.SByte(u.Q1, 1), G = ds * Numeric.SByte(u.Q1, 2), H = ds * Numeric.SByte(u.Q1, 3),
        };
    }

    /// <summary>A unit against x[j..j+7] as two int8 words: x_d·d·scale·Σq·x_q, the integer sum exact (dp4a).</summary>
    public static float Dot1Q8(SignedUnit u, ArrayView<int> xq, ArrayView<float> xd, int unit)
    {
        int dot = Numeric.Dp4a(u.Q0, xq[2 * unit], Numeric.Dp4a(u.Q1, xq[2 * unit + 1], 0));
        return xd[unit / 4] * Numeric.HalfToFloat(u.D) * u.Scale * dot;
    }

    /// <summary>
    /// Four 3-bit quants (0..7, one per byte) minus 4 as signed bytes (v ^ 4 is v − 4 in three bits; its bit 2, times 0x3E, fills
    /// the byte's top five bits).
    /// </summary>
    public static int Signed3(int v)
    {
        int s = (v & 0x07070707) ^ 0x04040404;
        return s | ((s & 0x04040404) * 0x3E);
    }

    // ggml's kvalues_iq4nl (-127, -104, ..., 113) as four words of signed bytes, value i in byte i % 4 of word i / 4
    private const int KValues0 = unchecked((int)0xBFAD9881), KValues1 = unchecked((int)0xF6EADDCF);
    private const int KValues2 = 0x26190D01, KValues3 = 0x71594535;

    /// <summary>
    /// kvalues[i] for four indices 0..15 (the low nibble of each byte) as four signed bytes: one byte permute picks each index's
    /// value among values 0..7, one among 8..15, and a third takes the one bit 3 asks for (llama.cpp's get_int_from_table_16).
    /// </summary>
    public static int KValues(int nibbles)
    {
        int s = nibbles & 0x07070707;
        int sel = (s & 0x7) | ((s >> 4) & 0x70) | ((s >> 8) & 0x700) | ((s >> 12) & 0x7000);
        int h = nibbles & 0x08080808; // bit 3 of byte k to bit 2 of selector nibble k: byte k of the high half
        int pick = 0x3210 | ((h >> 1) & 0x4) | ((h >> 5) & 0x40) | ((h >> 9) & 0x400) | ((h >> 13) & 0x4000);
        return Permute(Permute(KValues0, KValues1, sel), Permute(KValues2, KValues3, sel), pick);
    }

    /// <summary>
    /// Byte k of the result is byte (nibble k of <paramref name="sel"/>, 0..7) of the eight bytes of <paramref name="a"/> (0-3) and
    /// <paramref name="b"/> (4-7): PTX <c>prmt.b32</c> on CUDA (selector nibbles below 8: no sign replication).
    /// </summary>
    public static int Permute(int a, int b, int sel)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("prmt.b32 %0, %1, %2, %3;", out int r, a, b, sel);
            return r;
        }
        int result = 0;
        for (int k = 0; k < 4; k++)
        {
            int i = (sel >> (4 * k)) & 7;
            int v = ((i < 4 ? a : b) >> (8 * (i & 3))) & 0xFF;
            result |= v << (8 * k);
        }
        return result;
    }
}

/// <summary>
/// Q3_K (110-byte super-blocks of 256: 32 bytes of high bits (hmask), 64 of 2-bit quants, 12 of packed 6-bit scales, f16 d;
/// w = d · (sc − 32) · (q − 4) per 16 elements), uploaded padded to 28 words per block: hmask (words 0-7), qs (8-23), scales
/// (24-26), d (27). Element e = 128h + 32j + l: bits 2j of qs byte 32h + l, bit 4h + j of hmask byte l. Unit = 8 elements.
/// </summary>
internal struct Q3_KWords : IInt8Blocks
{
    public const int WordsPerBlock = 28;
    private const int QuantWords = 8, ScaleBytes = 96, DWord = 27;

    /// <summary>
    /// Quants 4kw.. of 32-element block b = block % 8 (h = b / 4, j = b % 4) folded with their group's scale into one int8:
    /// −(sc − 32)·(q − 4) in −124..128 negated is −128..124 (the CPU kernels' trick), so <see cref="BlockScale"/> is −d per 32.
    /// </summary>
    public int QuantWord(ArrayView<int> words, long block, int kw)
    {
        int b = (int)(block & 7);
        long w0 = (block >> 3) * WordsPerBlock;
        int q = Quants(words[w0 + QuantWords + 8 * (b >> 2) + kw], words[w0 + kw], b);
        int sc = -Scale(words, w0, 2 * b + (kw >> 2));
        return (Numeric.SByte(q, 0) * sc & 0xFF) | ((Numeric.SByte(q, 1) * sc & 0xFF) << 8) | ((Numeric.SByte(q, 2) * sc & 0xFF) << 16)
            | (Numeric.SByte(q, 3) * sc << 24);
    }

    public float BlockScale(ArrayView<int> words, ArrayView<ushort> scales, long block, int step) =>
        -Numeric.HalfToFloat(words[(block >> 3) * WordsPerBlock + DWord]);

    public float BlockMin(ArrayView<int> words, long block) => 0f;

    public bool HasMins => false;

    public bool ScalePerStep => false;

    public int Units(int cols) => cols / 8;

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo) =>
        KQuant.Dot8(LowBit.Decode(Locate(words, row, cols, unit)), x, xo + unit * 8);

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r) =>
        KQuant.Dot8x4(LowBit.Decode(Locate(words, row, cols, unit)), x, r, unit * 8);

    public bool Int8Dot => true;

    public bool BlockDot => false;

    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r) => 0f;

    /// <summary>The unit's 8 quants (q − 4 as signed bytes, its group's sc − 32) as two int8 words against x[j..j+7].</summary>
    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd) =>
        LowBit.Dot1Q8(Locate(words, row, cols, unit), xq, xd, unit);

    /// <summary>Four quants q − 4 as signed bytes: the 2-bit fields at bit 2j of a qs word and bit 4h + j of the hmask word beside it.</summary>
    private static int Quants(int qs, int hmask, int bit) =>
        LowBit.Signed3(((qs >> (2 * (bit & 3))) & 0x03030303) | (((hmask >> bit) & 0x01010101) << 2));

    /// <summary>The scale of group g (0..15) minus 32: its low nibble from byte g % 8, its high two bits from byte 8 + g % 4.</summary>
    private static int Scale(ArrayView<int> words, long w0, int g)
    {
        int low = (KQuant.Byte(words, w0, ScaleBytes + (g & 7)) >> (4 * (g >> 3))) & 0xF;
        int high = (KQuant.Byte(words, w0, ScaleBytes + 8 + (g & 3)) >> (2 * (g >> 2))) & 3;
        return (low | (high << 4)) - 32;
    }

    /// <summary>The unit's bits: two qs words, the two hmask words beside them, its group's scale and d.</summary>
    private static LowBit.SignedUnit Locate(ArrayView<int> words, int row, int cols, int unit)
    {
        int j = unit * 8;
        long w0 = ((long)row * (cols / 256) + j / 256) * WordsPerBlock;
        int e = j & 255;
        int b = e >> 5, k = (e & 31) >> 2;
        long q = w0 + QuantWords + 8 * (b >> 2) + k;
        return new LowBit.SignedUnit
        {
            Q0 = Quants(words[q], words[w0 + k], b), Q1 = Quants(words[q + 1], words[w0 + k + 1], b),
            Scale = Scale(words, w0, e >> 4), D = words[w0 + DWord],
        };
    }

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j)
    {
        long w0 = ((long)row * (cols / 256) + j / 256) * WordsPerBlock;
        int e = j & 255;
        int b = e >> 5, l = e & 31;
        int low = (KQuant.Byte(words, w0, 4 * QuantWords + 32 * (b >> 2) + l) >> (2 * (b & 3))) & 3;
        int high = (KQuant.Byte(words, w0, l) >> b) & 1;
        return Numeric.HalfToFloat(words[w0 + DWord]) * Scale(words, w0, e >> 4) * (low + 4 * high - 4);
    }
}

/// <summary>
/// Q2_K (84-byte super-blocks of 256: 16 bytes of 4-bit scales and mins, 64 of 2-bit quants, f16 d, f16 dmin;
/// w = d · (sc &amp; 15) · q − dmin · (sc &gt;&gt; 4) per 16 elements), uploaded as 21 words per block: scales (words 0-3), qs (4-19),
/// d | dmin (20). Element e = 128h + 32j + l: bits 2j of qs byte 32h + l. Unit = 8 elements. No int8 GEMM: its mins change every
/// 16 quants, and the GEMM subtracts one min per 32 (with the activations' sums per 32); prompts take the float32 matmuls.
/// </summary>
internal struct Q2_KWords : IWeightFormat
{
    public const int WordsPerBlock = 21;
    private const int QuantWords = 4, DWord = 20;

    public int Units(int cols) => cols / 8;

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo) =>
        KQuant.Dot8(KQuant.Decode(Locate(words, row, cols, unit)), x, xo + unit * 8);

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r) =>
        KQuant.Dot8x4(KQuant.Decode(Locate(words, row, cols, unit)), x, r, unit * 8);

    public bool Int8Dot => true;

    public bool BlockDot => false;

    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r) => 0f;

    /// <summary>The unit's 8 quants (0..3) as two int8 words against x[j..j+7], its group's min through their sum (KQuant.Dot1Q8).</summary>
    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd) =>
        KQuant.Dot1Q8(Locate(words, row, cols, unit), xq, xd, unit);

    /// <summary>The unit's bits: two qs words shifted to its 2-bit field, its group's scale byte (scale, min) and d | dmin.</summary>
    private static KQuant.ScaledUnit Locate(ArrayView<int> words, int row, int cols, int unit)
    {
        int j = unit * 8;
        long w0 = ((long)row * (cols / 256) + j / 256) * WordsPerBlock;
        int e = j & 255;
        int b = e >> 5, shift = 2 * (b & 3);
        long q = w0 + QuantWords + 8 * (b >> 2) + ((e & 31) >> 2);
        int sc = KQuant.Byte(words, w0, e >> 4);
        return new KQuant.ScaledUnit
        {
            Q0 = (words[q] >> shift) & 0x03030303, Q1 = (words[q + 1] >> shift) & 0x03030303, Scale = sc & 0xF, Min = sc >> 4,
            D = words[w0 + DWord],
        };
    }

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j)
    {
        long w0 = ((long)row * (cols / 256) + j / 256) * WordsPerBlock;
        int e = j & 255;
        int b = e >> 5;
        int q = (KQuant.Byte(words, w0, 4 * QuantWords + 32 * (b >> 2) + (e & 31)) >> (2 * (b & 3))) & 3;
        int sc = KQuant.Byte(words, w0, e >> 4), dw = words[w0 + DWord];
        return Numeric.HalfToFloat(dw) * (sc & 0xF) * q - Numeric.HalfToFloat(dw >> 16) * (sc >> 4);
    }
}

/// <summary>
/// IQ4_XS (136-byte super-blocks of 256: f16 d, 16 bits of high scale pairs, 4 bytes of low scale nibbles, 128 bytes of 4-bit
/// indices; w = d · (ls − 32) · kvalues[q] per 32 elements, each sub-block's 16 bytes as IQ4_NL's: byte k holds element k (low
/// nibble) and k + 16 (high)), uploaded as 34 words per block: d | scales_h (word 0), scales_l (1), qs (2-33). Unit = 8 elements:
/// the low or high nibbles of two words.
/// </summary>
internal struct IQ4_XSWords : IInt8Blocks
{
    public const int WordsPerBlock = 34;
    private const int QuantWords = 2;

    /// <summary>Quants 4kw.. of sub-block block % 8: the low (kw &lt; 4) or high nibbles of its qs word kw % 4, looked up.</summary>
    public int QuantWord(ArrayView<int> words, long block, int kw)
    {
        int q = words[(block >> 3) * WordsPerBlock + QuantWords + 4 * (block & 7) + (kw & 3)];
        return LowBit.KValues(kw < 4 ? q : q >> 4);
    }

    public float BlockScale(ArrayView<int> words, ArrayView<ushort> scales, long block, int step)
    {
        long w0 = (block >> 3) * WordsPerBlock;
        return Numeric.HalfToFloat(words[w0]) * Scale(words, w0, (int)(block & 7));
    }

    public float BlockMin(ArrayView<int> words, long block) => 0f;

    public bool HasMins => false;

    public bool ScalePerStep => false;

    public int Units(int cols) => cols / 8;

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo) =>
        KQuant.Dot8(LowBit.Decode(Locate(words, row, cols, unit)), x, xo + unit * 8);

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r) =>
        KQuant.Dot8x4(LowBit.Decode(Locate(words, row, cols, unit)), x, r, unit * 8);

    public bool Int8Dot => true;

    public bool BlockDot => false;

    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r) => 0f;

    /// <summary>The unit's 8 table values (int8) as two words against x[j..j+7], its sub-block's ls − 32 (<see cref="LowBit.Dot1Q8"/>).</summary>
    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd) =>
        LowBit.Dot1Q8(Locate(words, row, cols, unit), xq, xd, unit);

    /// <summary>Sub-block ib's 6-bit scale minus 32: nibble ib of scales_l (word 1), bits 2·ib of scales_h (word 0's high half).</summary>
    private static int Scale(ArrayView<int> words, long w0, int ib) =>
        (((words[w0 + 1] >> (4 * ib)) & 0xF) | (((words[w0] >> (16 + 2 * ib)) & 3) << 4)) - 32;

    /// <summary>Unit u = 4·ib + m of a block: the low (m &lt; 2) or high nibbles of qs words 2·(m % 2) and the next of sub-block ib.</summary>
    private static LowBit.SignedUnit Locate(ArrayView<int> words, int row, int cols, int unit)
    {
        int j = unit * 8;
        long w0 = ((long)row * (cols / 256) + j / 256) * WordsPerBlock;
        int e = j & 255;
        int ib = e >> 5, m = (e >> 3) & 3, shift = 4 * (m >> 1);
        long q = w0 + QuantWords + 4 * ib + 2 * (m & 1);
        return new LowBit.SignedUnit
        {
            Q0 = LowBit.KValues(words[q] >> shift), Q1 = LowBit.KValues(words[q + 1] >> shift), Scale = Scale(words, w0, ib),
            D = words[w0],
        };
    }

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j)
    {
        long w0 = ((long)row * (cols / 256) + j / 256) * WordsPerBlock;
        int e = j & 255;
        int ib = e >> 5, l = e & 31;
        int q = (KQuant.Byte(words, w0, 4 * QuantWords + 16 * ib + (l & 15)) >> (4 * (l >> 4))) & 0xF;
        return Numeric.HalfToFloat(words[w0]) * Scale(words, w0, ib) * Numeric.SByte(LowBit.KValues(q), 0);
    }
}
