using ILGPU;
using ILGPU.Runtime.Cuda;

namespace Infer.Kernels.Gpu.Kernels;

/// <summary>
/// Weight formats whose 32-element blocks are int8 quants with a scale per 16 or 32 and an optional min per 32: w = scale · q − min
/// (Q8_0; Q4_0 as nibble − 8; Q5_0 as q − 16; Q4_1 and Q5_1 with d and −m; IQ4_NL as its int8 values; Q4_K's sub-blocks with
/// d · sc and dmin · m; Q6_K's as q − 32 with d · sc per 16; Q3_K's as −(sc − 32)·(q − 4) with −d; IQ4_XS's table values with
/// d · (ls − 32)): the weights of
/// <see cref="GpuKernels.GemmQ8{TF}"/>. A block is row · (cols / 32) + b, so a k-quant's super-block is block / 8.
/// </summary>
internal interface IInt8Blocks : IWeightFormat
{
    /// <summary>Quants 4kw..4kw+3 (kw = 0..7) of a block as four signed bytes.</summary>
    int QuantWord(ArrayView<int> words, long block, int kw);

    /// <summary>The scale of quants 16·step..16·step+15 (step 0, 1) of a block.</summary>
    float BlockScale(ArrayView<int> words, ArrayView<ushort> scales, long block, int step);

    /// <summary>What the block subtracts from every weight (0 where the format has no mins).</summary>
    float BlockMin(ArrayView<int> words, long block);

    /// <summary>Whether <see cref="BlockMin"/> can be non-zero.</summary>
    bool HasMins { get; }

    /// <summary>Whether the two halves of a block have their own scales (Q6_K).</summary>
    bool ScalePerStep { get; }
}

/// <summary>Eight float sums of a thread: tokens 8n + 2q (Xn) and 8n + 2q + 1 (Yn) of one fragment row.</summary>
internal struct Sums8
{
    public float X0, Y0, X1, Y1, X2, Y2, X3, Y3;
}

/// <summary>Scalar arguments of <see cref="GpuKernels.GemmQ8{TF}"/>.</summary>
internal struct GemmArgs
{
    public int Rows, Cols;      // weight [Rows, Cols], Cols a multiple of 32
    public int Tokens;          // activation rows
    public int YStride;         // floats per output row
    public int Add, RStride;    // Add 1 (one-part launches): the outputs are also added into GemmParts.R, RStride floats a row
}

/// <summary>
/// The second and third weights of a GEMM launch over one quantized input (Q, K and V; gate and up): the grid's row tiles
/// [0, Tiles0) are the first weight's (the kernel's own arguments), the next Tiles1 W1's, the rest W2's; and the residual the
/// first weight's outputs are added into (<see cref="GemmArgs.Add"/>).
/// </summary>
internal struct GemmParts
{
    public ArrayView<int> W1, W2;
    public ArrayView<ushort> S1, S2;
    public ArrayView<float> Y1, Y2, R;
    public int Rows1, Rows2, YStride1, YStride2;
    public int Tiles0, Tiles1;
}

/// <summary>One part of a GEMM launch as a group finds it (<see cref="GpuKernels.GemmPart"/>): its weight, output, arguments and row tile.</summary>
internal struct GemmPartView
{
    public ArrayView<int> W;
    public ArrayView<ushort> S;
    public ArrayView<float> Y;
    public GemmArgs A;
    public int Tile;
}

/// <summary>Two int32 sums of a thread's accumulator fragment: one row, tokens 2q and 2q + 1 (see <see cref="GpuKernels.GemmQ8{TF}"/>).</summary>
internal struct Frag
{
    public int X, Y;
}

/// <summary>A thread's part of a 16 × 8 accumulator fragment: rows g (<see cref="Top"/>) and g + 8 (<see cref="Bottom"/>).</summary>
internal struct Frag16
{
    public Frag Top, Bottom;
}

internal static partial class GpuKernels
{
    /// <summary>Weight rows per <see cref="GemmQ8{TF}"/> group (four warps of 16).</summary>
    public const int GemmRows = 64;

