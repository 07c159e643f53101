using ILGPU;

namespace Infer.Kernels.Gpu.Kernels;

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

    /// <summary>
    /// A unit of a format with a scale and a min per sub-block (Q4_K, Q5_K): its 8 quants as bytes (two words, elements j..j+7, low
    /// to high), its sub-block's scale and min, and the block's d | dmin.
    /// </summary>
    public struct ScaledUnit
    {
        public int Q0, Q1, Scale, Min, D;
    }

    /// <summary>A unit's 8 weights: d·sc·q − dmin·m (each value is what the format's Element gives).</summary>
    public static Float8 Decode(ScaledUnit u)
    {
        float d = Numeric.HalfToFloat(u.D), dm = Numeric.HalfToFloat(u.D >> 16) * u.Min;
        int sc = u.Scale, q0 = u.Q0, q1 = u.Q1;
        return new Float8
        {
            A = d * sc * (q0 & 0xFF) - dm, B = d * sc * ((q0 >> 8) & 0xFF) - dm,
            C = d * sc * ((q0 >> 16) & 0xFF) - dm, D = d * sc * ((q0 >> 24) & 0xFF) - dm,
            E = d * sc * (q1 & 0xFF) - dm, F = d * sc * ((q1 >> 8) & 0xFF) - dm,
            G = d * sc * ((q1 >> 16) & 0xFF) - dm, H = d * sc * ((q1 >> 24) & 0xFF) - dm,
        };
    }

    /// <summary>
    /// A unit against x[j..j+7] as two int8 words: d·sc·x_d·Σq·x_q − dmin·m·x_d·Σx_q over the unit (the activation sum as a dp4a
    /// with ones).
    /// </summary>
    public static float Dot1Q8(ScaledUnit u, ArrayView<int> xq, ArrayView<float> xd, int unit)
    {
        int x0 = xq[2 * unit], x1 = xq[2 * unit + 1];
        int dot = Numeric.Dp4a(u.Q0, x0, Numeric.Dp4a(u.Q1, x1, 0));
        int sum = Numeric.Dp4a(0x01010101, x0, Numeric.Dp4a(0x01010101, x1, 0));
        return xd[unit / 4] * (Numeric.HalfToFloat(u.D) * u.Scale * dot - Numeric.HalfToFloat(u.D >> 16) * u.Min * sum);
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
internal struct Q4_KWords : IInt8Blocks
{
    public const int WordsPerBlock = 36;

    /// <summary>Sub-block b = block % 8 of super-block block / 8: the low (even b) or high (odd b) nibbles of 32-byte group b / 2.</summary>
    public int QuantWord(ArrayView<int> words, long block, int kw)
    {
        int sub = (int)(block & 7);
        int q = words[(block >> 3) * WordsPerBlock + 4 + (sub >> 1) * 8 + kw];
        return (q >> ((sub & 1) * 4)) & 0x0F0F0F0F;
    }

    public float BlockScale(ArrayView<int> words, ArrayView<ushort> scales, long block, int step)
    {
        long w0 = (block >> 3) * WordsPerBlock;
        return Numeric.HalfToFloat(words[w0]) * ScaleMin(words, w0, (int)(block & 7)).Scale;
    }

    public float BlockMin(ArrayView<int> words, long block)
    {
        long w0 = (block >> 3) * WordsPerBlock;
        return Numeric.HalfToFloat(words[w0] >> 16) * ScaleMin(words, w0, (int)(block & 7)).Min;
    }

    public bool HasMins => true;

    public bool ScalePerStep => false;

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

    public bool Int8Dot => true;

    public bool BlockDot => true;

    /// <summary>
    /// Sub-block block % 8 of super-block block / 8 (9 aligned 16-byte words: d | dmin and the 12 scale bytes, then four 32-byte
    /// groups of nibbles): its group's two words (low or high nibbles) against the activation block as unsigned bytes, the header
    /// word for its scale and min: x_d · (d · sc · Σq·x_q − dmin · m · Σx_q).
    /// </summary>
    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r)
    {
        const int M = 0x0F0F0F0F;
        var w = words.Cast<Words4>();
        var xq = r.Q.Cast<Words4>();
        int sub = (int)(block & 7), shift = (sub & 1) * 4;
        long w4 = (block >> 3) * (WordsPerBlock / 4);
        Words4 h = w[w4], q0 = w[w4 + 1 + 2 * (sub >> 1)], q1 = w[w4 + 2 + 2 * (sub >> 1)], a = xq[2 * xb], b = xq[2 * xb + 1];
        int lo = Numeric.Dp4aUS((q0.X >> shift) & M, a.X, Numeric.Dp4aUS((q0.Y >> shift) & M, a.Y,
            Numeric.Dp4aUS((q0.Z >> shift) & M, a.Z, Numeric.Dp4aUS((q0.W >> shift) & M, a.W, 0))));
        int hi = Numeric.Dp4aUS((q1.X >> shift) & M, b.X, Numeric.Dp4aUS((q1.Y >> shift) & M, b.Y,
            Numeric.Dp4aUS((q1.Z >> shift) & M, b.Z, Numeric.Dp4aUS((q1.W >> shift) & M, b.W, 0))));
        var (sc, m) = ScaleMin(h, sub);
        return r.D[xb] * (Numeric.HalfToFloat(h.X) * sc * (lo + hi) - Numeric.HalfToFloat(h.X >> 16) * m * r.S[xb]);
    }

    /// <summary>
    /// <see cref="ScaleMin(ArrayView{int}, long, int)"/> from the block's first 16 bytes (scale bytes 0-3 in Y, 4-7 in Z, 8-11 in W).
    /// </summary>
    internal static (int Scale, int Min) ScaleMin(Words4 h, int s)
    {
        if (s < 4) return ((h.Y >> (8 * s)) & 63, (h.Z >> (8 * s)) & 63);
        int t = 8 * (s - 4), b = h.W >> t;
        return ((b & 0xF) | (((h.Y >> t) >> 2) & 0x30), ((b >> 4) & 0xF) | (((h.Z >> t) >> 2) & 0x30));
    }

    /// <summary>The unit's 8 nibbles as two int8 words against x[j..j+7] (<see cref="KQuant.Dot1Q8"/>).</summary>
    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd) =>
        KQuant.Dot1Q8(Locate(words, row, cols, unit), xq, xd, unit);

    /// <summary>
    /// The unit's bits with one read of its sub-block's scale and min and two words of nibbles (the unit's 8 quant bytes are
    /// word-aligned: 8 consecutive bytes of one 32-byte group).
    /// </summary>
    private static KQuant.ScaledUnit Locate(ArrayView<int> words, int row, int cols, int unit)
    {
        int j = unit * 8;
        long w0 = ((long)row * (cols / 256) + j / 256) * WordsPerBlock;
        int e = j & 255;
        int sub = e >> 6, within = e & 63;
        var (sc, m) = ScaleMin(words, w0, 2 * sub + (within >= 32 ? 1 : 0));
        long q = w0 + 4 + sub * 8 + ((within & 31) >> 2);
        int shift = within < 32 ? 0 : 4;
        return new KQuant.ScaledUnit
        {
            Q0 = (words[q] >> shift) & 0x0F0F0F0F, Q1 = (words[q + 1] >> shift) & 0x0F0F0F0F, Scale = sc, Min = m, D = words[w0],
        };
    }

    /// <summary>The 8 weights of a unit (<see cref="Locate"/>). Each value is what <see cref="Element"/> gives.</summary>
    private static Float8 Unit(ArrayView<int> words, int row, int cols, int unit) => KQuant.Decode(Locate(words, row, cols, unit));

    /// <summary>The 6-bit scale and min of sub-block <paramref name="s"/> (0..7) from the block's 12 packed bytes (Q4_K and Q5_K).</summary>
    internal static (int Scale, int Min) ScaleMin(ArrayView<int> words, long w0, int s)
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
/// Q5_K (176-byte super-blocks of 256: f16 d, f16 dmin, Q4_K's 12 bytes of 6-bit scales and mins, 32 bytes of high bits, 128 bytes
/// of nibbles; w = d * sc * q - dmin * m per 32-element sub-block, q = nibble + 16 · bit s of qh[l] in 0..31), uploaded as 44 words
/// per block: d | dmin, the scales (words 1-3), qh (4-11), qs (12-43). Unit = 8 elements.
/// </summary>
internal struct Q5_KWords : IInt8Blocks
{
    public const int WordsPerBlock = 44;
    private const int HighWords = 4, QuantWords = 12;

