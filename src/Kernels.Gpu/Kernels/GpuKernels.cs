using System.Reflection;
using ILGPU;

namespace Infer.Kernels.Gpu.Kernels;

/// <summary>Scalar arguments of the matmul kernel.</summary>
internal struct MatMulArgs
{
    public int Rows, Cols;          // weight [Rows, Cols]
    public int Tokens;              // activation rows to multiply
    public int XStride, YStride;    // floats per activation row of x and y
    public int SliceThreads;        // threads that share one weight row (a power of two)
}

/// <summary>
/// Scalar arguments of <see cref="GpuKernels.MatMulFused"/>: up to three weights of one format over the same input
/// (Q, K and V; or gate and up), each with its own output and optional bias.
/// </summary>
internal struct FusedMatMulArgs
{
    public int Cols;                            // weight row length (all parts)
    public int Tokens;                          // activation rows to multiply
    public int XStride;                         // floats per row of x
    public int SliceThreads;                    // threads that share one weight row (a power of two)
    public int Rows0, Rows1, Rows2;             // rows of each part; 0: absent
    public int YStride0, YStride1, YStride2;    // floats per row of each output
    public int Bias0, Bias1, Bias2;             // 1: the part adds its bias
    public int SwiGlu;                          // 1: parts 0 and 1 are gate and up of Rows0 rows: y0 = silu(W0·x) * (W1·x), y1 = W1·x
    public int Residual;                        // 1: one part; y1 is the residual stream, y1[t, r] += y0[t, r] (YStride1 its row)
    public float Eps;                           // MatMulNorm: RMSNorm epsilon
    public int XbStride;                        // MatMulNorm: floats per row of the normalized copy xb

    public int RopeRows;                        // MatMulNorm with RoPE: grid rows (pairs and unrotated rows of q and k, rows of v)

    public readonly int TotalRows => RopeRows > 0 ? RopeRows : SwiGlu != 0 ? Rows0 : Rows0 + Rows1 + Rows2;
}

/// <summary>
/// RoPE and the KV store in the epilogue of <see cref="GpuKernels.MatMulNorm"/> over Q, K and V (Enabled = 1): each
/// rotated pair of q and k is one grid row that computes both dot products and writes them rotated; k and v also go
/// to the cache. Views travel inside this structure (the launch has no parameter slots left).
/// </summary>
internal struct RopeStoreViews
{
    public ArrayView<float> KCache, VCache, Cos, Sin;
    public ArrayView<int> Batch;
    public int Enabled;
    public int Dims, NeoX, HeadDim, Heads, KvHeads;
    public int Layer, Layers, ContextLength, PosOffset, SeqOffset;

    /// <summary>Grid rows per head: Dims/2 pairs, then the unrotated rows Dims..HeadDim.</summary>
    public readonly int PerHead => Dims / 2 + HeadDim - Dims;
}

/// <summary>Scalar arguments of <see cref="GpuKernels.RopeStoreKv"/> beyond the attention arguments.</summary>
internal struct RopeStoreArgs
{
    public int Dims;                // rotated dimensions per head
    public int NeoX;                // 1: pairs (i, i + Dims/2); 0: pairs (2i, 2i+1)
    public int KStride, VStride;    // floats per row of k and v
}

/// <summary>Scalar arguments of the attention kernels.</summary>
internal struct AttentionArgs
{
    public int Layer, Layers, ContextLength;
    public int Heads, KvHeads, HeadDim;
    public int QStride, OStride;    // floats per row of q and of the output
    public int Splits;              // position ranges per (token, head)
    public float Scale;
    public int PosOffset, SeqOffset; // where positions and sequences start in the batch buffer
}

/// <summary>
/// The ILGPU kernels of <see cref="GpuBackend"/>. Group sizes are a power of two of at most <see cref="MaxGroup"/>;
/// reductions go through shared memory with group barriers (no warp intrinsics), so the same code runs on CUDA,
/// OpenCL and ILGPU's CPU accelerator.
/// </summary>
internal static class GpuKernels
{
    public const int MaxGroup = 256;
    public const int TokensPerTile = 4;
    public const int MaxHeadDim = 256;

