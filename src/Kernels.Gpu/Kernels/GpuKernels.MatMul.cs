using ILGPU;

namespace Infer.Kernels.Gpu.Kernels;

internal static partial class GpuKernels
{
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
    /// Grid (groups, ceil(Tokens / 4)); a group of G threads handles G / SliceThreads weight rows at a time and four tokens,
    /// looping over row blocks Grid.IdxX, + Grid.DimX, ... (the launcher caps the groups at what the device holds at once, so a
    /// wide weight does not repeat the per-group work below for every few rows). The SliceThreads threads of a row stride over its
    /// units (adjacent threads read adjacent words, so loads coalesce), keep one float32 accumulator per token, and reduce through
    /// <see cref="SliceSum"/>. A one-token tile of a format with int8 blocks (Int8 set) first has the group quantize x into shared
    /// memory and dots it with <see cref="IWeightFormat.Dot1Q8"/>.
    /// </summary>
    public static void MatMul<TF>(ArrayView<int> words, ArrayView<ushort> scales, ArrayView<float> x, ArrayView<float> y, MatMulArgs a)
        where TF : struct, IWeightFormat
    {
        var sh = SharedMemory.Allocate<float>(MaxGroup * TokensPerTile);
        var sq = SharedMemory.Allocate<Words4>(MaxInt8Cols / 16); // 16-byte aligned for DotBlockQ8's 128-bit loads
        var sd = SharedMemory.Allocate<float>(MaxInt8Cols / 32);
        var ss = SharedMemory.Allocate<int>(MaxInt8Cols / 32);
        if (a.SliceThreads == 1)
        {
            MatMulRowPerThread<TF>(words, scales, x, y, a);
            return;
        }
        int tid = Group.IdxX;
        int lane = tid % a.SliceThreads, perGroup = Group.DimX / a.SliceThreads;
        int t0 = Grid.IdxY * TokensPerTile;
        int nt = a.Tokens - t0 < TokensPerTile ? a.Tokens - t0 : TokensPerTile;
        long x0 = (long)t0 * a.XStride;
        // Missing tokens of a partial tile read token t0's row; their sums are discarded.
        var r4 = TileRows(x0, a.XStride, nt);
        r4.Q = sq.Cast<int>();
        r4.D = sd;
        r4.S = ss;
        r4.Int8 = a.Int8 != 0 && nt == 1 && default(TF).Int8Dot && a.Cols <= MaxInt8Cols ? a.Int8 : 0;
        if (r4.Int8 != 0) QuantizeToShared(x, x0, a.Cols, r4, sh, r4.Int8 == 2 && default(TF).BlockDot); // decode: x's int8 copy
        for (int g = Grid.IdxX; g * perGroup < a.Rows; g += Grid.DimX)
        {
            int row = g * perGroup + tid / a.SliceThreads;
            var acc = row < a.Rows ? RowDots<TF>(words, scales, row, a.Cols, lane, a.SliceThreads, x, nt, r4) : new Float4();
            acc = SliceSum(sh, acc, lane, a.SliceThreads, nt);
            if (lane != 0 || row >= a.Rows) continue;
            for (int k = 0; k < nt; k++) y[(long)(t0 + k) * a.YStride + row] = Get(acc, k);
        }
    }

    /// <summary>
    /// ILGPU's CPU accelerator, where groups and barriers are costly: a grid-stride loop gives each thread whole rows,
    /// four tokens at a time, with no shared memory.
    /// </summary>
    private static void MatMulRowPerThread<TF>(ArrayView<int> words, ArrayView<ushort> scales, ArrayView<float> x, ArrayView<float> y, MatMulArgs a)
        where TF : struct, IWeightFormat
    {
        int t0 = Grid.IdxY * TokensPerTile;
        int nt = a.Tokens - t0 < TokensPerTile ? a.Tokens - t0 : TokensPerTile;
        long x0 = (long)t0 * a.XStride;
        var r = TileRows(x0, a.XStride, nt);
        for (int row = Grid.IdxX * Group.DimX + Group.IdxX; row < a.Rows; row += Grid.DimX * Group.DimX)
        {
            var acc = RowDots<TF>(words, scales, row, a.Cols, 0, 1, x, nt, r); // the fused kernels' order of sums
            for (int k = 0; k < nt; k++) y[(long)(t0 + k) * a.YStride + row] = Get(acc, k);
        }
    }

    /// <summary>The activation rows of a tile of <paramref name="nt"/> tokens from x0, xStride apart (missing tokens read the first).</summary>
    private static Rows4 TileRows(long x0, int xStride, int nt) => new()
    {
        R0 = x0,
        R1 = nt > 1 ? x0 + xStride : x0,
        R2 = nt > 2 ? x0 + 2L * xStride : x0,
        R3 = nt > 3 ? x0 + 3L * xStride : x0,
    };
}