    /// <summary>
    /// Sub-block b = block % 8 of super-block block / 8: the low (even b) or high (odd b) nibbles of 32-byte group b / 2, with bit b of
    /// the same qh bytes as bit 4.
    /// </summary>
    public int QuantWord(ArrayView<int> words, long block, int kw)
    {
        int sub = (int)(block & 7);
        long w0 = (block >> 3) * WordsPerBlock;
        int q = (words[w0 + QuantWords + (sub >> 1) * 8 + kw] >> ((sub & 1) * 4)) & 0x0F0F0F0F;
        return q | (((words[w0 + HighWords + kw] >> sub) & 0x01010101) << 4);
    }

    public float BlockScale(ArrayView<int> words, ArrayView<ushort> scales, long block, int step)
    {
        long w0 = (block >> 3) * WordsPerBlock;
        return Numeric.HalfToFloat(words[w0]) * Q4_KWords.ScaleMin(words, w0, (int)(block & 7)).Scale;
    }

    public float BlockMin(ArrayView<int> words, long block)
    {
        long w0 = (block >> 3) * WordsPerBlock;
        return Numeric.HalfToFloat(words[w0] >> 16) * Q4_KWords.ScaleMin(words, w0, (int)(block & 7)).Min;
    }

    public bool HasMins => true;

