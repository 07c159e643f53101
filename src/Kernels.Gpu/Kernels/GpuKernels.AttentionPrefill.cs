using ILGPU;
using ILGPU.Runtime.Cuda;

namespace Infer.Kernels.Gpu.Kernels;

internal static partial class GpuKernels
{
    // ---- prefill attention (flash-attention tiles) ----

    /// <summary>Floats of <see cref="AttentionPrefill"/>'s shared memory (47 KiB with its row positions; 48 KiB is the static limit).</summary>
    public const int PrefillSharedFloats = 12032;

    /// <summary>Most query rows in one tile of <see cref="AttentionPrefill"/> (16 · 256 / 32: groups of 256, heads of 32 or less).</summary>
    public const int PrefillMaxRows = 128;

    /// <summary>The head size as <see cref="AttentionPrefill"/> lays it over threads: a power of two, at least 32.</summary>
    public static int PrefillPaddedDim(int headDim)
    {
        int dp = 32;
        while (dp < headDim) dp *= 2;
        return dp;
    }

    /// <summary>Query rows per tile of <see cref="AttentionPrefill"/> on groups of <paramref name="group"/>: 16 · group / padded head.</summary>
    public static int PrefillRows(int headDim, int group) => 16 * group / PrefillPaddedDim(headDim);

    /// <summary>
    /// Cached positions per K/V chunk of <see cref="AttentionPrefill"/> for this head size and group: the most that fit the shared
    /// memory beside the tile's queries, at most max(2 · padded/4, 32), a multiple of padded/4 (the threads along a row) where it
    /// reaches that; 0 where the kernel cannot run (a group narrower than padded/4 threads, or too little room left).
    /// </summary>
    public static int PrefillChunk(int headDim, int group)
    {
        int dp = PrefillPaddedDim(headDim), across = dp / 4;
        if (headDim < 1 || headDim > MaxHeadDim || group < across || (group & (group - 1)) != 0) return 0;
        int rows = PrefillRows(headDim, group);
        if (rows > PrefillMaxRows) return 0;
        int left = PrefillSharedFloats - rows * (headDim + 1) - group - rows;
        int chunk = Math.Min((left - rows) / (headDim + 1 + rows), Math.Max(2 * across, 32));
        chunk = chunk >= across ? chunk / across * across : chunk / 8 * 8;
        return chunk >= 8 ? chunk : 0;
    }

