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
    /// Grid (ceil(Rows / rowsPerGroup), ceil(Tokens / 4)); a group of G threads handles G / SliceThreads weight rows and
    /// four tokens. The SliceThreads threads of a row stride over its words (adjacent threads read adjacent words, so
    /// loads coalesce), keep one float32 accumulator per token, and reduce through shared memory. A one-token tile of a format with
    /// int8 blocks (Int8 set) first has the group quantize x into shared memory and dots it with <see cref="IWeightFormat.Dot1Q8"/>.
    /// </summary>
    public static void MatMul<TF>(ArrayView<int> words, ArrayView<ushort> scales, ArrayView<float> x, ArrayView<float> y, MatMulArgs a)
        where TF : struct, IWeightFormat
    {
        var sh = SharedMemory.Allocate<float>(MaxGroup * TokensPerTile);
        var sq = SharedMemory.Allocate<int>(MaxInt8Cols / 4);
        var sd = SharedMemory.Allocate<float>(MaxInt8Cols / 32);
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
        bool int8 = a.Int8 != 0 && nt == 1 && fmt.Int8Dot && a.Cols <= MaxInt8Cols;
        if (int8) QuantizeToShared(x, (long)t0 * a.XStride, a.Cols, sq, sd); // decode: the group's int8 copy of x
        if (row < a.Rows)
        {
            int units = fmt.Units(a.Cols);
            long x0 = (long)t0 * a.XStride;
            if (int8)
            {
                for (int u = lane; u < units; u += a.SliceThreads) a0 += fmt.Dot1Q8(words, scales, row, a.Cols, u, sq, sd);
            }
            else if (nt == 1)
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
}