    public bool ScalePerStep => false;

    public int Units(int cols) => cols / 8;

    public float Dot1(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, long xo) =>
        KQuant.Dot8(Unit(words, row, cols, unit), x, xo + unit * 8);

    public Float4 Dot4(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<float> x, Rows4 r) =>
        KQuant.Dot8x4(Unit(words, row, cols, unit), x, r, unit * 8);

    public bool Int8Dot => true;

    public bool BlockDot => true;

    /// <summary>
    /// Sub-block block % 8 of super-block block / 8 (11 aligned 16-byte words: Q4_K's header, qh in 1-2, qs in 3-10), as
    /// <see cref="Q4_KWords.DotBlockQ8"/> with bit sub of each qh byte as the quants' fifth bit.
    /// </summary>
    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r)
    {
        var w = words.Cast<Words4>();
        var xq = r.Q.Cast<Words4>();
        int sub = (int)(block & 7), ls = (sub & 1) * 4;
        long w4 = (block >> 3) * (WordsPerBlock / 4), q = w4 + 3 + 2 * (sub >> 1);
        Words4 hd = w[w4], h0 = w[w4 + 1], h1 = w[w4 + 2], q0 = w[q], q1 = w[q + 1], a = xq[2 * xb], b = xq[2 * xb + 1];
        int lo = Numeric.Dp4aUS(Q5(q0.X, h0.X, ls, sub), a.X, Numeric.Dp4aUS(Q5(q0.Y, h0.Y, ls, sub), a.Y,
            Numeric.Dp4aUS(Q5(q0.Z, h0.Z, ls, sub), a.Z, Numeric.Dp4aUS(Q5(q0.W, h0.W, ls, sub), a.W, 0))));
        int hi = Numeric.Dp4aUS(Q5(q1.X, h1.X, ls, sub), b.X, Numeric.Dp4aUS(Q5(q1.Y, h1.Y, ls, sub), b.Y,
            Numeric.Dp4aUS(Q5(q1.Z, h1.Z, ls, sub), b.Z, Numeric.Dp4aUS(Q5(q1.W, h1.W, ls, sub), b.W, 0))));
        var (sc, m) = Q4_KWords.ScaleMin(hd, sub);
        return r.D[xb] * (Numeric.HalfToFloat(hd.X) * sc * (lo + hi) - Numeric.HalfToFloat(hd.X >> 16) * m * r.S[xb]);
    }

    /// <summary>Four 5-bit quants (0..31, one per byte): nibbles from <paramref name="qs"/> >> ls, fifth bits from bit hs of qh's bytes.</summary>
    private static int Q5(int qs, int qh, int ls, int hs) => ((qs >> ls) & 0x0F0F0F0F) | (((qh >> hs) & 0x01010101) << 4);

    /// <summary>The unit's 8 five-bit quants as two int8 words against x[j..j+7] (<see cref="KQuant.Dot1Q8"/>).</summary>
    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd) =>
        KQuant.Dot1Q8(Locate(words, row, cols, unit), xq, xd, unit);

    /// <summary>The unit's 8 quants from two words of nibbles and the two words of qh beside them, its scale and min.</summary>
    private static KQuant.ScaledUnit Locate(ArrayView<int> words, int row, int cols, int unit)
    {
        int j = unit * 8;
        long w0 = ((long)row * (cols / 256) + j / 256) * WordsPerBlock;
        int e = j & 255;
        int pair = e >> 6, within = e & 63, sub = 2 * pair + (within >= 32 ? 1 : 0);
        var (sc, m) = Q4_KWords.ScaleMin(words, w0, sub);
        int k = (within & 31) >> 2;
        long q = w0 + QuantWords + pair * 8 + k, h = w0 + HighWords + k;
        int shift = within < 32 ? 0 : 4;
        return new KQuant.ScaledUnit
        {
            Q0 = ((words[q] >> shift) & 0x0F0F0F0F) | (((words[h] >> sub) & 0x01010101) << 4),
            Q1 = ((words[q + 1] >> shift) & 0x0F0F0F0F) | (((words[h + 1] >> sub) & 0x01010101) << 4),
            Scale = sc, Min = m, D = words[w0],
        };
    }

    /// <summary>The 8 weights of a unit (<see cref="Locate"/>). Each value is what <see cref="Element"/> gives.</summary>
    private static Float8 Unit(ArrayView<int> words, int row, int cols, int unit) => KQuant.Decode(Locate(words, row, cols, unit));

    public float Element(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int j)
    {
        long w0 = ((long)row * (cols / 256) + j / 256) * WordsPerBlock;
        int e = j & 255;
        int pair = e >> 6, within = e & 63, sub = 2 * pair + (within >= 32 ? 1 : 0);
        var (sc, m) = Q4_KWords.ScaleMin(words, w0, sub);
        int q = KQuant.Byte(words, w0, 4 * QuantWords + pair * 32 + (within & 31));
        int nib = within < 32 ? q & 0xF : q >> 4;
        int high = (KQuant.Byte(words, w0, 4 * HighWords + (within & 31)) >> sub) & 1;
        int dw = words[w0];
        return Numeric.HalfToFloat(dw) * sc * (nib + 16 * high) - Numeric.HalfToFloat(dw >> 16) * m;
    }
}