    /// <summary>Tokens per <see cref="GemmQ8{TF}"/> group.</summary>
    public const int GemmTokens = 32;

    /// <summary>Threads per <see cref="GemmQ8{TF}"/> group: four warps.</summary>
    public const int GemmThreads = 128;

    /// <summary>Quant blocks of 32 per shared-memory stage of <see cref="GemmQ8{TF}"/> (two barriers per stage).</summary>
    public const int GemmStageBlocks = 4;

    /// <summary>
    /// Words per row of a shared tile (32 used: four blocks of 8 words): 36 puts the 8 rows × 4 words a warp reads for one
    /// fragment in 32 different banks.
    /// </summary>
    private const int TileStride = 36;

    /// <summary>
    /// Activations for <see cref="GemmQ8{TF}"/>: each 32-element block of x[t, :] as int8 quants q = round(x / d) (half away
    /// from zero), d = max|x| / 127 (ggml's q8_0 rule, d kept as float32); block i = t · blocks + b of <paramref name="total"/>.
    /// xq holds cols / 4 words per token, xd one scale per block, xs d · Σq per block (what a block's min multiplies). Eight
    /// threads take a block, four elements each (a warp reads 512 contiguous bytes), and meet their largest |x| and their quants'
    /// sum through <see cref="RowReduce"/>: groups of at least eight threads (the GEMM's launches have 128).
    /// </summary>
    public static void QuantizeQ8(ArrayView<float> x, ArrayView<int> xq, ArrayView<float> xd, ArrayView<float> xs, int cols, int xStride,
        int total)
    {
        var scratch = SharedMemory.Allocate<float>(MaxGroup);
        int blocks = cols / 32, tid = Group.IdxX, part = tid & 7;
        int i = (Grid.IdxX * Group.DimX + tid) >> 3;
        bool inside = i < total;
        int t = inside ? i / blocks : 0, b = inside ? i % blocks : 0;
        long src = (long)t * xStride + 32L * b + 4 * part;
        float v0 = x[src], v1 = x[src + 1], v2 = x[src + 2], v3 = x[src + 3];
        float d = MaxOf8(scratch, MaxAbs4(v0, v1, v2, v3)) / 127f;
        float id = d != 0 ? 1f / d : 0f;
        int q0 = Numeric.RoundHalfAway(v0 * id), q1 = Numeric.RoundHalfAway(v1 * id);
        int q2 = Numeric.RoundHalfAway(v2 * id), q3 = Numeric.RoundHalfAway(v3 * id);
        float sum = RowReduce(scratch, 0, q0 + q1 + q2 + q3, 8, false); // |Σq| ≤ 4064: exact in float
        if (!inside) return;
        xq[(long)t * (cols / 4) + b * 8 + part] = Pack4(q0, q1, q2, q3);
        if (part != 0) return;
        xd[i] = d;
        xs[i] = d * sum;
    }

    /// <summary>A quantized block's scale and the sum of its quants.</summary>
    private struct BlockQ8
    {
        public float D;
        public int Sum;
    }

    /// <summary>x[src..src+31] by ggml's q8_0 rule (d = max|x| / 127, q = round(x / d) half away from zero) into words q[dst..dst+7].</summary>
    private static BlockQ8 QuantizeBlock(ArrayView<float> x, long src, ArrayView<int> q, long dst)
    {
        float d = Numeric.Q8Scale(x, src);
        float id = d != 0 ? 1f / d : 0f;
        int sum = 0;
        for (int w = 0; w < 8; w++)
        {
            int word = 0;
            for (int k = 0; k < 4; k++)
            {
                int v = Numeric.RoundHalfAway(x[src + 4 * w + k] * id);
                sum += v;
                word |= (v & 0xFF) << (8 * k);
            }
            q[dst + w] = word;
        }
        return new BlockQ8 { D = d, Sum = sum };
    }