    /// <summary>
    /// Prefill attention in the flash-attention style. Grid (tiles, KvHeads), groups of G threads. The query rows of KV head
    /// Grid.IdxY are (token, query head) pairs in token-major order, the Heads/KvHeads heads that share the KV head side by side
    /// (GQA: they read the same K/V); a group takes R = 16·G/P consecutive rows (P: the head size rounded up to a power of two,
    /// at least 32), all of one sequence (the launcher checks, else it runs <see cref="Attention"/>). It walks the sequence's
    /// cached positions 0..(largest position of its rows) in chunks of a.Chunk (C) positions:
    /// <list type="number">
    /// <item>the chunk's K rows go to shared memory once, coalesced (consecutive threads read consecutive elements);</item>
    /// <item>scores: thread (x, y) = (tid % P/4, tid / P/4) owns rows y + k·G/(P/4) (k &lt; 4) and positions x, x + P/4, ...:
    /// four dots per position over the shared Q and K rows (two positions a pass where the chunk has 2·P/4 or more: 4 x 2 dots from six
    /// shared loads per element), masked causally by each row's own position;</item>
    /// <item>online softmax: P/16 neighbouring threads per row take the row's maximum (warp shuffles on CUDA, else shared
    /// memory), rescale their running sums by e^(m - m') and turn the scores into weights; meanwhile V replaces K;</item>
    /// <item>output: the same thread (x, y) owns the 4 x 4 outputs (its four rows, dimensions x + j·P/4), kept in registers,
    /// rescaled by the row's correction and accumulated over the chunk's weights and V rows.</item>
    /// </list>
    /// Shared memory (<see cref="PrefillSharedFloats"/>): Q [R][D+1], K or V [C][D+1], weights [R][C+1], a float per thread and
    /// per row; rows pad by one float so the warps' strided reads fall in distinct banks. Every product and sum is float32.
    /// </summary>
    public static void AttentionPrefill(ArrayView<float> q, KvViews cache, ArrayView<float> output, ArrayView<int> batch, AttentionArgs a)
    {
        var sh = SharedMemory.Allocate<float>(PrefillSharedFloats);
        var rowPos = SharedMemory.Allocate<int>(PrefillMaxRows);
        int tid = Group.IdxX, g = Group.DimX, d = a.HeadDim, chunk = a.Chunk;
        int across = PrefillPaddedDim(d) / 4, x = tid % across, y = tid / across, step = g / across, rows = 4 * step, perRow = g / rows;
        int ratio = a.Heads / a.KvHeads, kvHead = Grid.IdxY, kvDim = a.KvHeads * d;
        int totalRows = a.Tokens * ratio, row0 = Grid.IdxX * rows;
        int stride = d + 1, pStride = chunk + 1;
        int kvOff = rows * stride, pOff = kvOff + chunk * stride, redOff = pOff + rows * pStride, corrOff = redOff + g;

        for (int e = tid; e < rows * d; e += g)
        {
            int r = e / d, i = e % d, j = XMin(row0 + r, totalRows - 1), t = j / ratio;
            sh[r * stride + i] = q[(long)t * a.QStride + (kvHead * ratio + j % ratio) * d + i];
        }
        for (int r = tid; r < rows; r += g) rowPos[r] = batch[a.PosOffset + XMin(row0 + r, totalRows - 1) / ratio];
        int seq = batch[a.SeqOffset + row0 / ratio];
        long cacheBase = ((long)seq * a.Layers + a.Layer) * a.ContextLength * kvDim + (long)kvHead * d;
        Group.Barrier();
        int end = 0;
        for (int r = 0; r < rows; r++) end = XMaxInt(end, rowPos[r] + 1);
        int pos0 = rowPos[y], pos1 = rowPos[y + step], pos2 = rowPos[y + 2 * step], pos3 = rowPos[y + 3 * step];

        float o00 = 0, o01 = 0, o02 = 0, o03 = 0, o10 = 0, o11 = 0, o12 = 0, o13 = 0;
        float o20 = 0, o21 = 0, o22 = 0, o23 = 0, o30 = 0, o31 = 0, o32 = 0, o33 = 0;
        float m = float.NegativeInfinity, l = 0;
        int sr = tid / perRow, ss = tid % perRow;
        int i0 = XMin(x, d - 1), i1 = XMin(x + across, d - 1), i2 = XMin(x + 2 * across, d - 1), i3 = XMin(x + 3 * across, d - 1);
        for (int c0 = 0; c0 < end; c0 += chunk)
        {
            int count = XMin(chunk, end - c0);
            long chunkBase = cacheBase + (long)c0 * kvDim;
            for (int e = tid; e < count * d; e += g)
            {
                int c = e / d, i = e % d;
                sh[kvOff + c * stride + i] = cache.LoadK(chunkBase + (long)c * kvDim + i);
            }
            Group.Barrier();

            int qb = y * stride, qs = step * stride, pRow = pOff + y * pStride, ps = step * pStride;
            if (chunk >= 2 * across)
            {
                // two positions c and c + P/4 per pass: 4 x 2 dots from 6 shared loads per element
                for (int c = x; c < count; c += 2 * across)
                {
                    int cb = c + across < count ? c + across : c;
                    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, t0 = 0, t1 = 0, t2 = 0, t3 = 0;
                    int ka = kvOff + c * stride, kb = kvOff + cb * stride;
                    for (int i = 0; i < d; i++)
                    {
                        float k = sh[ka + i], k2 = sh[kb + i];
                        float q0 = sh[qb + i], q1 = sh[qb + qs + i], q2 = sh[qb + 2 * qs + i], q3 = sh[qb + 3 * qs + i];
                        s0 += q0 * k; s1 += q1 * k; s2 += q2 * k; s3 += q3 * k;
                        t0 += q0 * k2; t1 += q1 * k2; t2 += q2 * k2; t3 += q3 * k2;
                    }
                    StoreScores(sh, pRow + c, ps, c0 + c, pos0, pos1, pos2, pos3, a.Scale, s0, s1, s2, s3);
                    if (cb != c) StoreScores(sh, pRow + cb, ps, c0 + cb, pos0, pos1, pos2, pos3, a.Scale, t0, t1, t2, t3);
                }
            }
            else
            {
                for (int c = x; c < count; c += across)
                {
                    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                    int ka = kvOff + c * stride;
                    for (int i = 0; i < d; i++)
                    {
                        float k = sh[ka + i];
                        s0 += sh[qb + i] * k;
                        s1 += sh[qb + qs + i] * k;
                        s2 += sh[qb + 2 * qs + i] * k;
                        s3 += sh[qb + 3 * qs + i] * k;
                    }
                    StoreScores(sh, pRow + c, ps, c0 + c, pos0, pos1, pos2, pos3, a.Scale, s0, s1, s2, s3);
                }
            }
            Group.Barrier();

            int rb = pOff + sr * pStride;
            float mx = float.NegativeInfinity;
            for (int c = ss; c < count; c += perRow) mx = XMax(mx, sh[rb + c]);
            float newM = XMax(m, RowMax(sh, redOff, mx, perRow));
            float correction = MathF.Exp(m - newM), sum = 0;
            for (int c = ss; c < count; c += perRow)
            {
                float w = MathF.Exp(sh[rb + c] - newM);
                sh[rb + c] = w;
                sum += w;
            }
            l = l * correction + sum;
            m = newM;
            if (ss == 0) sh[corrOff + sr] = correction;
            for (int e = tid; e < count * d; e += g)
            {
                int c = e / d, i = e % d;
                sh[kvOff + c * stride + i] = cache.LoadV(chunkBase + (long)c * kvDim + i);
            }
            Group.Barrier();

            float f0 = sh[corrOff + y], f1 = sh[corrOff + y + step], f2 = sh[corrOff + y + 2 * step], f3 = sh[corrOff + y + 3 * step];
            o00 *= f0; o01 *= f0; o02 *= f0; o03 *= f0;
            o10 *= f1; o11 *= f1; o12 *= f1; o13 *= f1;
            o20 *= f2; o21 *= f2; o22 *= f2; o23 *= f2;
            o30 *= f3; o31 *= f3; o32 *= f3; o33 *= f3;
            for (int j = 0; j < count; j++)
            {
                int vb = kvOff + j * stride, wb = pOff + y * pStride + j, ws = step * pStride;
                float v0 = sh[vb + i0], v1 = sh[vb + i1], v2 = sh[vb + i2], v3 = sh[vb + i3];
                float w0 = sh[wb], w1 = sh[wb + ws], w2 = sh[wb + 2 * ws], w3 = sh[wb + 3 * ws];
                o00 += w0 * v0; o01 += w0 * v1; o02 += w0 * v2; o03 += w0 * v3;
                o10 += w1 * v0; o11 += w1 * v1; o12 += w1 * v2; o13 += w1 * v3;
                o20 += w2 * v0; o21 += w2 * v1; o22 += w2 * v2; o23 += w2 * v3;
                o30 += w3 * v0; o31 += w3 * v1; o32 += w3 * v2; o33 += w3 * v3;
            }
            Group.Barrier();
        }

        // each row's sum is split over its perRow threads
        sh[redOff + tid] = l;
        Group.Barrier();
        StoreRow(output, sh, redOff, y, perRow, row0, totalRows, ratio, kvHead, x, across, a, o00, o01, o02, o03);
        StoreRow(output, sh, redOff, y + step, perRow, row0, totalRows, ratio, kvHead, x, across, a, o10, o11, o12, o13);
        StoreRow(output, sh, redOff, y + 2 * step, perRow, row0, totalRows, ratio, kvHead, x, across, a, o20, o21, o22, o23);
        StoreRow(output, sh, redOff, y + 3 * step, perRow, row0, totalRows, ratio, kvHead, x, across, a, o30, o31, o32, o33);
    }