/// <summary>
/// Q6_K (210-byte super-blocks of 256: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8 scales, f16 d;
/// w = d * scale * (q - 32) per 16 elements), uploaded padded to 56 words per block (14 aligned 16-byte words: ql in 0-7, qh in 8-11,
/// the scales in 12, d in 13's first half). Unit = 8 elements.
/// </summary>
internal struct Q6_KWords : IInt8Blocks
{
    public const int WordsPerBlock = 56;

    /// <summary>
    /// Sub-block b = block % 8 is quarter b % 4 of half b / 4: low nibbles (quarters 0, 1) or high nibbles (2, 3) of the half's
    /// ql bytes 32·(quarter % 2).., with bit pair 2·quarter of its qh bytes above them; q − 32 as a signed byte (q ^ 32 is q − 32 in
    /// six bits; its bit 5, times 6, fills the top two bits).
    /// </summary>
    public int QuantWord(ArrayView<int> words, long block, int kw)
    {
        int sub = (int)(block & 7), half = sub >> 2, quarter = sub & 3;
        long w0 = (block >> 3) * WordsPerBlock;
        int low = words[w0 + 16 * half + 8 * (quarter & 1) + kw];
        int high = words[w0 + 32 + 8 * half + kw];
        return Signed6(quarter < 2 ? low : low >> 4, high >> (2 * quarter));
    }