    /// <summary>
    /// The group's copy of one activation row for the decode dots (<see cref="IWeightFormat.Dot1Q8"/>): x[x0..x0+cols) quantized
    /// block by block into shared <see cref="Rows4.Q"/> and <see cref="Rows4.D"/>, with <paramref name="sums"/> each block's Σ of
    /// quants into <see cref="Rows4.S"/> (<see cref="IWeightFormat.DotBlockQ8"/>), then a barrier. Every thread must call it. Eight
    /// threads take a block (four elements each; their largest |x| met through <see cref="MaxOf8"/>), so a 2048-wide row is two
    /// passes of a 256-thread group; groups under eight threads quantize whole blocks per thread. The quants and scales are those of
    /// <see cref="QuantizeBlock"/> (the largest |x| does not depend on the order it is found in).
    /// </summary>
    private static void QuantizeToShared(ArrayView<float> x, long x0, int cols, Rows4 r, ArrayView<float> scratch, bool sums)
    {
        int tid = Group.IdxX, blocks = cols / 32;
        ArrayView<int> sq = r.Q;
        if (Group.DimX < 8)
        {
            for (int b = tid; b < blocks; b += Group.DimX) r.D[b] = QuantizeBlock(x, x0 + 32L * b, sq, 8L * b).D;
        }
        else
        {
            int part = tid & 7;
            for (int b0 = 0; b0 < blocks; b0 += Group.DimX / 8)
            {
                int b = b0 + (tid >> 3);
                bool inside = b < blocks;
                long src = x0 + 32L * b + 4 * part;
                float v0 = inside ? x[src] : 0f, v1 = inside ? x[src + 1] : 0f, v2 = inside ? x[src + 2] : 0f, v3 = inside ? x[src + 3] : 0f;
                float d = MaxOf8(scratch, MaxAbs4(v0, v1, v2, v3)) / 127f;
                float id = d != 0 ? 1f / d : 0f;
                if (!inside) continue;
                sq[8 * b + part] = Pack4(Numeric.RoundHalfAway(v0 * id), Numeric.RoundHalfAway(v1 * id), Numeric.RoundHalfAway(v2 * id),
                    Numeric.RoundHalfAway(v3 * id));
                if (part == 0) r.D[b] = d;
            }
        }
        Group.Barrier();
        if (!sums) return;
        for (int b = tid; b < blocks; b += Group.DimX)
        {
            int s = 0;
            for (int k = 0; k < 8; k++) s = Numeric.Dp4a(sq[8 * b + k], 0x01010101, s);
            r.S[b] = s;
        }
        Group.Barrier();
    }

    private static float Abs(float v) => v < 0 ? -v : v;

    /// <summary>The largest |v| of four (0 for none above 0).</summary>
    private static float MaxAbs4(float v0, float v1, float v2, float v3)
    {
        float m = 0;
        m = Abs(v0) > m ? Abs(v0) : m;
        m = Abs(v1) > m ? Abs(v1) : m;
        m = Abs(v2) > m ? Abs(v2) : m;
        return Abs(v3) > m ? Abs(v3) : m;
    }

    /// <summary>Four int8 quants as the bytes of a word, the first lowest.</summary>
    private static int Pack4(int q0, int q1, int q2, int q3) => (q0 & 0xFF) | ((q1 & 0xFF) << 8) | ((q2 & 0xFF) << 16) | (q3 << 24);

    /// <summary>
    /// The largest of <paramref name="v"/> over the eight threads tid &amp; ~7 .. tid | 7 (every thread of the group must call it):
    /// <see cref="RowMax"/> over eight, with the barrier that lets the next pass write <paramref name="scratch"/> again.
    /// </summary>
    private static float MaxOf8(ArrayView<float> scratch, float v)
    {
        float m = RowMax(scratch, 0, v, 8);
        if (!CudaAsm.IsSupported) Group.Barrier();
        return m;
    }