    /// <summary>Every kernel entry point with its instantiations, and whether it is implicitly grouped (takes an Index1D).</summary>
    public static IEnumerable<(string Name, MethodInfo Method, bool Implicit)> EntryPoints()
    {
        var t = typeof(GpuKernels);
        Type[] formats = [typeof(F32Format), typeof(F16Format), typeof(BF16Format), typeof(Q8_0Format), typeof(Q4_0Format), typeof(Q4_KFormat), typeof(Q6_KFormat)];
        foreach (var f in formats)
        {
            yield return ($"Embed<{f.Name}>", t.GetMethod(nameof(Embed))!.MakeGenericMethod(f), true);
            yield return ($"MatMul<{f.Name}>", t.GetMethod(nameof(MatMul))!.MakeGenericMethod(f), false);
        }
        foreach (var f in formats)
            yield return ($"MatMulFused<{f.Name}>", t.GetMethod(nameof(MatMulFused))!.MakeGenericMethod(f), false);
        foreach (var f in formats)
            yield return ($"MatMulNorm<{f.Name}>", t.GetMethod(nameof(MatMulNorm))!.MakeGenericMethod(f), false);
        foreach (var name in new[] { nameof(AddBias), nameof(Add), nameof(SwiGlu), nameof(Rope), nameof(StoreKv), nameof(RopeStoreKv) })
            yield return (name, t.GetMethod(name)!, true);
        foreach (var name in new[] { nameof(RmsNorm), nameof(Attention), nameof(AttentionCombine) })
            yield return (name, t.GetMethod(name)!, false);
    }

    // ---- reductions over the group (every thread must call them) ----

    private static float GroupSum(ArrayView<float> scratch, float v)
    {
        int tid = Group.IdxX;
        scratch[tid] = v;
        Group.Barrier();
        for (int s = Group.DimX / 2; s > 0; s >>= 1)
        {
            if (tid < s) scratch[tid] += scratch[tid + s];
            Group.Barrier();
        }
        float r = scratch[0];
        Group.Barrier();
        return r;
    }

    private static float GroupMax(ArrayView<float> scratch, float v)
    {
        int tid = Group.IdxX;
        scratch[tid] = v;
        Group.Barrier();
        for (int s = Group.DimX / 2; s > 0; s >>= 1)
        {
            if (tid < s) scratch[tid] = XMax(scratch[tid], scratch[tid + s]);
            Group.Barrier();
        }
        float r = scratch[0];
        Group.Barrier();
        return r;
    }

    private static float XMax(float a, float b) => a > b ? a : b;

    // ---- embed: x[t, j] = table[tokens[t], j] ----

    /// <summary>Index: t * cols + j over the batch.</summary>
    public static void Embed<TF>(Index1D i, ArrayView<int> words, ArrayView<ushort> scales, ArrayView<int> batch, ArrayView<float> x, int cols)
        where TF : struct, IWeightFormat
    {
        int t = i / cols, j = i % cols;
        x[i] = default(TF).Element(words, scales, batch[t], cols, j);
    }

    // ---- matmul: y[t, r] = W[r] · x[t] ----

