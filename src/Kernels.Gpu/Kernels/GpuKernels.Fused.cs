using ILGPU;
using ILGPU.Runtime.Cuda;

namespace Infer.Kernels.Gpu.Kernels;

internal static partial class GpuKernels
{
    // ---- fused matmul: up to three weights over one input, with bias or SwiGLU epilogues ----

    /// <summary>
    /// One launch for several matmuls over the same x (grid and group as <see cref="MatMul{TF}"/>, over
    /// <see cref="FusedMatMulArgs.TotalRows"/> rows): rows [0, Rows0) of the grid are W0's, the next Rows1 W1's, the last
    /// Rows2 W2's, each written to its own output, plus its bias where set. With SwiGlu, each grid row r computes both
    /// g = W0[r]·x and u = W1[r]·x and writes y0 = silu(g) * u, y1 = u. Sums run in the same order as MatMul's, so the
    /// results equal the separate launches'.
    /// </summary>
    public static void MatMulFused<TF>(ArrayView<int> w0, ArrayView<ushort> s0, ArrayView<int> w1, ArrayView<ushort> s1,
        ArrayView<int> w2, ArrayView<ushort> s2, ArrayView<float> x, ArrayView<float> y0, ArrayView<float> y1, ArrayView<float> y2,
        ArrayView<float> b0, ArrayView<float> b1, ArrayView<float> b2, FusedMatMulArgs a)
        where TF : struct, IWeightFormat
    {
        var sh = SharedMemory.Allocate<float>(MaxGroup * TokensPerTile);
        var sq = SharedMemory.Allocate<Words4>(MaxInt8Cols / 16); // 16-byte aligned for DotBlockQ8's 128-bit loads
        var sd = SharedMemory.Allocate<float>(MaxInt8Cols / 32);
        var ss = SharedMemory.Allocate<int>(MaxInt8Cols / 32);
        int t0 = Grid.IdxY * TokensPerTile;
        FusedBody<TF, TF>(w0, s0, w1, s1, w2, s2, x, (long)t0 * a.XStride, a.XStride, y0, y1, y2, b0, b1, b2, a, sh, new RopeStoreViews(),
            new Rows4 { Q = sq.Cast<int>(), D = sd, S = ss }, MaxInt8Cols);
    }

    /// <summary>
    /// RMSNorm of the input fused into <see cref="MatMulFused{TF}"/> (no biases, no residual): every group normalizes its
    /// tile's rows of <paramref name="src"/> (xs = src / rms(src) * normW, over the whole row, with the same sums as
    /// <see cref="RmsNorm"/>) into dynamic shared memory [tile tokens, Cols], the groups of grid column 0 also write them
    /// to <paramref name="xb"/>, then the matmuls read xs. Dynamic shared memory: min(Tokens, 4) * Cols floats. The third
    /// part's weight may be in another format, <typeparamref name="TV"/> (Q4_K_M files keep attn_v in Q6_K beside Q4_K Q and K),
    /// so that Q, K and V still take one launch.
    /// </summary>
    public static void MatMulNorm<TF, TV>(ArrayView<int> w0, ArrayView<ushort> s0, ArrayView<int> w1, ArrayView<ushort> s1,
        ArrayView<int> w2, ArrayView<ushort> s2, ArrayView<float> src, ArrayView<float> normW, ArrayView<float> xb,
        ArrayView<float> y0, ArrayView<float> y1, ArrayView<float> y2, FusedMatMulArgs a, RopeStoreViews rs)
        where TF : struct, IWeightFormat
        where TV : struct, IWeightFormat
    {
        var sh = SharedMemory.Allocate<float>(MaxGroup * TokensPerTile);
        var sq = SharedMemory.Allocate<Words4>(MaxNormInt8Cols / 16); // static + dynamic stay within 48 KiB: 4 + 10 + 32 KiB
        var sd = SharedMemory.Allocate<float>(MaxNormInt8Cols / 32);
        var sums = SharedMemory.Allocate<int>(MaxNormInt8Cols / 32);
        var xs = SharedMemory.GetDynamic<float>();
        int t0 = Grid.IdxY * TokensPerTile;
        int nt = a.Tokens - t0 < TokensPerTile ? a.Tokens - t0 : TokensPerTile;
        for (int k = 0; k < nt; k++)
        {
            long so = (long)(t0 + k) * a.XStride;
            float ss = 0;
            for (int i = Group.IdxX; i < a.Cols; i += Group.DimX)
            {
                float v = src[so + i];
                ss += v * v;
            }
            ss = GroupSum(sh, ss);
            float scale = 1f / MathF.Sqrt(ss / a.Cols + a.Eps);
            for (int i = Group.IdxX; i < a.Cols; i += Group.DimX)
            {
                float v = src[so + i] * scale * normW[i];
                xs[k * a.Cols + i] = v;
                if (Grid.IdxX == 0) xb[(long)(t0 + k) * a.XbStride + i] = v;
            }
        }
        Group.Barrier();
        FusedBody<TF, TV>(w0, s0, w1, s1, w2, s2, xs, 0, a.Cols, y0, y1, y2, y0, y0, y0, a, sh, rs,
            new Rows4 { Q = sq.Cast<int>(), D = sd, S = sums }, MaxNormInt8Cols);
    }