    /// <summary>
    /// y[t, r] = Σ_b d_w[r, b] · d_x[t, b] · Σ_k q_w[r, 32b + k] · q_x[t, 32b + k]: int8 weights (<typeparamref name="TF"/>) times int8
    /// activations (<see cref="QuantizeQ8"/>), exact int32 sums per block. Grid (ceil(Rows / 64), ceil(Tokens / 32)), 128 threads:
    /// each stage of four blocks of 32 quants goes to shared memory (64 weight rows, 32 tokens, their scales), and warp w computes
    /// rows 16w..16w+15 against the 32 tokens as 4 fragments of 16 × 8, one k = 32 step per block (two k = 16 steps where the
    /// format scales each 16 quants), scaled into float sums. On CUDA a step is the tensor-core <c>mma.sync.m16n8k32</c> (or
    /// <c>m16n8k16</c>; s8 · s8 → s32); elsewhere (OpenCL, ILGPU's CPU accelerator) each thread computes the same four sums of
    /// its fragment from shared memory (<see cref="FragRef"/>), so the tile loads, layouts and scaling run in the tests.
    /// </summary>
    public static void GemmQ8<TF>(ArrayView<int> words, ArrayView<ushort> scales, ArrayView<int> xq, ArrayView<float> xd,
        ArrayView<float> xs, ArrayView<float> y, GemmArgs a, GemmParts parts)
        where TF : struct, IInt8Blocks
    {
        var part = GemmPart(words, scales, y, a, parts);
        (words, scales, y, a) = (part.W, part.S, part.Y, part.A);
        const int Stage = GemmStageBlocks, StageWords = Stage * 8;
        var sW = SharedMemory.Allocate<int>(GemmRows * TileStride);
        var sX = SharedMemory.Allocate<int>(GemmTokens * TileStride);
        var sWd = SharedMemory.Allocate<float>(GemmRows * Stage * 2); // [row][block][step]
        var sWm = SharedMemory.Allocate<float>(GemmRows * Stage);     // [row][block]
        var sXd = SharedMemory.Allocate<float>(GemmTokens * Stage);   // [token][block]
        var sXs = SharedMemory.Allocate<float>(GemmTokens * Stage);
        var fmt = default(TF);
        int tid = Group.IdxX;
        int warp = tid >> 5, lane = tid & 31;
        int g = lane >> 2, q = lane & 3;
        int row0 = part.Tile * GemmRows, tok0 = Grid.IdxY * GemmTokens;
        int blocks = a.Cols / 32, xWords = a.Cols / 4;
        int wr = warp * 16; // the warp's first row in the tile
        int rA = wr + g, rB = rA + 8;

        // the thread's sums: fragment rows rA (top) and rB (bottom), tokens 8n + 2q and 8n + 2q + 1
        Sums8 top = default, bottom = default;
        for (int b0 = 0; b0 < blocks; b0 += Stage)
        {
            // the stage's tiles: 64 rows and 32 tokens × 4 blocks of 8 words (blocks past the row's end: zero quants, zero scales)
            for (int e = tid; e < GemmRows * StageWords; e += GemmThreads)
            {
                int r = e / StageWords, kw = e % StageWords, b = b0 + kw / 8;
                sW[r * TileStride + kw] = row0 + r < a.Rows && b < blocks ? fmt.QuantWord(words, (long)(row0 + r) * blocks + b, kw % 8) : 0;
            }
            for (int e = tid; e < GemmTokens * StageWords; e += GemmThreads)
            {
                int t = e / StageWords, kw = e % StageWords;
                sX[t * TileStride + kw] = tok0 + t < a.Tokens && b0 + kw / 8 < blocks ? xq[(long)(tok0 + t) * xWords + b0 * 8 + kw] : 0;
            }
            for (int e = tid; e < GemmRows * Stage; e += GemmThreads)
            {
                int r = e / Stage, b = b0 + e % Stage;
                bool inside = row0 + r < a.Rows && b < blocks;
                long block = (long)(row0 + r) * blocks + b;
                sWd[2 * e] = inside ? fmt.BlockScale(words, scales, block, 0) : 0f;
                sWd[2 * e + 1] = inside && fmt.ScalePerStep ? fmt.BlockScale(words, scales, block, 1) : sWd[2 * e];
                if (fmt.HasMins) sWm[e] = inside ? fmt.BlockMin(words, block) : 0f;
            }
            for (int e = tid; e < GemmTokens * Stage; e += GemmThreads)
            {
                int t = e / Stage, b = b0 + e % Stage;
                bool inside = tok0 + t < a.Tokens && b < blocks;
                sXd[e] = inside ? xd[(long)(tok0 + t) * blocks + b] : 0f;
                if (fmt.HasMins) sXs[e] = inside ? xs[(long)(tok0 + t) * blocks + b] : 0f;
            }
            Group.Barrier();

            for (int j = 0; j < Stage; j++)
            {
                int tx = 2 * q * Stage + j; // the scale of the thread's first token in this block
                int o = 8 * j + q;          // the thread's word of the block's first 16 quants (its second: o + 4)
                if (fmt.ScalePerStep)
                {
                    // a scale per 16 quants: one k = 16 step per half, scaled on its own
                    for (int s = 0; s < 2; s++)
                    {
                        int os = o + 4 * s;
                        int a0 = sW[rA * TileStride + os], a1 = sW[rB * TileStride + os];
                        var c0 = Mma16(a0, a1, sX[g * TileStride + os], sW, sX, wr, 0, os - q, g, q);
                        var c1 = Mma16(a0, a1, sX[(8 + g) * TileStride + os], sW, sX, wr, 8, os - q, g, q);
                        var c2 = Mma16(a0, a1, sX[(16 + g) * TileStride + os], sW, sX, wr, 16, os - q, g, q);
                        var c3 = Mma16(a0, a1, sX[(24 + g) * TileStride + os], sW, sX, wr, 24, os - q, g, q);
                        top = AddScaled(top, c0.Top, c1.Top, c2.Top, c3.Top, sWd[(rA * Stage + j) * 2 + s], sXd, tx);
                        bottom = AddScaled(bottom, c0.Bottom, c1.Bottom, c2.Bottom, c3.Bottom, sWd[(rB * Stage + j) * 2 + s], sXd, tx);
                    }
                }
                else
                {
                    // one k = 32 step per block and fragment column
                    int a0 = sW[rA * TileStride + o], a1 = sW[rB * TileStride + o];
                    int a2 = sW[rA * TileStride + o + 4], a3 = sW[rB * TileStride + o + 4];
                    var c0 = Mma32(a0, a1, a2, a3, sX[g * TileStride + o], sX[g * TileStride + o + 4], sW, sX, wr, 0, 8 * j, g, q);
                    var c1 = Mma32(a0, a1, a2, a3, sX[(8 + g) * TileStride + o], sX[(8 + g) * TileStride + o + 4], sW, sX, wr, 8, 8 * j, g, q);
                    var c2 = Mma32(a0, a1, a2, a3, sX[(16 + g) * TileStride + o], sX[(16 + g) * TileStride + o + 4], sW, sX, wr, 16, 8 * j, g, q);
                    var c3 = Mma32(a0, a1, a2, a3, sX[(24 + g) * TileStride + o], sX[(24 + g) * TileStride + o + 4], sW, sX, wr, 24, 8 * j, g, q);
                    top = AddScaled(top, c0.Top, c1.Top, c2.Top, c3.Top, sWd[(rA * Stage + j) * 2], sXd, tx);
                    bottom = AddScaled(bottom, c0.Bottom, c1.Bottom, c2.Bottom, c3.Bottom, sWd[(rB * Stage + j) * 2], sXd, tx);
                }
                if (fmt.HasMins)
                {
                    top = SubtractMins(top, sWm[rA * Stage + j], sXs, tx);
                    bottom = SubtractMins(bottom, sWm[rB * Stage + j], sXs, tx);
                }
            }
            Group.Barrier();
        }

        int t1 = tok0 + 2 * q;
        StoreSums(y, parts.R, a, row0 + rA, t1, top);
        StoreSums(y, parts.R, a, row0 + rB, t1, bottom);
    }

