using ILGPU;
using ILGPU.Runtime.Cuda;

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

/// <summary>
/// Offsets (in floats) of the activation rows of up to four tokens; for a one-token tile with <see cref="Int8"/> set, the
/// group's int8 copy of that row (<see cref="IWeightFormat.Dot1Q8"/>: <see cref="Q"/> quants, <see cref="D"/> block scales).
/// </summary>
internal struct Rows4
{
    public long R0, R1, R2, R3;
    public ArrayView<int> Q;
    public ArrayView<float> D;
    public ArrayView<int> S;    // Σ of each block's quants (IWeightFormat.DotBlockQ8)
    public int Int8;            // 0: float32 activations; 1: Dot1Q8; 2: DotBlockQ8 where the format has it, else Dot1Q8
}

/// <summary>Four 32-bit words, 16 bytes: a view of this type loads them with one 128-bit load (PTX <c>ld.v4.b32</c>).</summary>
internal struct Words4
{
    public int X, Y, Z, W;
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

    /// <summary>Whether <see cref="Dot1Q8"/> exists: decode against int8 activations (every quantized format).</summary>
    bool Int8Dot { get; }

    /// <summary>
    /// <see cref="Dot1"/> against activations quantized to int8 blocks of 32 (<paramref name="xq"/>: four per word, in element
    /// order; <paramref name="xd"/>: one scale per block): exact integer sums (dp4a), then the two scales.
    /// </summary>
    float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd);

    /// <summary>
    /// Whether <see cref="DotBlockQ8"/> exists: a 32-element block's quants are 16-byte aligned words (its f16 scale in scales), so
    /// decode takes a block per step with 128-bit loads instead of a word per step.
    /// </summary>
    bool BlockDot { get; }

    /// <summary>
    /// Block <paramref name="block"/> (row · (cols / 32) + xb) against activation block <paramref name="xb"/> of the int8 copy in
    /// <paramref name="r"/> (<see cref="Rows4.Q"/> quants, 16-byte aligned; <see cref="Rows4.D"/> scales; <see cref="Rows4.S"/> quant sums).
    /// </summary>
    float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r);
}

internal static class Numeric
{
    /// <summary>IEEE half bits (the low 16 of <paramref name="h"/>) to float32, exactly (zero, subnormals, inf and NaN included).</summary>
    public static float HalfToFloat(int h)
    {
        if (CudaAsm.IsSupported)
        {
            // one hardware conversion (cvt.f32.f16 is exact) instead of the bit arithmetic below
            CudaAsm.Emit("{ .reg .b16 lo, hi; mov.b32 {lo, hi}, %1; cvt.f32.f16 %0, lo; }", out float r, h);
            return r;
        }
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

    /// <summary>c + Σ of the four signed-byte products of <paramref name="a"/> and <paramref name="b"/>: PTX <c>dp4a.s32.s32</c> on CUDA.</summary>
    public static int Dp4a(int a, int b, int c)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("dp4a.s32.s32 %0, %1, %2, %3;", out int r, a, b, c);
            return r;
        }
        return c + SByte(a, 0) * SByte(b, 0) + SByte(a, 1) * SByte(b, 1) + SByte(a, 2) * SByte(b, 2) + SByte(a, 3) * SByte(b, 3);
    }

    /// <summary>
    /// c + Σ of the four products of <paramref name="a"/>'s unsigned bytes and <paramref name="b"/>'s signed bytes: PTX
    /// <c>dp4a.u32.s32</c> on CUDA.
    /// </summary>
    public static int Dp4aUS(int a, int b, int c)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("dp4a.u32.s32 %0, %1, %2, %3;", out int r, a, b, c);
            return r;
        }
        return c + (a & 0xFF) * SByte(b, 0) + ((a >> 8) & 0xFF) * SByte(b, 1) + ((a >> 16) & 0xFF) * SByte(b, 2) + ((a >> 24) & 0xFF) * SByte(b, 3);
    }

    /// <summary>
    /// <paramref name="v"/> of the lane whose index is this lane's xor <paramref name="mask"/> (PTX <c>shfl.sync.bfly</c>): CUDA only,
    /// and every lane of the warp must call it together.
    /// </summary>
    public static float ShuffleXor(float v, int mask)
    {
        CudaAsm.Emit("shfl.sync.bfly.b32 %0, %1, %2, 31, -1;", out float r, v, mask);
        return r;
    }

    /// <summary>ggml's q8_0 scale of x[src..src+31]: d = max|x| / 127 (the quants are then round(x · (1/d)), 0 where d is 0).</summary>
    public static float Q8Scale(ArrayView<float> x, long src)
    {
        float amax = 0;
        for (int j = 0; j < 32; j++)
        {
            float a = x[src + j];
            a = a < 0 ? -a : a;
            amax = a > amax ? a : amax;
        }
        return amax / 127f;
    }

    /// <summary>Signed byte <paramref name="k"/> (0..3) of a word.</summary>
    public static int SByte(int word, int k) => (word << (24 - 8 * k)) >> 24;
}

