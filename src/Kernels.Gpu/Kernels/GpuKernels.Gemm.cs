using ILGPU;
using ILGPU.Runtime.Cuda;

namespace Infer.Kernels.Gpu.Kernels;

/// <summary>
/// Weight formats whose 32-element blocks are int8 quants with a scale per 16 or 32 and an optional min per 32: w = scale · q − min
/// (Q8_0; Q4_0 as nibble − 8; Q4_K's sub-blocks with d · sc and dmin · m; Q6_K's as q − 32 with d · sc per 16): the weights of
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
}

/// <summary>Two int32 sums of a thread's 8x8 accumulator fragment: row g, tokens 2q and 2q + 1 (see <see cref="GpuKernels.GemmQ8{TF}"/>).</summary>
internal struct Frag
{
    public int X, Y;
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
    /// from zero), d = max|x| / 127 (ggml's q8_0 rule, d kept as float32). Index: t · blocks + b; xq holds cols / 4 words per
    /// token, xd one scale per block, xs d · Σq per block (what a block's min multiplies).
    /// </summary>
    public static void QuantizeQ8(Index1D i, ArrayView<float> x, ArrayView<int> xq, ArrayView<float> xd, ArrayView<float> xs, int cols,
        int xStride)
    {
        int blocks = cols / 32;
        int t = i / blocks, b = i % blocks;
        var q = QuantizeBlock(x, (long)t * xStride + b * 32, xq, (long)t * (cols / 4) + b * 8);
        xd[i] = q.D;
        xs[i] = q.D * q.Sum;
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
    /// block by block into shared <paramref name="sq"/> and <paramref name="sd"/>, then a barrier. Every thread must call it.
    /// </summary>
    private static void QuantizeToShared(ArrayView<float> x, long x0, int cols, ArrayView<int> sq, ArrayView<float> sd)
    {
        for (int b = Group.IdxX; b < cols / 32; b += Group.DimX) sd[b] = QuantizeBlock(x, x0 + 32L * b, sq, 8L * b).D;
        Group.Barrier();
    }

    /// <summary>
    /// y[t, r] = Σ_b d_w[r, b] · d_x[t, b] · Σ_k q_w[r, 32b + k] · q_x[t, 32b + k]: int8 weights (<typeparamref name="TF"/>) times int8
    /// activations (<see cref="QuantizeQ8"/>), exact int32 sums per block. Grid (ceil(Rows / 64), ceil(Tokens / 32)), 128 threads:
    /// each stage of four blocks of 32 quants goes to shared memory (64 weight rows, 32 tokens, their scales), and warp w computes
    /// rows 16w..16w+15 against the 32 tokens as 2 × 4 fragments of 8 × 8, two k = 16 steps per block, scaled into float sums.
    /// On CUDA a fragment step is the tensor-core <c>mma.sync.m8n8k16</c> (s8 · s8 → s32); elsewhere (OpenCL, ILGPU's CPU
    /// accelerator) each thread computes the same two sums of its fragment from shared memory (<see cref="Mma"/>), so the tile
    /// loads, layouts and scaling run in the tests.
    /// </summary>
    public static void GemmQ8<TF>(ArrayView<int> words, ArrayView<ushort> scales, ArrayView<int> xq, ArrayView<float> xd,
        ArrayView<float> xs, ArrayView<float> y, GemmArgs a)
        where TF : struct, IInt8Blocks
    {
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
        int row0 = Grid.IdxX * GemmRows, tok0 = Grid.IdxY * GemmTokens;
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
                Frag c00 = default, c01 = default, c02 = default, c03 = default, c10 = default, c11 = default, c12 = default, c13 = default;
                int tx = 2 * q * Stage + j; // the scale of the thread's first token in this block
                for (int s = 0; s < 2; s++)
                {
                    int k4 = 8 * j + 4 * s; // the step's first word: quants 32j + 16s ..
                    int o = k4 + q;
                    int a0 = sW[rA * TileStride + o], a1 = sW[rB * TileStride + o];
                    int b0w = sX[g * TileStride + o], b1w = sX[(8 + g) * TileStride + o];
                    int b2w = sX[(16 + g) * TileStride + o], b3w = sX[(24 + g) * TileStride + o];
                    c00 = Mma(a0, b0w, c00, sW, sX, wr, 0, k4, g, q);
                    c01 = Mma(a0, b1w, c01, sW, sX, wr, 8, k4, g, q);
                    c02 = Mma(a0, b2w, c02, sW, sX, wr, 16, k4, g, q);
                    c03 = Mma(a0, b3w, c03, sW, sX, wr, 24, k4, g, q);
                    c10 = Mma(a1, b0w, c10, sW, sX, wr + 8, 0, k4, g, q);
                    c11 = Mma(a1, b1w, c11, sW, sX, wr + 8, 8, k4, g, q);
                    c12 = Mma(a1, b2w, c12, sW, sX, wr + 8, 16, k4, g, q);
                    c13 = Mma(a1, b3w, c13, sW, sX, wr + 8, 24, k4, g, q);
                    if (fmt.ScalePerStep || s == 1)
                    {
                        // the integer sums so far (the block, or its half) times d_w · d_x into the float sums
                        top = AddScaled(top, c00, c01, c02, c03, sWd[(rA * Stage + j) * 2 + s], sXd, tx);
                        bottom = AddScaled(bottom, c10, c11, c12, c13, sWd[(rB * Stage + j) * 2 + s], sXd, tx);
                        c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = default;
                    }
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
        StoreSums(y, a, row0 + rA, t1, top);
        StoreSums(y, a, row0 + rB, t1, bottom);
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

    private static void StoreSums(ArrayView<float> y, GemmArgs a, int row, int token, Sums8 v)
    {
        StorePair(y, a, row, token, v.X0, v.Y0);
        StorePair(y, a, row, token + 8, v.X1, v.Y1);
        StorePair(y, a, row, token + 16, v.X2, v.Y2);
        StorePair(y, a, row, token + 24, v.X3, v.Y3);
    }

    private static void StorePair(ArrayView<float> y, GemmArgs a, int row, int token, float vx, float vy)
    {
        if (row >= a.Rows) return;
        if (token < a.Tokens) y[(long)token * a.YStride + row] = vx;
        if (token + 1 < a.Tokens) y[(long)(token + 1) * a.YStride + row] = vy;
    }

    /// <summary>
    /// One k = 16 step of an 8 × 8 fragment: c + A·B with A the tile rows <paramref name="row0"/>..+7 and B the tokens
    /// <paramref name="tok0"/>..+7, words <paramref name="k4"/>..+3 of each. On CUDA the warp's <c>mma.sync.aligned.m8n8k16.row.col.s32.s8.s8.s32</c>
    /// with this thread's fragments <paramref name="aFrag"/> (row g, quants 4q..4q+3) and <paramref name="bFrag"/> (token g, the same
    /// quants); elsewhere the thread's two sums (row g, tokens 2q and 2q + 1) straight from the shared tiles.
    /// </summary>
    private static Frag Mma(int aFrag, int bFrag, Frag c, ArrayView<int> sW, ArrayView<int> sX, int row0, int tok0, int k4, int g, int q)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit(
                "{ .reg .s32 d0, d1; mma.sync.aligned.m8n8k16.row.col.s32.s8.s8.s32 {d0, d1}, {%1}, {%2}, {%3, %4}; mov.b64 %0, {d0, d1}; }",
                out long d, aFrag, bFrag, c.X, c.Y);
            return new Frag { X = (int)d, Y = (int)(d >> 32) };
        }
        int wo = (row0 + g) * TileStride + k4, xo = (tok0 + 2 * q) * TileStride + k4;
        for (int kw = 0; kw < 4; kw++)
        {
            int w = sW[wo + kw];
            c.X = Numeric.Dp4a(w, sX[xo + kw], c.X);
            c.Y = Numeric.Dp4a(w, sX[xo + TileStride + kw], c.Y);
        }
        return c;
    }
}
