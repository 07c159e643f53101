using ILGPU;

namespace Infer.Kernels.Gpu.Kernels;

/// <summary>
/// What a thread of <see cref="GpuKernels.GemmQ8Wide{TF}"/> loads of the next stage before it computes the current one (register
/// double buffering): weight words of rows warp + 8i (W0..W15) and activation words of tokens warp + 8i (X0..X7), word lane of
/// the stage, already decoded to int8 quants; the weight scales of entries tid (D0, E0: steps 0 and 1, M0: min) and tid + 256
/// (D1, E1, M1), entry = row · 4 + block; the activation scale and d·Σq of entry tid (token · 4 + block).
/// </summary>
internal struct WideStage
{
    public int W0, W1, W2, W3, W4, W5, W6, W7, W8, W9, W10, W11, W12, W13, W14, W15;
    public int X0, X1, X2, X3, X4, X5, X6, X7;
    public float D0, D1, E0, E1, M0, M1, Xd, Xs;
}

/// <summary>
/// A thread's sums of one 8-token column of its warp's 32 × 32 tile: rows g, g + 8, g + 16, g + 24 of the warp (A, B, C, D),
/// tokens 2q (X) and 2q + 1 (Y) of the column.
/// </summary>
internal struct Acc8
{
    public float AX, AY, BX, BY, CX, CY, DX, DY;
}

/// <summary>The 32 float sums of a thread of <see cref="GpuKernels.GemmQ8Wide{TF}"/>: its warp's four 8-token columns.</summary>
internal struct WideAcc
{
    public Acc8 N0, N1, N2, N3;
}

/// <summary>
/// A thread's A fragments of one k step (rows g, g + 8 in A0..A3; rows g + 16, g + 24 in A4..A7; at k = 32 words q (A0, A1)
/// and q + 4 (A2, A3); at k = 16 word q only) and the scales (or mins) of its four rows.
/// </summary>
internal struct WideA
{
    public int A0, A1, A2, A3, A4, A5, A6, A7;
    public float SA, SB, SC, SD;
}

internal static partial class GpuKernels
{
    /// <summary>Weight rows per <see cref="GemmQ8Wide{TF}"/> group (four warps of 32 rows down, two across).</summary>
    public const int WideRows = 128;

    /// <summary>Tokens per <see cref="GemmQ8Wide{TF}"/> group.</summary>
    public const int WideTokens = 64;

    /// <summary>Threads per <see cref="GemmQ8Wide{TF}"/> group: eight warps.</summary>
    public const int WideThreads = 256;