    /// <summary>d · the int8 scale of the block's 16 quants 16·step..: scale 2·quarter + step of the half's eight.</summary>
    public float BlockScale(ArrayView<int> words, ArrayView<ushort> scales, long block, int step)
    {
        int sub = (int)(block & 7), half = sub >> 2, quarter = sub & 3;
        long w0 = (block >> 3) * WordsPerBlock;
        int sc = (KQuant.Byte(words, w0, 192 + 8 * half + 2 * quarter + step) << 24) >> 24;
        return Numeric.HalfToFloat(words[w0 + 52]) * sc;
    }

    public float BlockMin(ArrayView<int> words, long block) => 0f;

    public bool HasMins => false;

    public bool ScalePerStep => true;

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

    public bool Int8Dot => true;

    public bool BlockDot => true;

    /// <summary>
    /// Sub-block block % 8 (quarter q of half h, as <see cref="QuantWord"/>) of super-block block / 8: its 32 bytes of ql (low or high
    /// nibbles) and of qh (bit pair 2q) as 6-bit quants in unsigned bytes against the activation block (dp4a.u32.s32), less 32 · Σx_q
    /// per 16 (dp4a of 32s), each half of 16 times its int8 scale, then d · x_d.
    /// </summary>
    public float DotBlockQ8(ArrayView<int> words, ArrayView<ushort> scales, long block, int xb, Rows4 r)
    {
        var w = words.Cast<Words4>();
        var xq = r.Q.Cast<Words4>();
        int sub = (int)(block & 7), half = sub >> 2, quarter = sub & 3, ls = (quarter >> 1) * 4, hs = 2 * quarter;
        long w4 = (block >> 3) * (WordsPerBlock / 4);
        long l = w4 + 4 * half + 2 * (quarter & 1), h = w4 + 8 + 2 * half;
        Words4 l0 = w[l], l1 = w[l + 1], h0 = w[h], h1 = w[h + 1], a = xq[2 * xb], b = xq[2 * xb + 1];
        const int T = 0x20202020;
        int dot0 = Numeric.Dp4aUS(Q6(l0.X, h0.X, ls, hs), a.X, Numeric.Dp4aUS(Q6(l0.Y, h0.Y, ls, hs), a.Y,
            Numeric.Dp4aUS(Q6(l0.Z, h0.Z, ls, hs), a.Z, Numeric.Dp4aUS(Q6(l0.W, h0.W, ls, hs), a.W, 0))));
        int dot1 = Numeric.Dp4aUS(Q6(l1.X, h1.X, ls, hs), b.X, Numeric.Dp4aUS(Q6(l1.Y, h1.Y, ls, hs), b.Y,
            Numeric.Dp4aUS(Q6(l1.Z, h1.Z, ls, hs), b.Z, Numeric.Dp4aUS(Q6(l1.W, h1.W, ls, hs), b.W, 0))));
        int off0 = Numeric.Dp4a(T, a.X, Numeric.Dp4a(T, a.Y, Numeric.Dp4a(T, a.Z, Numeric.Dp4a(T, a.W, 0))));
        int off1 = Numeric.Dp4a(T, b.X, Numeric.Dp4a(T, b.Y, Numeric.Dp4a(T, b.Z, Numeric.Dp4a(T, b.W, 0))));
        // scales 2q and 2q + 1 of the half's eight: bytes 8h + 2q, + 1 of word 12, in one of its four words
        Words4 sc = w[w4 + 12];
        int si = 2 * half + (quarter >> 1), word = si == 0 ? sc.X : si == 1 ? sc.Y : si == 2 ? sc.Z : sc.W, bs = 16 * (quarter & 1);
        int s0 = (word << (24 - bs)) >> 24, s1 = (word << (16 - bs)) >> 24;
        return Numeric.HalfToFloat(words[(block >> 3) * WordsPerBlock + 52]) * r.D[xb] * (s0 * (dot0 - off0) + s1 * (dot1 - off1));
    }