    /// <summary>
    /// Grid (ceil(Rows / rowsPerGroup), ceil(Tokens / 4)); a group of G threads handles G / SliceThreads weight rows and
    /// four tokens. The SliceThreads threads of a row stride over its words (adjacent threads read adjacent words, so
    /// loads coalesce), keep one float32 accumulator per token, and reduce through shared memory.
    /// </summary>
    public static void MatMul<TF>(ArrayView<int> words, ArrayView<ushort> scales, ArrayView<float> x, ArrayView<float> y, MatMulArgs a)
        where TF : struct, IWeightFormat
    {
        var sh = SharedMemory.Allocate<float>(MaxGroup * TokensPerTile);
        if (a.SliceThreads == 1)
        {
            MatMulRowPerThread<TF>(words, scales, x, y, a);
            return;
        }
        var fmt = default(TF);
        int tid = Group.IdxX;
        int lane = tid % a.SliceThreads;
        int row = Grid.IdxX * (Group.DimX / a.SliceThreads) + tid / a.SliceThreads;
        int t0 = Grid.IdxY * TokensPerTile;
        int nt = a.Tokens - t0 < TokensPerTile ? a.Tokens - t0 : TokensPerTile;

        float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        if (row < a.Rows)
        {
            int units = fmt.Units(a.Cols);
            long x0 = (long)t0 * a.XStride;
            if (nt == 1)
            {
                for (int u = lane; u < units; u += a.SliceThreads) a0 += fmt.Dot1(words, scales, row, a.Cols, u, x, x0);
            }
            else
            {
                // Missing tokens of a partial tile read token t0's row; their sums are discarded.
                var r = new Rows4
                {
                    R0 = x0,
                    R1 = nt > 1 ? x0 + a.XStride : x0,
                    R2 = nt > 2 ? x0 + 2L * a.XStride : x0,
                    R3 = nt > 3 ? x0 + 3L * a.XStride : x0,
                };
                for (int u = lane; u < units; u += a.SliceThreads)
                {
                    var f = fmt.Dot4(words, scales, row, a.Cols, u, x, r);
                    a0 += f.X;
                    a1 += f.Y;
                    a2 += f.Z;
                    a3 += f.W;
                }
            }
        }

        int b = tid * TokensPerTile;
        sh[b] = a0;
        sh[b + 1] = a1;
        sh[b + 2] = a2;
        sh[b + 3] = a3;
        Group.Barrier();
        for (int s = a.SliceThreads / 2; s > 0; s >>= 1)
        {
            if (lane < s)
            {
                int o = (tid + s) * TokensPerTile;
                sh[b] += sh[o];
                sh[b + 1] += sh[o + 1];
                sh[b + 2] += sh[o + 2];
                sh[b + 3] += sh[o + 3];
            }
            Group.Barrier();
        }
        if (lane == 0 && row < a.Rows)
        {
            for (int k = 0; k < nt; k++) y[(long)(t0 + k) * a.YStride + row] = sh[b + k];
        }
    }