    /// <summary>
    /// The part of a multi-part GEMM launch (<see cref="GemmParts"/>) that row tile Grid.IdxX falls in, and the tile's index within it.
    /// </summary>
    internal static GemmPartView GemmPart(ArrayView<int> words, ArrayView<ushort> scales, ArrayView<float> y, GemmArgs a, GemmParts p)
    {
        int tile = Grid.IdxX;
        if (tile < p.Tiles0) return new GemmPartView { W = words, S = scales, Y = y, A = a, Tile = tile };
        a.Add = 0;
        if (tile < p.Tiles0 + p.Tiles1)
        {
            a.Rows = p.Rows1;
            a.YStride = p.YStride1;
            return new GemmPartView { W = p.W1, S = p.S1, Y = p.Y1, A = a, Tile = tile - p.Tiles0 };
        }
        a.Rows = p.Rows2;
        a.YStride = p.YStride2;
        return new GemmPartView { W = p.W2, S = p.S2, Y = p.Y2, A = a, Tile = tile - p.Tiles0 - p.Tiles1 };
    }

    /// <summary>
    /// Token scales of the thread's fragment columns: token 8n + 2q at sXd[tx + 32n], its neighbour 4 floats on (four blocks
    /// per token in a stage).
    /// </summary>
    private static Sums8 AddScaled(Sums8 acc, Frag c0, Frag c1, Frag c2, Frag c3, float w, ArrayView<float> sXd, int tx)
    {
        const int Next = GemmStageBlocks, Frag8 = 8 * GemmStageBlocks;
        acc.X0 += c0.X * (w * sXd[tx]);
        acc.Y0 += c0.Y * (w * sXd[tx + Next]);
        acc.X1 += c1.X * (w * sXd[tx + Frag8]);
        acc.Y1 += c1.Y * (w * sXd[tx + Frag8 + Next]);
        acc.X2 += c2.X * (w * sXd[tx + 2 * Frag8]);
        acc.Y2 += c2.Y * (w * sXd[tx + 2 * Frag8 + Next]);
        acc.X3 += c3.X * (w * sXd[tx + 3 * Frag8]);
        acc.Y3 += c3.Y * (w * sXd[tx + 3 * Frag8 + Next]);
        return acc;
    }