    /// <summary>Four 6-bit quants (0..63, one per byte): low nibbles from <paramref name="ql"/> >> ls, bit pairs from qh >> hs.</summary>
    private static int Q6(int ql, int qh, int ls, int hs) => ((ql >> ls) & 0x0F0F0F0F) | (((qh >> hs) & 0x03030303) << 4);

    /// <summary>The unit's 8 quants (q − 32 as signed bytes, one scale) as two int8 words against x[j..j+7].</summary>
    public float Dot1Q8(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int unit, ArrayView<int> xq, ArrayView<float> xd)
    {
        var u = Locate(words, row, cols, unit);
        int dot = Numeric.Dp4a(u.Q0, xq[2 * unit], Numeric.Dp4a(u.Q1, xq[2 * unit + 1], 0));
        return xd[unit / 4] * Numeric.HalfToFloat(u.D) * u.Scale * dot;
    }

    /// <summary>A unit's quants (q − 32 as signed bytes, elements j..j+7), its 16-element group's int8 scale, and d.</summary>
    private struct UnitBits
    {
        public int Q0, Q1, Scale, D;
    }

    /// <summary>
    /// The unit's bits: one scale, one d, and two words each of low nibbles and high bit pairs (the unit's 8 bytes of each are
    /// consecutive and word-aligned).
    /// </summary>
    private static UnitBits Locate(ArrayView<int> words, int row, int cols, int unit)
    {
        int j = unit * 8;
        long w0 = ((long)row * (cols / 256) + j / 256) * WordsPerBlock;
        int e = j & 255;
        int half = e >> 7, r = e & 127;
        int quarter = r >> 5, l = r & 31;
        long lo = w0 + (half * 64 + l + (quarter & 1) * 32) / 4, hi = w0 + (128 + half * 32 + l) / 4;
        int lowShift = quarter < 2 ? 0 : 4, highShift = 2 * quarter;
        return new UnitBits
        {
            Q0 = Signed6(words[lo] >> lowShift, words[hi] >> highShift),
            Q1 = Signed6(words[lo + 1] >> lowShift, words[hi + 1] >> highShift),
            Scale = (KQuant.Byte(words, w0, 192 + half * 8 + (l >> 4) + 2 * quarter) << 24) >> 24,
            D = words[w0 + 52],
        };
    }

    /// <summary>The 8 weights of a unit (<see cref="Locate"/>). Each value is what <see cref="Element"/> gives.</summary>
    private static Float8 Unit(ArrayView<int> words, int row, int cols, int unit)
    {
        var u = Locate(words, row, cols, unit);
        float ds = Numeric.HalfToFloat(u.D) * u.Scale;
        return new Float8
        {
            A = ds * Numeric.SByte(u.Q0, 0), B = ds * Numeric.SByte(u.Q0, 1), C = ds * Numeric.SByte(u.Q0, 2), D = ds * Numeric.SByte(u.Q0, 3),
            E = ds * Numeric.SByte(u.Q1, 0), F = ds * Numeric.SByte(u.Q1, 1), G = ds * Numeric.SByte(u.Q1, 2), H = ds * Numeric.SByte(u.Q1, 3),
        };
    }

    /// <summary>Four 6-bit quants (low nibbles and high bit pairs already shifted into place) minus 32, as signed bytes.</summary>
    private static int Signed6(int low, int high)
    {
        int s = ((low & 0x0F0F0F0F) | ((high & 0x03030303) << 4)) ^ 0x20202020;
        return s | ((s & 0x20202020) * 6);
    }

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