    /// <summary>
    /// The rows of <see cref="MatMulFused{TF}"/> for one token tile, its rows starting at x0 in x, xStride apart; the third part's
    /// weight in format <typeparamref name="TV"/>.
    /// </summary>
    private static void FusedBody<TF, TV>(ArrayView<int> w0, ArrayView<ushort> s0, ArrayView<int> w1, ArrayView<ushort> s1,
        ArrayView<int> w2, ArrayView<ushort> s2, ArrayView<float> x, long x0, int xStride,
        ArrayView<float> y0, ArrayView<float> y1, ArrayView<float> y2,
        ArrayView<float> b0, ArrayView<float> b1, ArrayView<float> b2, FusedMatMulArgs a, ArrayView<float> sh, RopeStoreViews rs,
        Rows4 int8Copy, int int8Cols)
        where TF : struct, IWeightFormat
        where TV : struct, IWeightFormat
    {
        int t0 = Grid.IdxY * TokensPerTile;
        int nt = a.Tokens - t0 < TokensPerTile ? a.Tokens - t0 : TokensPerTile;
        var r4 = TileRows(x0, xStride, nt);
        r4.Q = int8Copy.Q;
        r4.D = int8Copy.D;
        r4.S = int8Copy.S;
        // a one-token tile on the GPU path: the dots of formats with int8 blocks read the group's int8 copy of x
        r4.Int8 = a.Int8 != 0 && nt == 1 && a.SliceThreads > 1 && a.Cols <= int8Cols && (default(TF).Int8Dot || default(TV).Int8Dot) ? a.Int8 : 0;
        if (r4.Int8 != 0) QuantizeToShared(x, x0, a.Cols, r4, sh, r4.Int8 == 2 && (default(TF).BlockDot || default(TV).BlockDot));
        int total = a.TotalRows;
        if (a.SliceThreads == 1)
        {
            // ILGPU's CPU accelerator: a grid-stride loop of whole rows per thread, no shared memory.
            for (int row = Grid.IdxX * Group.DimX + Group.IdxX; row < total; row += Grid.DimX * Group.DimX)
            {
                if (rs.Enabled != 0) FusedRopeRow<TF, TV>(w0, s0, w1, s1, w2, s2, x, y0, y1, y2, a, rs, row, 0, 1, t0, nt, r4, sh, false);
                else FusedRow<TF, TV>(w0, s0, w1, s1, w2, s2, x, y0, y1, y2, b0, b1, b2, a, row, 0, 1, t0, nt, r4, sh, false);
            }
            return;
        }
        // Row blocks Grid.IdxX, + Grid.DimX, ...: the launcher caps the groups, so the quantized (and in MatMulNorm, normalized)
        // copy of x above serves many rows.
        int tid = Group.IdxX;
        int lane = tid % a.SliceThreads, perGroup = Group.DimX / a.SliceThreads;
        for (int g = Grid.IdxX; g * perGroup < total; g += Grid.DimX)
        {
            int gridRow = g * perGroup + tid / a.SliceThreads;
            int step = a.SliceThreads;
            if (rs.Enabled != 0) FusedRopeRow<TF, TV>(w0, s0, w1, s1, w2, s2, x, y0, y1, y2, a, rs, gridRow, lane, step, t0, nt, r4, sh, true);
            else FusedRow<TF, TV>(w0, s0, w1, s1, w2, s2, x, y0, y1, y2, b0, b1, b2, a, gridRow, lane, step, t0, nt, r4, sh, true);
        }
    }