    /// <summary>
    /// <see cref="GemmQ8{TF}"/> with a 128-row × 64-token tile per group of 256 threads (eight warps), the next stage's global loads
    /// in registers while the current stage computes, and an exact integer-to-float step without the slow conversion unit. The
    /// sums are the same exact int32 sums per block (or per 16 quants where the format scales each 16), scaled alike.
    /// <para>
    /// Tiles: grid (ceil(Rows / 128), ceil(Tokens / 64)). Warp w computes rows 32·(w &amp; 3)..+31 against tokens 32·(w &gt;&gt; 2)..+31:
    /// two 16-row A fragments × four 8-token B fragments, eight <c>mma.sync.m16n8k32</c> per block of 32 (sixteen
    /// <c>m16n8k16</c> for Q6_K), so each A fragment read from shared memory feeds four mma and each B fragment two. Thread
    /// (g = lane / 4, q = lane % 4) holds 32 float sums: rows g, g + 8, g + 16, g + 24 × tokens 8n + 2q, 8n + 2q + 1 (n = 0..3).
    /// </para>
    /// <para>
    /// Stages of four blocks (k = 128) in shared memory (35 KiB): 128 weight rows and 64 tokens of 32 words at a stride of 36
    /// words (a fragment's 8 rows × 4 words fall in 32 different banks, as in <see cref="GemmQ8{TF}"/>), the weight scales, step
    /// scales and mins [row][block], the activation scales and d·Σq [token][block]. Pipeline per stage: store the registers
    /// (<see cref="WideStage"/>: 16 weight words, 8 activation words, 2 weight and 1 activation scale entries a thread) to
    /// shared memory, barrier, issue the next stage's loads into the registers, compute the stage from shared memory, barrier.
    /// The loads take clamped addresses and zero what lies past the rows, tokens or blocks, so they need no branches (the last
    /// stage's reload is of the last block, unused).
    /// </para>
    /// <para>
    /// Scaling: each fragment sum c (|c| ≤ 32·128·128 &lt; 2^22) becomes a float exactly as bits(0x4B400000 + c) − 1.5·2^23 (an
    /// integer add and a float add instead of the conversion unit's quarter-rate I2F), then sum += c · (w_row · d_token);
    /// formats with mins subtract m_row · (d·Σq)_token per block. Off CUDA each mma is computed from the shared tiles
    /// (<see cref="FragRef"/>), as in <see cref="GemmQ8{TF}"/>.
    /// </para>
    /// </summary>
    public static void GemmQ8Wide<TF>(ArrayView<int> words, ArrayView<ushort> scales, ArrayView<int> xq, ArrayView<float> xd,
        ArrayView<float> xs, ArrayView<float> y, GemmArgs a, GemmParts parts)
        where TF : struct, IInt8Blocks
    {
        var part = GemmPart(words, scales, y, a, parts);
        (words, scales, y, a) = (part.W, part.S, part.Y, part.A);
        const int Stage = GemmStageBlocks;
        var sW = SharedMemory.Allocate<int>(WideRows * TileStride);
        var sX = SharedMemory.Allocate<int>(WideTokens * TileStride);
        var sWd = SharedMemory.Allocate<float>(WideRows * Stage * 2); // [row][block][step]
        var sWm = SharedMemory.Allocate<float>(WideRows * Stage);     // [row][block]
        var sXd = SharedMemory.Allocate<float>(WideTokens * Stage);   // [token][block]
        var sXs = SharedMemory.Allocate<float>(WideTokens * Stage);
        var fmt = default(TF);
        int tid = Group.IdxX;
        int warp = tid >> 5, lane = tid & 31;
        int g = lane >> 2, q = lane & 3;
        int row0 = part.Tile * WideRows, tok0 = Grid.IdxY * WideTokens;
        int blocks = a.Cols / 32;
        int wRow = (warp & 3) * 32, wTok = (warp >> 2) * 32; // the warp's tile
        int tx = (wTok + 2 * q) * Stage;                     // the scale of the thread's first token, block 0

        WideAcc acc = default;
        var next = WideLoad<TF>(words, scales, xq, xd, xs, a, row0, tok0, 0);
        for (int b0 = 0; b0 < blocks; b0 += Stage)
        {
            WideStore(next, sW, sX, sWd, sWm, sXd, sXs);
            Group.Barrier();
            next = WideLoad<TF>(words, scales, xq, xd, xs, a, row0, tok0, b0 + Stage);
            for (int j = 0; j < Stage; j++)
            {
                if (fmt.ScalePerStep)
                {
                    acc = WideStep<TF>(acc, sW, sX, sWd, sXd, wRow, wTok, j, 0, tx, g, q);
                    acc = WideStep<TF>(acc, sW, sX, sWd, sXd, wRow, wTok, j, 1, tx, g, q);
                }
                else
                {
                    acc = WideStep<TF>(acc, sW, sX, sWd, sXd, wRow, wTok, j, 0, tx, g, q);
                }
                if (fmt.HasMins) acc = WideMins(acc, sWm, sXs, wRow, j, tx, g);
            }
            Group.Barrier();
        }

        int r = row0 + wRow + g, t = tok0 + wTok + 2 * q;
        WideStoreColumn(y, parts.R, a, r, t, acc.N0);
        WideStoreColumn(y, parts.R, a, r, t + 8, acc.N1);
        WideStoreColumn(y, parts.R, a, r, t + 16, acc.N2);
        WideStoreColumn(y, parts.R, a, r, t + 24, acc.N3);
    }

    private static void WideStoreColumn(ArrayView<float> y, ArrayView<float> res, GemmArgs a, int row, int token, Acc8 v)
    {
        StorePair(y, res, a, row, token, v.AX, v.AY);
        StorePair(y, res, a, row + 8, token, v.BX, v.BY);
        StorePair(y, res, a, row + 16, token, v.CX, v.CY);
        StorePair(y, res, a, row + 24, token, v.DX, v.DY);
    }

    /// <summary>c as a float, exactly for |c| &lt; 2^22: the bits of 1.5·2^23 + c, less 1.5·2^23 (no I2F).</summary>
    private static float ExactFloat(int c) => Interop.IntAsFloat((uint)(c + 0x4B400000)) - 12582912f;