    /// <summary>Σ_k (scale·q_k − m)·d_x·p_k = scale·(the integer sum)·d_x − m·(d_x·Σp): the second term per token.</summary>
    private static Sums8 SubtractMins(Sums8 acc, float m, ArrayView<float> sXs, int tx)
    {
        const int Next = GemmStageBlocks, Frag8 = 8 * GemmStageBlocks;
        acc.X0 -= m * sXs[tx];
        acc.Y0 -= m * sXs[tx + Next];
        acc.X1 -= m * sXs[tx + Frag8];
        acc.Y1 -= m * sXs[tx + Frag8 + Next];
        acc.X2 -= m * sXs[tx + 2 * Frag8];
        acc.Y2 -= m * sXs[tx + 2 * Frag8 + Next];
        acc.X3 -= m * sXs[tx + 3 * Frag8];
        acc.Y3 -= m * sXs[tx + 3 * Frag8 + Next];
        return acc;
    }

    private static void StoreSums(ArrayView<float> y, ArrayView<float> r, GemmArgs a, int row, int token, Sums8 v)
    {
        StorePair(y, r, a, row, token, v.X0, v.Y0);
        StorePair(y, r, a, row, token + 8, v.X1, v.Y1);
        StorePair(y, r, a, row, token + 16, v.X2, v.Y2);
        StorePair(y, r, a, row, token + 24, v.X3, v.Y3);
    }

    /// <summary>
    /// Outputs (row, token) and (row, token + 1), where inside; with <see cref="GemmArgs.Add"/> also added into <paramref name="r"/>.
    /// </summary>
    private static void StorePair(ArrayView<float> y, ArrayView<float> r, GemmArgs a, int row, int token, float vx, float vy)
    {
        if (row >= a.Rows) return;
        if (token < a.Tokens)
        {
            y[(long)token * a.YStride + row] = vx;
            if (a.Add != 0) r[(long)token * a.RStride + row] += vx;
        }
        if (token + 1 < a.Tokens)
        {
            y[(long)(token + 1) * a.YStride + row] = vy;
            if (a.Add != 0) r[(long)(token + 1) * a.RStride + row] += vy;
        }
    }