    /// <summary>
    /// One grid row of <see cref="MatMulFused{TF}"/>: this thread's share (units lane, lane + step, ...) of the row's dot
    /// products, reduced over the slice through shared memory when <paramref name="reduce"/> (every thread of the group
    /// must then call it, rows past the end included), then the epilogue by the slice's first thread.
    /// </summary>
    private static void FusedRow<TF, TV>(ArrayView<int> w0, ArrayView<ushort> s0, ArrayView<int> w1, ArrayView<ushort> s1,
        ArrayView<int> w2, ArrayView<ushort> s2, ArrayView<float> x, ArrayView<float> y0, ArrayView<float> y1, ArrayView<float> y2,
        ArrayView<float> b0, ArrayView<float> b1, ArrayView<float> b2, FusedMatMulArgs a, int row, int lane, int step,
        int t0, int nt, Rows4 r4, ArrayView<float> sh, bool reduce)
        where TF : struct, IWeightFormat
        where TV : struct, IWeightFormat
    {
        bool valid = row < a.TotalRows;
        int part = a.SwiGlu != 0 || row < a.Rows0 ? 0 : row < a.Rows0 + a.Rows1 ? 1 : 2;
        int local = part == 0 ? row : part == 1 ? row - a.Rows0 : row - a.Rows0 - a.Rows1;
        var acc = new Float4();
        var up = new Float4();
        if (valid)
        {
            if (part == 0) acc = RowDots<TF>(w0, s0, local, a.Cols, lane, step, x, nt, r4);
            else if (part == 1) acc = RowDots<TF>(w1, s1, local, a.Cols, lane, step, x, nt, r4);
            else acc = RowDots<TV>(w2, s2, local, a.Cols, lane, step, x, nt, r4);
            if (a.SwiGlu != 0) up = RowDots<TF>(w1, s1, local, a.Cols, lane, step, x, nt, r4);
        }
        if (reduce)
        {
            acc = SliceSum(sh, acc, lane, step, nt);
            if (a.SwiGlu != 0) up = SliceSum(sh, up, lane, step, nt);
        }
        if (!valid || lane != 0) return;
        for (int k = 0; k < nt; k++)
        {
            long t = t0 + k;
            float v = Get(acc, k);
            if (a.SwiGlu != 0)
            {
                float u = Get(up, k);
                y0[t * a.YStride0 + local] = v / (1f + MathF.Exp(-v)) * u;
                y1[t * a.YStride1 + local] = u;
            }
            else if (part == 0)
            {
                float o = a.Bias0 != 0 ? v + b0[local] : v;
                y0[t * a.YStride0 + local] = o;
                if (a.Residual != 0) y1[t * a.YStride1 + local] += o;
            }
            else if (part == 1) y1[t * a.YStride1 + local] = a.Bias1 != 0 ? v + b1[local] : v;
            else y2[t * a.YStride2 + local] = a.Bias2 != 0 ? v + b2[local] : v;
        }
    }