    /// <summary>
    /// ILGPU's CPU accelerator, where groups and barriers are costly: a grid-stride loop gives each thread whole rows,
    /// four tokens at a time, with no shared memory.
    /// </summary>
    private static void MatMulRowPerThread<TF>(ArrayView<int> words, ArrayView<ushort> scales, ArrayView<float> x, ArrayView<float> y, MatMulArgs a)
        where TF : struct, IWeightFormat
    {
        var fmt = default(TF);
        int units = fmt.Units(a.Cols);
        int t0 = Grid.IdxY * TokensPerTile;
        int nt = a.Tokens - t0 < TokensPerTile ? a.Tokens - t0 : TokensPerTile;
        long x0 = (long)t0 * a.XStride;
        var r = new Rows4
        {
            R0 = x0,
            R1 = nt > 1 ? x0 + a.XStride : x0,
            R2 = nt > 2 ? x0 + 2L * a.XStride : x0,
            R3 = nt > 3 ? x0 + 3L * a.XStride : x0,
        };
        for (int row = Grid.IdxX * Group.DimX + Group.IdxX; row < a.Rows; row += Grid.DimX * Group.DimX)
        {
            long yo = (long)t0 * a.YStride + row;
            if (nt == 1)
            {
                float s = 0;
                for (int u = 0; u < units; u++) s += fmt.Dot1(words, scales, row, a.Cols, u, x, x0);
                y[yo] = s;
                continue;
            }
            float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (int u = 0; u < units; u++)
            {
                var f = fmt.Dot4(words, scales, row, a.Cols, u, x, r);
                a0 += f.X;
                a1 += f.Y;
                a2 += f.Z;
                a3 += f.W;
            }
            y[yo] = a0;
            if (nt > 1) y[yo + a.YStride] = a1;
            if (nt > 2) y[yo + 2L * a.YStride] = a2;
            if (nt > 3) y[yo + 3L * a.YStride] = a3;
        }
    }

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
        int t0 = Grid.IdxY * TokensPerTile;
        FusedBody<TF>(w0, s0, w1, s1, w2, s2, x, (long)t0 * a.XStride, a.XStride, y0, y1, y2, b0, b1, b2, a, sh, new RopeStoreViews());
    }

    /// <summary>
    /// RMSNorm of the input fused into <see cref="MatMulFused{TF}"/> (no biases, no residual): every group normalizes its
    /// tile's rows of <paramref name="src"/> (xs = src / rms(src) * normW, over the whole row, with the same sums as
    /// <see cref="RmsNorm"/>) into dynamic shared memory [tile tokens, Cols], the groups of grid column 0 also write them
    /// to <paramref name="xb"/>, then the matmuls read xs. Dynamic shared memory: min(Tokens, 4) * Cols floats.
    /// </summary>
    public static void MatMulNorm<TF>(ArrayView<int> w0, ArrayView<ushort> s0, ArrayView<int> w1, ArrayView<ushort> s1,
        ArrayView<int> w2, ArrayView<ushort> s2, ArrayView<float> src, ArrayView<float> normW, ArrayView<float> xb,
        ArrayView<float> y0, ArrayView<float> y1, ArrayView<float> y2, FusedMatMulArgs a, RopeStoreViews rs)
        where TF : struct, IWeightFormat
    {
        var sh = SharedMemory.Allocate<float>(MaxGroup * TokensPerTile);
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
        FusedBody<TF>(w0, s0, w1, s1, w2, s2, xs, 0, a.Cols, y0, y1, y2, y0, y0, y0, a, sh, rs);
    }

    /// <summary>The rows of <see cref="MatMulFused{TF}"/> for one token tile, its rows starting at x0 in x, xStride apart.</summary>
    private static void FusedBody<TF>(ArrayView<int> w0, ArrayView<ushort> s0, ArrayView<int> w1, ArrayView<ushort> s1,
        ArrayView<int> w2, ArrayView<ushort> s2, ArrayView<float> x, long x0, int xStride, ArrayView<float> y0, ArrayView<float> y1, ArrayView<float> y2,
        ArrayView<float> b0, ArrayView<float> b1, ArrayView<float> b2, FusedMatMulArgs a, ArrayView<float> sh, RopeStoreViews rs)
        where TF : struct, IWeightFormat
    {
        int t0 = Grid.IdxY * TokensPerTile;
        int nt = a.Tokens - t0 < TokensPerTile ? a.Tokens - t0 : TokensPerTile;
        var r4 = new Rows4
        {
            R0 = x0,
            R1 = nt > 1 ? x0 + xStride : x0,
            R2 = nt > 2 ? x0 + 2L * xStride : x0,
            R3 = nt > 3 ? x0 + 3L * xStride : x0,
        };
        int total = a.TotalRows;
        if (a.SliceThreads == 1)
        {
            // ILGPU's CPU accelerator: a grid-stride loop of whole rows per thread, no shared memory.
            for (int row = Grid.IdxX * Group.DimX + Group.IdxX; row < total; row += Grid.DimX * Group.DimX)
            {
                if (rs.Enabled != 0) FusedRopeRow<TF>(w0, s0, w1, s1, w2, s2, x, y0, y1, y2, a, rs, row, 0, 1, t0, nt, r4, sh, false);
                else FusedRow<TF>(w0, s0, w1, s1, w2, s2, x, y0, y1, y2, b0, b1, b2, a, row, 0, 1, t0, nt, r4, sh, false);
            }
            return;
        }
        int tid = Group.IdxX;
        int lane = tid % a.SliceThreads;
        int gridRow = Grid.IdxX * (Group.DimX / a.SliceThreads) + tid / a.SliceThreads;
        if (rs.Enabled != 0) FusedRopeRow<TF>(w0, s0, w1, s1, w2, s2, x, y0, y1, y2, a, rs, gridRow, lane, a.SliceThreads, t0, nt, r4, sh, true);
        else FusedRow<TF>(w0, s0, w1, s1, w2, s2, x, y0, y1, y2, b0, b1, b2, a, gridRow, lane, a.SliceThreads, t0, nt, r4, sh, true);
    }

    /// <summary>
    /// One grid row of <see cref="MatMulFused{TF}"/>: this thread's share (units lane, lane + step, ...) of the row's dot
    /// products, reduced over the slice through shared memory when <paramref name="reduce"/> (every thread of the group
    /// must then call it, rows past the end included), then the epilogue by the slice's first thread.
    /// </summary>
    private static void FusedRow<TF>(ArrayView<int> w0, ArrayView<ushort> s0, ArrayView<int> w1, ArrayView<ushort> s1,
        ArrayView<int> w2, ArrayView<ushort> s2, ArrayView<float> x, ArrayView<float> y0, ArrayView<float> y1, ArrayView<float> y2,
        ArrayView<float> b0, ArrayView<float> b1, ArrayView<float> b2, FusedMatMulArgs a, int row, int lane, int step,
        int t0, int nt, Rows4 r4, ArrayView<float> sh, bool reduce)
        where TF : struct, IWeightFormat
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
            else acc = RowDots<TF>(w2, s2, local, a.Cols, lane, step, x, nt, r4);
            if (a.SwiGlu != 0) up = RowDots<TF>(w1, s1, local, a.Cols, lane, step, x, nt, r4);
        }
        if (reduce)
        {
            acc = SliceSum(sh, acc, lane, step);
            if (a.SwiGlu != 0) up = SliceSum(sh, up, lane, step);
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
    private static void FusedRopeRow<TF>(ArrayView<int> w0, ArrayView<ushort> s0, ArrayView<int> w1, ArrayView<ushort> s1,
        ArrayView<int> w2, ArrayView<ushort> s2, ArrayView<float> x, ArrayView<float> y0, ArrayView<float> y1, ArrayView<float> y2,
        FusedMatMulArgs a, RopeStoreViews rs, int row, int lane, int step, int t0, int nt, Rows4 r4, ArrayView<float> sh, bool reduce)
        where TF : struct, IWeightFormat
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
            else acc = RowDots<TF>(w2, s2, rowA, a.Cols, lane, step, x, nt, r4);
        }
        if (reduce)
        {
            acc = SliceSum(sh, acc, lane, step);
            other = SliceSum(sh, other, lane, step);
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
                rs.VCache[dst + rowA] = va;
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
                rs.KCache[dst + rowA] = ra;
                if (pair >= 0)
                {
                    y1[(long)t * a.YStride1 + rowB] = rb;
                    rs.KCache[dst + rowB] = rb;
                }
            }
        }
    }

    /// <summary>Units lane, lane + step, ... of W[row] dotted with the tile's nt tokens (one accumulator per token).</summary>
    private static Float4 RowDots<TF>(ArrayView<int> words, ArrayView<ushort> scales, int row, int cols, int lane, int step,
        ArrayView<float> x, int nt, Rows4 r4)
        where TF : struct, IWeightFormat
    {
        var fmt = default(TF);
        int units = fmt.Units(cols);
        var acc = new Float4();
        if (nt == 1)
        {
            for (int u = lane; u < units; u += step) acc.X += fmt.Dot1(words, scales, row, cols, u, x, r4.R0);
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

    /// <summary>Sums four accumulators over the <paramref name="slice"/> threads of a row (as MatMul does); valid in lane 0.</summary>
    private static Float4 SliceSum(ArrayView<float> sh, Float4 v, int lane, int slice)
    {
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

    // ---- RMSNorm over groups of gc elements: y = x / sqrt(mean(x²) + eps) * w ----

    /// <summary>
    /// Grid: one group per (row, chunk of gc elements). With <paramref name="addResidual"/> set it first adds
    /// <paramref name="residual"/> into x (x += r, written back), fusing the residual add that precedes every norm.
    /// Each thread touches the same indices in both passes, so x may alias y.
    /// </summary>
    public static void RmsNorm(ArrayView<float> x, ArrayView<float> residual, ArrayView<float> w, ArrayView<float> y, int cols, int gc, int addResidual, float eps)
    {
        var scratch = SharedMemory.Allocate<float>(MaxGroup);
        int chunks = cols / gc;
        long baseIdx = (long)(Grid.IdxX / chunks) * cols + (long)(Grid.IdxX % chunks) * gc;
        float ss = 0;
        for (int i = Group.IdxX; i < gc; i += Group.DimX)
        {
            float v = x[baseIdx + i];
            if (addResidual != 0)
            {
                v += residual[baseIdx + i];
                x[baseIdx + i] = v;
            }
            ss += v * v;
        }
        ss = GroupSum(scratch, ss);
        float scale = 1f / MathF.Sqrt(ss / gc + eps);
        for (int i = Group.IdxX; i < gc; i += Group.DimX) y[baseIdx + i] = x[baseIdx + i] * scale * w[i];
    }

    // ---- element-wise ----

    /// <summary>Index over n * cols: y[t, j] += bias[j].</summary>
    public static void AddBias(Index1D i, ArrayView<float> y, ArrayView<float> bias, int cols) => y[i] += bias[i % cols];

    /// <summary>Index over n * cols: x += y.</summary>
    public static void Add(Index1D i, ArrayView<float> x, ArrayView<float> y) => x[i] += y[i];

    /// <summary>Index over n * cols: gate = silu(gate) * up.</summary>
    public static void SwiGlu(Index1D i, ArrayView<float> gate, ArrayView<float> up)
    {
        float g = gate[i];
        gate[i] = g / (1f + MathF.Exp(-g)) * up[i];
    }

    /// <summary>
    /// Index over n * headsInRow * (dims / 2): rotates one pair of one head by the token's position, with cos/sin from
    /// the table [position, dims / 2] built on the host.
    /// </summary>
    public static void Rope(Index1D idx, ArrayView<float> x, ArrayView<float> cos, ArrayView<float> sin, ArrayView<int> batch,
        int posOffset, int cols, int headDim, int dims, int neox)
    {
        int half = dims / 2;
        int headsInRow = cols / headDim;
        int i = idx % half;
        int h = (idx / half) % headsInRow;
        int t = idx / (half * headsInRow);
        int c = batch[posOffset + t] * half + i;
        long head = (long)t * cols + h * headDim;
        long ia = neox != 0 ? head + i : head + 2 * i;
        long ib = neox != 0 ? head + i + half : head + 2 * i + 1;
        float a = x[ia], b = x[ib];
        x[ia] = a * cos[c] - b * sin[c];
        x[ib] = a * sin[c] + b * cos[c];
    }

    // ---- attention ----

    /// <summary>Index over n * kvDim: writes k and v of the batch into the cache at (sequence, layer, position).</summary>
    public static void StoreKv(Index1D i, ArrayView<float> k, ArrayView<float> v, ArrayView<float> kCache, ArrayView<float> vCache,
        ArrayView<int> batch, AttentionArgs a, int kStride, int vStride)
    {
        int kvDim = a.KvHeads * a.HeadDim;
        int t = i / kvDim, j = i % kvDim;
        long dst = (((long)batch[a.SeqOffset + t] * a.Layers + a.Layer) * a.ContextLength + batch[a.PosOffset + t]) * kvDim + j;
        kCache[dst] = k[(long)t * kStride + j];
        vCache[dst] = v[(long)t * vStride + j];
    }

    /// <summary>
    /// RoPE of q and k and the cache store in one launch. Index over n * (Heads * Dims/2 + KvHeads * Dims/2 + kvDim):
    /// per token, first one item per rotated pair of q (rotated in place), then one per pair of k (rotated in place and
    /// written to the cache), then one per k/v element (v copied to the cache, and k's unrotated tail when Dims is less
    /// than the head size). Same arithmetic as <see cref="Rope"/> and <see cref="StoreKv"/>.
    /// </summary>
    public static void RopeStoreKv(Index1D idx, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> kCache,
        ArrayView<float> vCache, ArrayView<float> cos, ArrayView<float> sin, ArrayView<int> batch, AttentionArgs a, RopeStoreArgs r)
    {
        int d = a.HeadDim, half = r.Dims / 2;
        int kvDim = a.KvHeads * d;
        int qPairs = a.Heads * half, kPairs = a.KvHeads * half;
        int per = qPairs + kPairs + kvDim;
        int t = idx / per, e = idx % per;
        int pos = batch[a.PosOffset + t];
        long dst = (((long)batch[a.SeqOffset + t] * a.Layers + a.Layer) * a.ContextLength + pos) * kvDim;
        if (e < qPairs + kPairs)
        {
            bool isQ = e < qPairs;
            int pe = isQ ? e : e - qPairs;
            int i = pe % half, h = pe / half;
            int c = pos * half + i;
            int ja = h * d + (r.NeoX != 0 ? i : 2 * i);
            int jb = h * d + (r.NeoX != 0 ? i + half : 2 * i + 1);
            var x = isQ ? q : k;
            long row = isQ ? (long)t * a.QStride : (long)t * r.KStride;
            float xa = x[row + ja], xb = x[row + jb];
            float ra = xa * cos[c] - xb * sin[c];
            float rb = xa * sin[c] + xb * cos[c];
            x[row + ja] = ra;
            x[row + jb] = rb;
            if (!isQ)
            {
                kCache[dst + ja] = ra;
                kCache[dst + jb] = rb;
            }
        }
        else
        {
            int j = e - qPairs - kPairs;
            vCache[dst + j] = v[(long)t * r.VStride + j];
            if (j % d >= r.Dims) kCache[dst + j] = k[(long)t * r.KStride + j];
        }
    }

    /// <summary>
    /// Grid (n * Heads, Splits). A group attends one query head of one token over one range of its sequence's cached
    /// positions 0..pos, in chunks of G positions with an online softmax (running max m and sum l): thread p scores
    /// position p of the chunk, then thread i accumulates output dimension i. With one split it writes the normalized
    /// output; otherwise it writes (o unnormalized, m, l) to <paramref name="partials"/> for <see cref="AttentionCombine"/>.
    /// </summary>
    public static void Attention(ArrayView<float> q, ArrayView<float> kCache, ArrayView<float> vCache, ArrayView<float> output,
        ArrayView<float> partials, ArrayView<int> batch, AttentionArgs a)
    {
        var qs = SharedMemory.Allocate<float>(MaxHeadDim);
        var os = SharedMemory.Allocate<float>(MaxHeadDim);
        var sc = SharedMemory.Allocate<float>(MaxGroup);
        var scratch = SharedMemory.Allocate<float>(MaxGroup);
        int tid = Group.IdxX, g = Group.DimX, d = a.HeadDim;
        int t = Grid.IdxX / a.Heads, h = Grid.IdxX % a.Heads, split = Grid.IdxY;
        int kvHead = h / (a.Heads / a.KvHeads);
        int kvDim = a.KvHeads * d;
        int seq = batch[a.SeqOffset + t];
        int length = batch[a.PosOffset + t] + 1;
        int per = (length + a.Splits - 1) / a.Splits;
        int start = split * per;
        int end = start + per < length ? start + per : length;
        long cacheBase = ((long)seq * a.Layers + a.Layer) * a.ContextLength * kvDim + (long)kvHead * d;

        for (int i = tid; i < d; i += g)
        {
            qs[i] = q[(long)t * a.QStride + h * d + i];
            os[i] = 0;
        }
        Group.Barrier();

        float m = float.NegativeInfinity, l = 0;
        for (int c = start; c < end; c += g)
        {
            int p = c + tid;
            float s = float.NegativeInfinity;
            if (p < end)
            {
                long kRow = cacheBase + (long)p * kvDim;
                float dot = 0;
                for (int i = 0; i < d; i++) dot += qs[i] * kCache[kRow + i];
                s = dot * a.Scale;
            }
            float newM = XMax(m, GroupMax(scratch, s));
            float correction = MathF.Exp(m - newM);
            float e = p < end ? MathF.Exp(s - newM) : 0f;
            sc[tid] = e;
            l = l * correction + GroupSum(scratch, e);
            m = newM;
            int count = end - c < g ? end - c : g;
            for (int i = tid; i < d; i += g)
            {
                float acc = os[i] * correction;
                long vCol = cacheBase + (long)c * kvDim + i;
                for (int j = 0; j < count; j++) acc += sc[j] * vCache[vCol + (long)j * kvDim];
                os[i] = acc;
            }
            Group.Barrier();
        }

        if (a.Splits == 1)
        {
            for (int i = tid; i < d; i += g) output[(long)t * a.OStride + h * d + i] = os[i] / l;
        }
        else
        {
            long pb = ((long)Grid.IdxX * a.Splits + split) * (d + 2);
            for (int i = tid; i < d; i += g) partials[pb + i] = os[i];
            if (tid == 0)
            {
                partials[pb + d] = m;
                partials[pb + d + 1] = l;
            }
        }
    }

    /// <summary>Grid n * Heads: merges the split partials of one (token, head): out = Σ e^(m_s - M) o_s / Σ e^(m_s - M) l_s.</summary>
    public static void AttentionCombine(ArrayView<float> partials, ArrayView<float> output, AttentionArgs a)
    {
        int d = a.HeadDim;
        int t = Grid.IdxX / a.Heads, h = Grid.IdxX % a.Heads;
        long pb = (long)Grid.IdxX * a.Splits * (d + 2);
        float mMax = float.NegativeInfinity;
        for (int s = 0; s < a.Splits; s++) mMax = XMax(mMax, partials[pb + s * (d + 2) + d]);
        float den = 0;
        for (int s = 0; s < a.Splits; s++) den += MathF.Exp(partials[pb + s * (d + 2) + d] - mMax) * partials[pb + s * (d + 2) + d + 1];
        for (int i = Group.IdxX; i < d; i += Group.DimX)
        {
            float num = 0;
            for (int s = 0; s < a.Splits; s++) num += MathF.Exp(partials[pb + s * (d + 2) + d] - mMax) * partials[pb + s * (d + 2) + i];
            output[(long)t * a.OStride + h * d + i] = num / den;
        }
    }
}