    /// <summary>
    /// The loads of the stage of blocks <paramref name="b0"/>..+3 (see <see cref="WideStage"/>), without branches: rows, tokens
    /// and blocks past the end read the last one and give zero.
    /// </summary>
    private static WideStage WideLoad<TF>(ArrayView<int> words, ArrayView<ushort> scales, ArrayView<int> xq, ArrayView<float> xd,
        ArrayView<float> xs, GemmArgs a, int row0, int tok0, int b0)
        where TF : struct, IInt8Blocks
    {
        int tid = Group.IdxX, warp = tid >> 5, lane = tid & 31;
        int blocks = a.Cols / 32;
        int b = b0 + (lane >> 3), kw = lane & 7, r = row0 + warp;
        WideStage s;
        s.W0 = WideWord<TF>(words, a, r, b, kw);
        s.W1 = WideWord<TF>(words, a, r + 8, b, kw);
        s.W2 = WideWord<TF>(words, a, r + 16, b, kw);
        s.W3 = WideWord<TF>(words, a, r + 24, b, kw);
        s.W4 = WideWord<TF>(words, a, r + 32, b, kw);
        s.W5 = WideWord<TF>(words, a, r + 40, b, kw);
        s.W6 = WideWord<TF>(words, a, r + 48, b, kw);
        s.W7 = WideWord<TF>(words, a, r + 56, b, kw);
        s.W8 = WideWord<TF>(words, a, r + 64, b, kw);
        s.W9 = WideWord<TF>(words, a, r + 72, b, kw);
        s.W10 = WideWord<TF>(words, a, r + 80, b, kw);
        s.W11 = WideWord<TF>(words, a, r + 88, b, kw);
        s.W12 = WideWord<TF>(words, a, r + 96, b, kw);
        s.W13 = WideWord<TF>(words, a, r + 104, b, kw);
        s.W14 = WideWord<TF>(words, a, r + 112, b, kw);
        s.W15 = WideWord<TF>(words, a, r + 120, b, kw);

        // activation word lane of the stage: block b0 + lane / 8 of tokens tok0 + warp + 8i
        int xw = b0 * 8 + lane, t = tok0 + warp;
        s.X0 = WideX(xq, a, t, xw);
        s.X1 = WideX(xq, a, t + 8, xw);
        s.X2 = WideX(xq, a, t + 16, xw);
        s.X3 = WideX(xq, a, t + 24, xw);
        s.X4 = WideX(xq, a, t + 32, xw);
        s.X5 = WideX(xq, a, t + 40, xw);
        s.X6 = WideX(xq, a, t + 48, xw);
        s.X7 = WideX(xq, a, t + 56, xw);

        // scales: weight entries tid and tid + 256 (row = entry / 4, block b0 + entry % 4), activation entry tid
        var fmt = default(TF);
        int sb = b0 + (tid & 3), sr = row0 + (tid >> 2);
        bool in0 = sr < a.Rows && sb < blocks, in1 = sr + 64 < a.Rows && sb < blocks;
        long blk0 = (long)Math.Min(sr, a.Rows - 1) * blocks + Math.Min(sb, blocks - 1);
        long blk1 = (long)Math.Min(sr + 64, a.Rows - 1) * blocks + Math.Min(sb, blocks - 1);
        float d0 = fmt.BlockScale(words, scales, blk0, 0), d1 = fmt.BlockScale(words, scales, blk1, 0);
        float e0 = fmt.ScalePerStep ? fmt.BlockScale(words, scales, blk0, 1) : d0;
        float e1 = fmt.ScalePerStep ? fmt.BlockScale(words, scales, blk1, 1) : d1;
        float m0 = fmt.HasMins ? fmt.BlockMin(words, blk0) : 0f, m1 = fmt.HasMins ? fmt.BlockMin(words, blk1) : 0f;
        s.D0 = in0 ? d0 : 0f;
        s.E0 = in0 ? e0 : 0f;
        s.M0 = in0 ? m0 : 0f;
        s.D1 = in1 ? d1 : 0f;
        s.E1 = in1 ? e1 : 0f;
        s.M1 = in1 ? m1 : 0f;
        int st = tok0 + (tid >> 2);
        bool inX = st < a.Tokens && sb < blocks;
        long xb = (long)Math.Min(st, a.Tokens - 1) * blocks + Math.Min(sb, blocks - 1);
        float vd = xd[xb], vs = fmt.HasMins ? xs[xb] : 0f;
        s.Xd = inX ? vd : 0f;
        s.Xs = inX ? vs : 0f;
        return s;
    }

