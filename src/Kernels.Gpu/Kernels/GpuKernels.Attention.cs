using ILGPU;

namespace Infer.Kernels.Gpu.Kernels;

internal static partial class GpuKernels
{
    // ---- attention ----

    /// <summary>Index over n * kvDim: writes k and v of the batch into the cache at (sequence, layer, position).</summary>
    public static void StoreKv(Index1D i, ArrayView<float> k, ArrayView<float> v, KvViews cache, ArrayView<int> batch, AttentionArgs a,
        int kStride, int vStride)
    {
        int kvDim = a.KvHeads * a.HeadDim;
        int t = i / kvDim, j = i % kvDim;
        long dst = (((long)batch[a.SeqOffset + t] * a.Layers + a.Layer) * a.ContextLength + batch[a.PosOffset + t]) * kvDim + j;
        cache.StoreK(dst, k[(long)t * kStride + j]);
        cache.StoreV(dst, v[(long)t * vStride + j]);
    }

    /// <summary>
    /// Index over n * kvDim / 32: writes k and v of the batch into the cache block by block of 32 elements, which a q8_0 part
    /// needs (its quants share a scale; see <see cref="KvViews.StoreBlock"/>). Runs after the element stores of
    /// <see cref="RopeStoreKv"/> or the fused epilogue when a part is q8_0 (k rotated in place by then).
    /// </summary>
    public static void StoreKvBlocks(Index1D i, ArrayView<float> k, ArrayView<float> v, KvViews cache, ArrayView<int> batch,
        AttentionArgs a, int kStride, int vStride)
    {
        int kvDim = a.KvHeads * a.HeadDim, blocks = kvDim / KvViews.Block;
        int t = i / blocks, j = i % blocks * KvViews.Block;
        long dst = (((long)batch[a.SeqOffset + t] * a.Layers + a.Layer) * a.ContextLength + batch[a.PosOffset + t]) * kvDim + j;
        cache.StoreBlock(true, dst, k, (long)t * kStride + j);
        cache.StoreBlock(false, dst, v, (long)t * vStride + j);
    }