    /// <summary>
    /// One k = 32 step of a 16 × 8 fragment from zero: A the tile rows <paramref name="row0"/>..+15, B the tokens
    /// <paramref name="tok0"/>..+7, words <paramref name="k4"/>..+7 of each. On CUDA the warp's
    /// <c>mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32</c> with this thread's A fragment (rows g and g + 8, words q and q + 4:
    /// <paramref name="a0"/> row g word q, <paramref name="a1"/> row g + 8 word q, <paramref name="a2"/> and <paramref name="a3"/>
    /// the same rows' word q + 4) and B fragment (token g, words q and q + 4); elsewhere the thread's four sums (rows g and g + 8,
    /// tokens 2q and 2q + 1) straight from the shared tiles.
    /// </summary>
    private static Frag16 Mma32(int a0, int a1, int a2, int a3, int b0, int b1, ArrayView<int> sW, ArrayView<int> sX, int row0,
        int tok0, int k4, int g, int q)
    {
        if (CudaAsm.IsSupported)
        {
            Output<int> d0 = default, d1 = default, d2 = default, d3 = default;
            Input<int> x0 = a0, x1 = a1, x2 = a2, x3 = a3, y0 = b0, y1 = b1, z = 0;
            CudaAsm.EmitRef(
                "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %10, %10, %10};",
                ref d0, ref d1, ref d2, ref d3, ref x0, ref x1, ref x2, ref x3, ref y0, ref y1, ref z);
            return new Frag16 { Top = new Frag { X = d0.Value, Y = d1.Value }, Bottom = new Frag { X = d2.Value, Y = d3.Value } };
        }
        return FragRef(sW, sX, row0, tok0, k4, 8, g, q);
    }

    /// <summary>
    /// <see cref="Mma32"/> at k = 16 (words <paramref name="k4"/>..+3: <c>mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32</c>,
    /// A fragment rows g and g + 8 at word q, B fragment token g at word q), for formats with a scale per 16 quants.
    /// </summary>
    private static Frag16 Mma16(int a0, int a1, int b0, ArrayView<int> sW, ArrayView<int> sX, int row0, int tok0, int k4, int g, int q)
    {
        if (CudaAsm.IsSupported)
        {
            Output<int> d0 = default, d1 = default, d2 = default, d3 = default;
            Input<int> x0 = a0, x1 = a1, y0 = b0, z = 0;
            CudaAsm.EmitRef(
                "mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%7, %7, %7, %7};",
                ref d0, ref d1, ref d2, ref d3, ref x0, ref x1, ref y0, ref z);
            return new Frag16 { Top = new Frag { X = d0.Value, Y = d1.Value }, Bottom = new Frag { X = d2.Value, Y = d3.Value } };
        }
        return FragRef(sW, sX, row0, tok0, k4, 4, g, q);
    }

    /// <summary>What the tensor-core step gives this thread, from the shared tiles: rows g and g + 8, tokens 2q and 2q + 1.</summary>
    private static Frag16 FragRef(ArrayView<int> sW, ArrayView<int> sX, int row0, int tok0, int k4, int words, int g, int q)
    {
        int wo = (row0 + g) * TileStride + k4, xo = (tok0 + 2 * q) * TileStride + k4;
        Frag16 c = default;
        for (int kw = 0; kw < words; kw++)
        {
            int wt = sW[wo + kw], wb = sW[wo + 8 * TileStride + kw], x = sX[xo + kw], y = sX[xo + TileStride + kw];
            c.Top.X = Numeric.Dp4a(wt, x, c.Top.X);
            c.Top.Y = Numeric.Dp4a(wt, y, c.Top.Y);
            c.Bottom.X = Numeric.Dp4a(wb, x, c.Bottom.X);
            c.Bottom.Y = Numeric.Dp4a(wb, y, c.Bottom.Y);
        }
        return c;
    }
}