    /// <summary>Quants 4kw..4kw+3 of block b of weight row <paramref name="row"/>; zero past the rows or blocks (read clamped).</summary>
    private static int WideWord<TF>(ArrayView<int> words, GemmArgs a, int row, int b, int kw) where TF : struct, IInt8Blocks
    {
        int blocks = a.Cols / 32;
        int v = default(TF).QuantWord(words, (long)Math.Min(row, a.Rows - 1) * blocks + Math.Min(b, blocks - 1), kw);
        return row < a.Rows && b < blocks ? v : 0;
    }

    /// <summary>Word <paramref name="w"/> of token <paramref name="t"/>'s int8 activations; zero past the tokens or the row.</summary>
    private static int WideX(ArrayView<int> xq, GemmArgs a, int t, int w)
    {
        int xWords = a.Cols / 4;
        int v = xq[(long)Math.Min(t, a.Tokens - 1) * xWords + Math.Min(w, xWords - 1)];
        return t < a.Tokens && w < xWords ? v : 0;
    }

    /// <summary>A stage's registers into the shared tiles (the layout of <see cref="GemmQ8Wide{TF}"/>).</summary>
    private static void WideStore(WideStage s, ArrayView<int> sW, ArrayView<int> sX, ArrayView<float> sWd, ArrayView<float> sWm,
        ArrayView<float> sXd, ArrayView<float> sXs)
    {
        const int R8 = 8 * TileStride;
        int tid = Group.IdxX, warp = tid >> 5, lane = tid & 31;
        int o = warp * TileStride + lane;
        sW[o] = s.W0;
        sW[o + R8] = s.W1;
        sW[o + 2 * R8] = s.W2;
        sW[o + 3 * R8] = s.W3;
        sW[o + 4 * R8] = s.W4;
        sW[o + 5 * R8] = s.W5;
        sW[o + 6 * R8] = s.W6;
        sW[o + 7 * R8] = s.W7;
        sW[o + 8 * R8] = s.W8;
        sW[o + 9 * R8] = s.W9;
        sW[o + 10 * R8] = s.W10;
        sW[o + 11 * R8] = s.W11;
        sW[o + 12 * R8] = s.W12;
        sW[o + 13 * R8] = s.W13;
        sW[o + 14 * R8] = s.W14;
        sW[o + 15 * R8] = s.W15;
        sX[o] = s.X0;
        sX[o + R8] = s.X1;
        sX[o + 2 * R8] = s.X2;
        sX[o + 3 * R8] = s.X3;
        sX[o + 4 * R8] = s.X4;
        sX[o + 5 * R8] = s.X5;
        sX[o + 6 * R8] = s.X6;
        sX[o + 7 * R8] = s.X7;
        sWd[2 * tid] = s.D0;
        sWd[2 * tid + 1] = s.E0;
        sWd[2 * (tid + WideThreads)] = s.D1;
        sWd[2 * (tid + WideThreads) + 1] = s.E1;
        sWm[tid] = s.M0;
        sWm[tid + WideThreads] = s.M1;
        sXd[tid] = s.Xd;
        sXs[tid] = s.Xs;
    }

    /// <summary>
    /// One k step of the warp's 32 × 32 tile: block <paramref name="j"/> of the stage at k = 32, or its half
    /// <paramref name="step"/> at k = 16 where the format scales each 16 quants; eight tensor-core steps, scaled into the sums.
    /// </summary>
    private static WideAcc WideStep<TF>(WideAcc acc, ArrayView<int> sW, ArrayView<int> sX, ArrayView<float> sWd, ArrayView<float> sXd,
        int wRow, int wTok, int j, int step, int tx, int g, int q)
        where TF : struct, IInt8Blocks
    {
        int o = 8 * j + 4 * step + q; // the thread's word (k = 32: and o + 4)
        int ra = (wRow + g) * TileStride + o;
        WideA f;
        f.A0 = sW[ra];
        f.A1 = sW[ra + 8 * TileStride];
        f.A4 = sW[ra + 16 * TileStride];
        f.A5 = sW[ra + 24 * TileStride];
        bool k16 = default(TF).ScalePerStep;
        f.A2 = k16 ? 0 : sW[ra + 4];
        f.A3 = k16 ? 0 : sW[ra + 8 * TileStride + 4];
        f.A6 = k16 ? 0 : sW[ra + 16 * TileStride + 4];
        f.A7 = k16 ? 0 : sW[ra + 24 * TileStride + 4];
        int sa = ((wRow + g) * GemmStageBlocks + j) * 2 + step; // row g's scale; each 8 rows on: 64 floats
        f.SA = sWd[sa];
        f.SB = sWd[sa + 64];
        f.SC = sWd[sa + 128];
        f.SD = sWd[sa + 192];
        int k4 = 8 * j + 4 * step, tj = tx + j;
        acc.N0 = WideColumn<TF>(acc.N0, f, sW, sX, sXd, wRow, wTok, o, k4, tj, g, q);
        acc.N1 = WideColumn<TF>(acc.N1, f, sW, sX, sXd, wRow, wTok + 8, o, k4, tj + 8 * GemmStageBlocks, g, q);
        acc.N2 = WideColumn<TF>(acc.N2, f, sW, sX, sXd, wRow, wTok + 16, o, k4, tj + 16 * GemmStageBlocks, g, q);
        acc.N3 = WideColumn<TF>(acc.N3, f, sW, sX, sXd, wRow, wTok + 24, o, k4, tj + 24 * GemmStageBlocks, g, q);
        return acc;
    }