    /// <summary>
    /// RoPE of q and k and the cache store in one launch. Index over n * (Heads * Dims/2 + KvHeads * Dims/2 + kvDim):
    /// per token, first one item per rotated pair of q (rotated in place), then one per pair of k (rotated in place and
    /// written to the cache), then one per k/v element (v copied to the cache, and k's unrotated tail when Dims is less
    /// than the head size). Same arithmetic as <see cref="Rope"/> and <see cref="StoreKv"/>.
    /// </summary>
    public static void RopeStoreKv(Index1D idx, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, KvViews cache,
        ArrayView<float> cos, ArrayView<float> sin, ArrayView<int> batch, AttentionArgs a, RopeStoreArgs r)
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
                cache.StoreK(dst + ja, ra);
                cache.StoreK(dst + jb, rb);
            }
        }
        else
        {
            int j = e - qPairs - kPairs;
            cache.StoreV(dst + j, v[(long)t * r.VStride + j]);
            if (j % d >= r.Dims) cache.StoreK(dst + j, k[(long)t * r.KStride + j]);
        }
    }

    /// <summary>
    /// Grid (n * Heads, Splits). A group attends one query head of one token over one range of its sequence's cached
    /// positions 0..pos, in chunks of G positions with an online softmax (running max m and sum l): thread p scores
    /// position p of the chunk, then thread i accumulates output dimension i. With one split it writes the normalized
    /// output. Otherwise it writes (o unnormalized, m, l) to <paramref name="partials"/> and takes a ticket from
    /// <paramref name="tickets"/> (one counter per (token, head), zero between launches): the group that takes the last
    /// ticket merges every split's partials into the output (<see cref="CombineSplits"/>) and resets the counter, so split
    /// attention is one launch, not a second combine launch (flash-decoding's reduction done by the last block).
    /// </summary>
    public static void Attention(ArrayView<float> q, KvViews cache, ArrayView<float> output, ArrayView<float> partials,
        ArrayView<int> tickets, ArrayView<int> batch, AttentionArgs a)
    {
        var qs = SharedMemory.Allocate<float>(MaxHeadDim);
        var os = SharedMemory.Allocate<float>(MaxHeadDim);
        var sc = SharedMemory.Allocate<float>(MaxGroup);
        var scratch = SharedMemory.Allocate<float>(MaxGroup);
        var last = SharedMemory.Allocate<int>(1);
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
            if (p < end) s = ScoreRow(qs, cache, cacheBase + (long)p * kvDim, d) * a.Scale;
            float newM = XMax(m, GroupMax(scratch, s));
            float correction = MathF.Exp(m - newM);
            float e = p < end ? MathF.Exp(s - newM) : 0f;
            sc[tid] = e;
            l = l * correction + GroupSum(scratch, e);
            m = newM;
            int count = end - c < g ? end - c : g;
            AccumulateV(sc, os, scratch, cache, cacheBase + (long)c * kvDim, kvDim, d, count, correction);
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
            // every writer's stores are visible device-wide before its group takes a ticket
            MemoryFence.DeviceLevel();
            Group.Barrier();
            if (tid == 0) last[0] = Atomic.Add(ref tickets[Grid.IdxX], 1) == a.Splits - 1 ? 1 : 0;
            Group.Barrier();
            if (last[0] != 0)
            {
                MemoryFence.DeviceLevel();
                CombineSplits(partials, output, a);
                if (tid == 0) tickets[Grid.IdxX] = 0;
            }
        }
    }

    /// <summary>q · K[row..row+d) with four sums, so four loads of the row are in flight at a time.</summary>
    private static float ScoreRow(ArrayView<float> qs, KvViews cache, long row, int d)
    {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int i = 0;
        for (; i + 3 < d; i += 4)
        {
            s0 += qs[i] * cache.LoadK(row + i);
            s1 += qs[i + 1] * cache.LoadK(row + i + 1);
            s2 += qs[i + 2] * cache.LoadK(row + i + 2);
            s3 += qs[i + 3] * cache.LoadK(row + i + 3);
        }
        for (; i < d; i++) s0 += qs[i] * cache.LoadK(row + i);
        return (s0 + s1) + (s2 + s3);
    }

    /// <summary>
    /// os[i] = os[i] · correction + Σ_j sc[j] · V[c + j, i] over a chunk's <paramref name="count"/> positions (V rows from
    /// <paramref name="v0"/>, <paramref name="kvDim"/> apart), then a barrier. The group's threads split as G / d slices of d
    /// output dimensions (one slice where d exceeds G / 2): slice k sums positions k, k + slices, ... with two sums (loads in
    /// flight, not one latency per position), the slices' sums meet in <paramref name="scratch"/>. Every thread must call it.
    /// </summary>
    private static void AccumulateV(ArrayView<float> sc, ArrayView<float> os, ArrayView<float> scratch, KvViews cache, long v0,
        int kvDim, int d, int count, float correction)
    {
        int tid = Group.IdxX, g = Group.DimX;
        int slices = g / d;
        if (slices < 2)
        {
            for (int i = tid; i < d; i += g)
            {
                float e0 = 0, e1 = 0;
                int j = 0;
                for (; j + 1 < count; j += 2)
                {
                    e0 += sc[j] * cache.LoadV(v0 + (long)j * kvDim + i);
                    e1 += sc[j + 1] * cache.LoadV(v0 + (long)(j + 1) * kvDim + i);
                }
                if (j < count) e0 += sc[j] * cache.LoadV(v0 + (long)j * kvDim + i);
                os[i] = os[i] * correction + (e0 + e1);
            }
            Group.Barrier();
            return;
        }
        int slice = tid / d, dim = tid % d;
        if (slice < slices)
        {
            float e0 = 0, e1 = 0;
            int j = slice;
            for (; j + slices < count; j += 2 * slices)
            {
                e0 += sc[j] * cache.LoadV(v0 + (long)j * kvDim + dim);
                e1 += sc[j + slices] * cache.LoadV(v0 + (long)(j + slices) * kvDim + dim);
            }
            if (j < count) e0 += sc[j] * cache.LoadV(v0 + (long)j * kvDim + dim);
            scratch[tid] = e0 + e1;
        }
        Group.Barrier();
        if (tid < d)
        {
            float sum = 0;
            for (int k = 0; k < slices; k++) sum += scratch[k * d + tid];
            os[tid] = os[tid] * correction + sum;
        }
        Group.Barrier();
    }

    /// <summary>
    /// The group of (token, head) Grid.IdxX merges its split partials: out = Σ e^(m_s - M) o_s / Σ e^(m_s - M) l_s.
    /// </summary>
    private static void CombineSplits(ArrayView<float> partials, ArrayView<float> output, AttentionArgs a)
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