    /// <summary>
    /// Scores of position <paramref name="p"/> for four rows (at <paramref name="at"/> + k·<paramref name="rowStep"/>): the scaled
    /// dot where p is at or before the row's position, else -∞ (causal).
    /// </summary>
    private static void StoreScores(ArrayView<float> sh, int at, int rowStep, int p, int pos0, int pos1, int pos2, int pos3, float scale,
        float s0, float s1, float s2, float s3)
    {
        sh[at] = p <= pos0 ? s0 * scale : float.NegativeInfinity;
        sh[at + rowStep] = p <= pos1 ? s1 * scale : float.NegativeInfinity;
        sh[at + 2 * rowStep] = p <= pos2 ? s2 * scale : float.NegativeInfinity;
        sh[at + 3 * rowStep] = p <= pos3 ? s3 * scale : float.NegativeInfinity;
    }

    /// <summary>Writes the four outputs (dimensions x + j·across) of tile row <paramref name="r"/>, divided by the row's sum.</summary>
    private static void StoreRow(ArrayView<float> output, ArrayView<float> sh, int redOff, int r, int perRow, int row0, int totalRows,
        int ratio, int kvHead, int x, int across, AttentionArgs a, float v0, float v1, float v2, float v3)
    {
        int j = row0 + r, d = a.HeadDim;
        if (j >= totalRows) return;
        float l = 0;
        for (int s = 0; s < perRow; s++) l += sh[redOff + r * perRow + s];
        long ob = (long)(j / ratio) * a.OStride + (kvHead * ratio + j % ratio) * d;
        if (x < d) output[ob + x] = v0 / l;
        if (x + across < d) output[ob + x + across] = v1 / l;
        if (x + 2 * across < d) output[ob + x + 2 * across] = v2 / l;
        if (x + 3 * across < d) output[ob + x + 3 * across] = v3 / l;
    }