    /// <summary>
    /// One grid row of the Q/K/V matmul with RoPE and the KV store (<see cref="RopeStoreViews"/>): grid rows
    /// [0, Heads * PerHead) are q's, the next KvHeads * PerHead k's, then v's rows. A pair row computes rows a and b
    /// (a = 2i, b = 2i + 1; NeoX: i, i + Dims/2) and writes a·cos - b·sin, a·sin + b·cos, as <see cref="Rope"/>.
    /// </summary>
    private static void FusedRopeRow<TF, TV>(ArrayView<int> w0, ArrayView<ushort> s0, ArrayView<int> w1, ArrayView<ushort> s1,
        ArrayView<int> w2, ArrayView<ushort> s2, ArrayView<float> x, ArrayView<float> y0, ArrayView<float> y1, ArrayView<float> y2,
        FusedMatMulArgs a, RopeStoreViews rs, int row, int lane, int step, int t0, int nt, Rows4 r4, ArrayView<float> sh, bool reduce)
        where TF : struct, IWeightFormat
        where TV : struct, IWeightFormat
    {
        bool valid = row < a.TotalRows;
        int half = rs.Dims / 2, d = rs.HeadDim, per = rs.PerHead;
        int qItems = rs.Heads * per, kItems = rs.KvHeads * per;
        int part = row < qItems ? 0 : row < qItems + kItems ? 1 : 2;
        int pair = -1, rowA, rowB = 0;
        if (part == 2) rowA = row - qItems - kItems;
        else
        {
            int item = part == 0 ? row : row - qItems;
            int h = item / per, i = item % per;
            if (i < half)
            {
                pair = i;
                rowA = h * d + (rs.NeoX != 0 ? i : 2 * i);
                rowB = h * d + (rs.NeoX != 0 ? i + half : 2 * i + 1);
            }
            else rowA = h * d + rs.Dims + (i - half);
        }
        var acc = new Float4();
        var other = new Float4();
        if (valid)
        {
            if (part == 0)
            {
                acc = RowDots<TF>(w0, s0, rowA, a.Cols, lane, step, x, nt, r4);
                if (pair >= 0) other = RowDots<TF>(w0, s0, rowB, a.Cols, lane, step, x, nt, r4);
            }
            else if (part == 1)
            {
                acc = RowDots<TF>(w1, s1, rowA, a.Cols, lane, step, x, nt, r4);
                if (pair >= 0) other = RowDots<TF>(w1, s1, rowB, a.Cols, lane, step, x, nt, r4);
            }
            else acc = RowDots<TV>(w2, s2, rowA, a.Cols, lane, step, x, nt, r4);
        }
        if (reduce)
        {
            acc = SliceSum(sh, acc, lane, step, nt);
            other = SliceSum(sh, other, lane, step, nt);
        }
        if (!valid || lane != 0) return;
        int kvDim = rs.KvHeads * d;
        for (int k = 0; k < nt; k++)
        {
            int t = t0 + k;
            int pos = rs.Batch[rs.PosOffset + t];
            long dst = (((long)rs.Batch[rs.SeqOffset + t] * rs.Layers + rs.Layer) * rs.ContextLength + pos) * kvDim;
            float va = Get(acc, k);
            if (part == 2)
            {
                y2[(long)t * a.YStride2 + rowA] = va;
                rs.Cache.StoreV(dst + rowA, va);
                continue;
            }
            float ra = va, rb = 0;
            if (pair >= 0)
            {
                float vb = Get(other, k);
                int c = pos * half + pair;
                ra = va * rs.Cos[c] - vb * rs.Sin[c];
                rb = va * rs.Sin[c] + vb * rs.Cos[c];
            }
            if (part == 0)
            {
                y0[(long)t * a.YStride0 + rowA] = ra;
                if (pair >= 0) y0[(long)t * a.YStride0 + rowB] = rb;
            }
            else
            {
                y1[(long)t * a.YStride1 + rowA] = ra;
                rs.Cache.StoreK(dst + rowA, ra);
                if (pair >= 0)
                {
                    y1[(long)t * a.YStride1 + rowB] = rb;
                    rs.Cache.StoreK(dst + rowB, rb);
                }
            }
        }
    }