/// <summary>F32: words hold float bits, row-major, unit = one element.</summary>
internal struct F32Words : IWeightFormat
{
    public bool Int8Dot => false;

    public bool BlockDot => false;

    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r) => 0f;

    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd) =>
        0f;

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
    public bool Int8Dot => false;

    public bool BlockDot => false;

    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r) => 0f;

    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd) =>
        0f;

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
    public bool Int8Dot => false;

    public bool BlockDot => false;

    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r) => 0f;

    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd) =>
        0f;

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

    public bool Int8Dot => true;

    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd)
    {
        long block = (long)row * (cols / 32) + (unit >> 3);
        return Numeric.HalfToFloat(scales[block]) * xd[unit >> 3] * Numeric.Dp4a(words[block * 8 + (unit & 7)], xq[unit], 0);
    }

    public float BlockScale(ArrayView<int> words, ArrayView<ushort> scales, long block, int step) => Numeric.HalfToFloat(scales[block]);

    public float BlockMin(ArrayView<int> words, long block) => 0f;

    public bool HasMins => false;

    public bool ScalePerStep => false;

    public bool BlockDot => true;

    /// <summary>The block's 32 quants (two 128-bit loads) against the activation block's: eight dp4a in two chains, then d · x_d.</summary>
    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r)
    {
        var w = words.Cast<Words4>();
        var xq = r.Q.Cast<Words4>();
        Words4 q0 = w[2 * block], q1 = w[2 * block + 1], a = xq[2 * xb], b = xq[2 * xb + 1];
        int lo = Numeric.Dp4a(q0.X, a.X, Numeric.Dp4a(q0.Y, a.Y, Numeric.Dp4a(q0.Z, a.Z, Numeric.Dp4a(q0.W, a.W, 0))));
        int hi = Numeric.Dp4a(q1.X, b.X, Numeric.Dp4a(q1.Y, b.Y, Numeric.Dp4a(q1.Z, b.Z, Numeric.Dp4a(q1.W, b.W, 0))));
        return Numeric.HalfToFloat(scales[block]) * r.D[xb] * (lo + hi);
    }

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

    /// <summary>Quants 4kw..4kw+3: the low nibbles of word kw (kw &lt; 4) or the high nibbles of word kw − 4.</summary>
    public int QuantWord(ArrayView<int> words, long block, int kw)
    {
        int q = words[block * 4 + (kw & 3)];
        return Signed4(kw < 4 ? q : q >> 4);
    }

    /// <summary>
    /// The low nibbles of four bytes minus 8, as signed bytes (v ^ 8 is v − 8 in four bits; its bit 3, times 0x1E, fills the
    /// byte's top four bits).
    /// </summary>
    internal static int Signed4(int nibbles)
    {
        int s = (nibbles & 0x0F0F0F0F) ^ 0x08080808;
        return s | ((s & 0x08080808) * 0x1E);
    }

    public bool Int8Dot => true;

    /// <summary>The unit's word as two signed quant words (elements j..j+3 and j+16..j+19) against the same activation words.</summary>
    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd)
    {
        long block = (long)row * (cols / 32) + (unit >> 2);
        int q = words[block * 4 + (unit & 3)], x0 = (unit >> 2) * 8 + (unit & 3);
        int sum = Numeric.Dp4a(Signed4(q), xq[x0], Numeric.Dp4a(Signed4(q >> 4), xq[x0 + 4], 0));
        return Numeric.HalfToFloat(scales[block]) * xd[unit >> 2] * sum;
    }

    public float BlockScale(ArrayView<int> words, ArrayView<ushort> scales, long block, int step) => Numeric.HalfToFloat(scales[block]);

    public float BlockMin(ArrayView<int> words, long block) => 0f;

    public bool HasMins => false;

    public bool ScalePerStep => false;

    public bool BlockDot => true;

    /// <summary>
    /// The block's 16 bytes of nibbles (one 128-bit load: word k's low nibbles are quants 4k..4k+3, its high ones 16+4k..16+4k+3)
    /// as unsigned bytes against the activation block (dp4a.u32.s32), less 8 · Σ x_q for the nibbles' offset, then d · x_d.
    /// </summary>
    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r)
    {
        const int M = 0x0F0F0F0F;
        var xq = r.Q.Cast<Words4>();
        Words4 q = words.Cast<Words4>()[block], a = xq[2 * xb], b = xq[2 * xb + 1];
        int lo = Numeric.Dp4aUS(q.X & M, a.X, Numeric.Dp4aUS(q.Y & M, a.Y, Numeric.Dp4aUS(q.Z & M, a.Z, Numeric.Dp4aUS(q.W & M, a.W, 0))));
        int hi = Numeric.Dp4aUS((q.X >> 4) & M, b.X, Numeric.Dp4aUS((q.Y >> 4) & M, b.Y,
            Numeric.Dp4aUS((q.Z >> 4) & M, b.Z, Numeric.Dp4aUS((q.W >> 4) & M, b.W, 0))));
        return Numeric.HalfToFloat(scales[block]) * r.D[xb] * (lo + hi - 8 * r.S[xb]);
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