    /// <summary>
    /// The largest <paramref name="v"/> over the <paramref name="width"/> neighbouring threads tid - tid % width .. (a power of two
    /// of at most 32; every thread of the group calls it): butterfly shuffles on CUDA, else through shared memory and a barrier
    /// (the caller fences <paramref name="sh"/> before writing it again).
    /// </summary>
    private static float RowMax(ArrayView<float> sh, int offset, float v, int width) => RowReduce(sh, offset, v, width, true);

    /// <summary><see cref="RowMax"/>, or with <paramref name="max"/> false the sum (in the same order on every thread of the row).</summary>
    private static float RowReduce(ArrayView<float> sh, int offset, float v, int width, bool max)
    {
        if (CudaAsm.IsSupported)
        {
            for (int s = width / 2; s > 0; s >>= 1)
            {
                float o = Numeric.ShuffleXor(v, s);
                v = max ? XMax(v, o) : v + o;
            }
            return v;
        }
        int tid = Group.IdxX;
        sh[offset + tid] = v;
        Group.Barrier();
        int first = offset + tid - tid % width;
        float r = sh[first];
        for (int s = 1; s < width; s++) r = max ? XMax(r, sh[first + s]) : r + sh[first + s];
        return r;
    }

    private static int XMin(int a, int b) => a < b ? a : b;

    private static int XMaxInt(int a, int b) => a > b ? a : b;
}