    /// <summary>
    /// The two tensor-core steps of an 8-token column (tokens <paramref name="tok"/>..+7 of the tile) against the thread's A
    /// fragments, scaled: the token scales at sXd[tx] and sXd[tx + 4] (tokens 2q and 2q + 1).
    /// </summary>
    private static Acc8 WideColumn<TF>(Acc8 acc, WideA f, ArrayView<int> sW, ArrayView<int> sX, ArrayView<float> sXd, int wRow, int tok,
        int o, int k4, int tx, int g, int q)
        where TF : struct, IInt8Blocks
    {
        int xb = (tok + g) * TileStride + o;
        float dx = sXd[tx], dy = sXd[tx + GemmStageBlocks];
        Frag16 c, d;
        if (default(TF).ScalePerStep)
        {
            int b0 = sX[xb];
            c = Mma16(f.A0, f.A1, b0, sW, sX, wRow, tok, k4, g, q);
            d = Mma16(f.A4, f.A5, b0, sW, sX, wRow + 16, tok, k4, g, q);
        }
        else
        {
            int b0 = sX[xb], b1 = sX[xb + 4];
            c = Mma32(f.A0, f.A1, f.A2, f.A3, b0, b1, sW, sX, wRow, tok, k4, g, q);
            d = Mma32(f.A4, f.A5, f.A6, f.A7, b0, b1, sW, sX, wRow + 16, tok, k4, g, q);
        }
        acc.AX += ExactFloat(c.Top.X) * (f.SA * dx);
        acc.AY += ExactFloat(c.Top.Y) * (f.SA * dy);
        acc.BX += ExactFloat(c.Bottom.X) * (f.SB * dx);
        acc.BY += ExactFloat(c.Bottom.Y) * (f.SB * dy);
        acc.CX += ExactFloat(d.Top.X) * (f.SC * dx);
        acc.CY += ExactFloat(d.Top.Y) * (f.SC * dy);
        acc.DX += ExactFloat(d.Bottom.X) * (f.SD * dx);
        acc.DY += ExactFloat(d.Bottom.Y) * (f.SD * dy);
        return acc;
    }

    /// <summary>Block <paramref name="j"/>'s mins: each sum less m_row · (d·Σq)_token (see <see cref="SubtractMins"/>).</summary>
    private static WideAcc WideMins(WideAcc acc, ArrayView<float> sWm, ArrayView<float> sXs, int wRow, int j, int tx, int g)
    {
        int m = (wRow + g) * GemmStageBlocks + j; // row g's min; each 8 rows on: 32 floats
        float ma = sWm[m], mb = sWm[m + 32], mc = sWm[m + 64], md = sWm[m + 96];
        int tj = tx + j;
        acc.N0 = WideMinColumn(acc.N0, ma, mb, mc, md, sXs[tj], sXs[tj + GemmStageBlocks]);
        acc.N1 = WideMinColumn(acc.N1, ma, mb, mc, md, sXs[tj + 32], sXs[tj + 32 + GemmStageBlocks]);
        acc.N2 = WideMinColumn(acc.N2, ma, mb, mc, md, sXs[tj + 64], sXs[tj + 64 + GemmStageBlocks]);
        acc.N3 = WideMinColumn(acc.N3, ma, mb, mc, md, sXs[tj + 96], sXs[tj + 96 + GemmStageBlocks]);
        return acc;
    }

    private static Acc8 WideMinColumn(Acc8 acc, float ma, float mb, float mc, float md, float sx, float sy)
    {
        acc.AX -= ma * sx;
        acc.AY -= ma * sy;
        acc.BX -= mb * sx;
        acc.BY -= mb * sy;
        acc.CX -= mc * sx;
        acc.CY -= mc * sy;
        acc.DX -= md * sx;
        acc.DY -= md * sy;
        return acc;
    }
}
