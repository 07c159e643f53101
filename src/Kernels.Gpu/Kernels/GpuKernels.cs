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
        foreach (var name in new[] { nameof(AddBias), nameof(Add), nameof(SwiGlu), nameof(Rope), nameof(StoreKv) })
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