    /// <summary>
    /// Units lane, lane + step, ... of W[row] dotted with the tile's nt tokens (one accumulator per token). One-token tiles take
    /// four units per step of the loop into four sums, so each thread has four independent weight loads in flight.
    /// </summary>
    private static Float4 RowDots<TF>(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int lane, int step,
        ArrayView<float> x, int nt, Rows4 r4)
        where TF : struct, IWeightFormat
    {
        var fmt = default(TF);
        int units = fmt.Units(cols);
        var acc = new Float4();
        if (nt == 1 && r4.Int8 == 2 && fmt.BlockDot) return BlockDots(fmt, words, scales, row, cols, lane, step, r4);
        if (nt == 1)
        {
            bool int8 = r4.Int8 != 0 && fmt.Int8Dot;
            float p0 = 0, p1 = 0, p2 = 0, p3 = 0;
            int u = lane;
            for (; u + 3 * step < units; u += 4 * step)
            {
                if (int8)
                {
                    p0 += fmt.Dot1Q8(words, scales, row, cols, u, r4.Q, r4.D);
                    p1 += fmt.Dot1Q8(words, scales, row, cols, u + step, r4.Q, r4.D);
                    p2 += fmt.Dot1Q8(words, scales, row, cols, u + 2 * step, r4.Q, r4.D);
                    p3 += fmt.Dot1Q8(words, scales, row, cols, u + 3 * step, r4.Q, r4.D);
                }
                else
                {
                    p0 += fmt.Dot1(words, scales, row, cols, u, x, r4.R0);
                    p1 += fmt.Dot1(words, scales, row, cols, u + step, x, r4.R0);
                    p2 += fmt.Dot1(words, scales, row, cols, u + 2 * step, x, r4.R0);
                    p3 += fmt.Dot1(words, scales, row, cols, u + 3 * step, x, r4.R0);
                }
            }
            for (; u < units; u += step)
                p0 += int8 ? fmt.Dot1Q8(words, scales, row, cols, u, r4.Q, r4.D) : fmt.Dot1(words, scales, row, cols, u, x, r4.R0);
            acc.X = (p0 + p1) + (p2 + p3);
            return acc;
        }
        for (int u = lane; u < units; u += step)
        {
            var f = fmt.Dot4(words, scales, row, cols, u, x, r4);
            acc.X += f.X;
            acc.Y += f.Y;
            acc.Z += f.Z;
            acc.W += f.W;
        }
        return acc;
    }

    /// <summary>
    /// A one-token tile of a format with <see cref="IWeightFormat.BlockDot"/>: blocks lane, lane + step, ... of W[row] against the
    /// group's int8 copy of x, two per loop step into two sums (adjacent threads read adjacent 16-byte words, so a warp's loads
    /// coalesce into whole lines).
    /// </summary>
    private static Float4 BlockDots<TF>(TF fmt, ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int lane, int step,
        Rows4 r4)
        where TF : struct, IWeightFormat
    {
        int blocks = cols / 32;
        long first = (long)row * blocks;
        float p0 = 0, p1 = 0;
        int b = lane;
        for (; b + step < blocks; b += 2 * step)
        {
            p0 += fmt.DotBlockQ8(words, scales, first + b, b, r4);
            p1 += fmt.DotBlockQ8(words, scales, first + b + step, b + step, r4);
        }
        if (b < blocks) p0 += fmt.DotBlockQ8(words, scales, first + b, b, r4);
        return new Float4 { X = p0 + p1 };
    }

    /// <summary>
    /// Sums four accumulators (the first <paramref name="nt"/>) over the <paramref name="slice"/> threads of a row; valid in lane 0.
    /// On CUDA, butterfly shuffles within the warp (a slice is at most a warp; valid in every lane); elsewhere through shared memory.
    /// Every thread of the group must call it.
    /// </summary>
    private static Float4 SliceSum(ArrayView<float> sh, Float4 v, int lane, int slice, int nt)
    {
        if (CudaAsm.IsSupported && slice <= 32)
        {
            for (int s = slice / 2; s > 0; s >>= 1)
            {
                v.X += Numeric.ShuffleXor(v.X, s);
                if (nt == 1) continue;
                v.Y += Numeric.ShuffleXor(v.Y, s);
                v.Z += Numeric.ShuffleXor(v.Z, s);
                v.W += Numeric.ShuffleXor(v.W, s);
            }
            return v;
        }
        int b = Group.IdxX * TokensPerTile;
        sh[b] = v.X;
        sh[b + 1] = v.Y;
        sh[b + 2] = v.Z;
        sh[b + 3] = v.W;
        Group.Barrier();
        for (int s = slice / 2; s > 0; s >>= 1)
        {
            if (lane < s)
            {
                int o = b + s * TokensPerTile;
                sh[b] += sh[o];
                sh[b + 1] += sh[o + 1];
                sh[b + 2] += sh[o + 2];
                sh[b + 3] += sh[o + 3];
            }
            Group.Barrier();
        }
        var r = new Float4 { X = sh[b], Y = sh[b + 1], Z = sh[b + 2], W = sh[b + 3] };
        Group.Barrier();
        return r;
    }

    private static float Get(Float4 f, int k) => k == 0 ? f.X : k == 1 ? f.Y : k == 2 ? f.Z : f.W;
}
