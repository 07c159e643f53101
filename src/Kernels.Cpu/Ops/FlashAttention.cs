using System.Runtime.Intrinsics;
using Infer.Runtime.Backend;

namespace Infer.Kernels.Cpu.Ops;

/// <summary>
/// Causal grouped-query attention of a block of query tokens of one sequence over that sequence's KV cache, for one KV head
/// and all the query heads that share it, tiled the flash-attention way: keys and values are visited in blocks of
/// <see cref="ITileOps.KeyBlock"/> positions with an online softmax (running max and sum per query row, the output
/// accumulator rescaled when the max grows), so every K/V row loaded serves tokens × group heads queries and the full score
/// matrix never exists.
/// <para>
/// Layout of the tile (M = tokens × group heads query rows, row m = token m / G, head m % G; MPad = M rounded up to the
/// score kernel's row chunk):
/// Qᵀ (headDim, MPad) holds the queries transposed and pre-scaled, so QKᵀ broadcasts one key element against a vector of
/// rows and the block's scores come out as Sᵀ (KeyBlock, MPad): the softmax over keys is then lane-wise (no horizontal
/// reductions). P·V broadcasts P[m, j] against vectors of the value row into O (M, DPad).
/// </para>
/// <para>
/// Token t attends to cache positions 0..positions[t]; positions need not be consecutive. Every cache row 0..max(positions)
/// must hold a written key and value (rows a token cannot see are multiplied by zero).
/// </para>
/// <para>
/// A cache in a narrower type (<see cref="KvCacheType"/> F16, Q8_0) is read a key block at a time: the block's rows are
/// converted into float32 scratch (keys (KeyBlock, headDim), values (KeyBlock, DPad)) and the same tiles run over it.
/// </para>
/// </summary>
public static unsafe class FlashAttention
{
    /// <summary>Query rows (tokens × group heads) a block should hold: two rows of 16-float vectors (the score kernel's row chunk).</summary>
    public const int TargetRows = 32;

    /// <summary>
    /// Tokens per block for a group of <paramref name="groupHeads"/> query heads per KV head, so a block holds about
    /// <see cref="TargetRows"/> query rows.
    /// </summary>
    public static int BlockTokens(int groupHeads) => Math.Max(1, TargetRows / Math.Max(1, groupHeads));

    /// <summary>
    /// Whether a block of <paramref name="tokens"/> tokens is worth the tiled kernel: it fills at least half the tile's query
    /// rows. Smaller blocks (a decode token of a small group) waste most of the tile and go through <see cref="VectorOps.Attend"/>
    /// head by head, or <see cref="VectorOps.AttendGroup"/> a GQA group at a time at long contexts.
    /// </summary>
    public static bool Worthwhile(int tokens, int groupHeads) => tokens * groupHeads >= TargetRows / 2;

    /// <summary>
    /// Floats of per-worker scratch <see cref="Attend(float*, int, float*, int, int*, int, int, int, float*, float*, int, float, float*)"/>
    /// and the typed entry need for blocks of up to <paramref name="tokens"/> tokens, whatever the cache type.
    /// </summary>
    public static long ScratchFloats(int tokens, int groupHeads, int headDim) =>
        Math.Max(ScratchFloats<Tile512>(tokens, groupHeads, headDim, converts: true),
            ScratchFloats<Tile256>(tokens, groupHeads, headDim, converts: true));

    /// <summary>
    /// out[t, g] = Σ_{p ≤ positions[t]} softmax_p(scale · q[t, g]·k_p) v_p for the <paramref name="tokens"/> tokens of a block
    /// and the <paramref name="groupHeads"/> query heads of one KV head.
    /// </summary>
    /// <param name="q">query of token t, group head g at q[t * qStride + g * headDim + i] (the caller offsets to the group's first head).</param>
    /// <param name="qStride">floats from one token's queries to the next token's.</param>
    /// <param name="output">output of token t, group head g at output[t * outStride + g * headDim + i].</param>
    /// <param name="outStride">floats from one token's output to the next token's.</param>
    /// <param name="positions">cache position of each token; token t attends to positions 0..positions[t].</param>
    /// <param name="tokens">tokens in the block (rows of q and output).</param>
    /// <param name="groupHeads">query heads that share this KV head (grouped-query attention).</param>
    /// <param name="headDim">floats per head, in q, k, v and output alike.</param>
    /// <param name="keys">key of cache position p at keys[p * kvStride + i] (offset to the KV head).</param>
    /// <param name="values">value of cache position p at values[p * kvStride + i].</param>
    /// <param name="kvStride">floats from one cache position's key (or value) to the next position's.</param>
    /// <param name="scale">multiplies q·k before the softmax (1/√headDim for standard attention).</param>
    /// <param name="scratch">at least <see cref="ScratchFloats"/>(tokens, groupHeads, headDim) floats, 64-byte aligned.</param>
    public static void Attend(float* q, int qStride, float* output, int outStride, int* positions, int tokens, int groupHeads, int headDim,
        float* keys, float* values, int kvStride, float scale, float* scratch)
    {
        // Without 256-bit SIMD the Vector256 tiles run in software: slow, but correct and allocation-free.
        if (Vector512.IsHardwareAccelerated)
            Attend<Tile512>(q, qStride, output, outStride, positions, tokens, groupHeads, headDim, keys, values, kvStride, scale, scratch);
        else
            Attend<Tile256>(q, qStride, output, outStride, positions, tokens, groupHeads, headDim, keys, values, kvStride, scale, scratch);
    }

    /// <summary>
    /// <see cref="Attend(float*, int, float*, int, int*, int, int, int, float*, float*, int, float, float*)"/> over a cache of
    /// <paramref name="kType"/> keys and <paramref name="vType"/> values, the rows of the KV head consecutive (row p of K at
    /// keys + p · RowBytes(kType, headDim)).
    /// </summary>
    public static void Attend(KvCacheType kType, KvCacheType vType, float* q, int qStride, float* output, int outStride, int* positions,
        int tokens, int groupHeads, int headDim, byte* keys, byte* values, float scale, float* scratch)
    {
        var args = new Args(q, qStride, output, outStride, positions, tokens, groupHeads, headDim, keys, KvCacheTypes.RowBytes(kType, headDim),
            values, KvCacheTypes.RowBytes(vType, headDim), scale, scratch);
        switch (kType)
        {
            case KvCacheType.F32: Attend<KvF32>(vType, args); break;
            case KvCacheType.F16: Attend<KvF16>(vType, args); break;
            case KvCacheType.Q8_0: Attend<KvQ8_0>(vType, args); break;
            default: throw new ArgumentOutOfRangeException(nameof(kType));
        }
    }

    private static void Attend<TK>(KvCacheType vType, in Args a) where TK : struct, IKvRows
    {
        switch (vType)
        {
            case KvCacheType.F32: Attend<TK, KvF32>(a); break;
            case KvCacheType.F16: Attend<TK, KvF16>(a); break;
            case KvCacheType.Q8_0: Attend<TK, KvQ8_0>(a); break;
            default: throw new ArgumentOutOfRangeException(nameof(vType));
        }
    }

    /// <summary>The typed entry for one (K type, V type) pair, at the widest tile this CPU runs.</summary>
    internal static void Attend<TK, TV>(in Args a) where TK : struct, IKvRows where TV : struct, IKvRows
    {
        if (Vector512.IsHardwareAccelerated) Attend<Tile512, TK, TV>(a);
        else Attend<Tile256, TK, TV>(a);
    }

    /// <summary>The arguments of one block, as the typed entry takes them, with the row sizes of K and V in bytes.</summary>
    internal readonly struct Args(float* q, int qStride, float* output, int outStride, int* positions, int tokens, int groupHeads,
        int headDim, byte* keys, long keyRowBytes, byte* values, long valueRowBytes, float scale, float* scratch)
    {
        public readonly float* Q = q, Output = output, Scratch = scratch;
        public readonly int QStride = qStride, OutStride = outStride, Tokens = tokens, GroupHeads = groupHeads, HeadDim = headDim;
        public readonly int* Positions = positions;
        public readonly byte* Keys = keys, Values = values;
        public readonly long KeyRowBytes = keyRowBytes, ValueRowBytes = valueRowBytes;
        public readonly float Scale = scale;
    }

    /// <summary>
    /// Scalar reference of the typed entry: the cache rows converted by <see cref="KvRows.LoadRef"/>, then the float32 reference
    /// (<see cref="AttendRef(float*, int, float*, int, int*, int, int, int, float*, float*, int, float)"/>).
    /// </summary>
    public static void AttendRef(KvCacheType kType, KvCacheType vType, float* q, int qStride, float* output, int outStride, int* positions,
        int tokens, int groupHeads, int headDim, byte* keys, byte* values, float scale)
    {
        int rows = 0;
        for (int t = 0; t < tokens; t++) rows = Math.Max(rows, positions[t] + 1);
        var k = new float[(long)rows * headDim];
        var v = new float[(long)rows * headDim];
        fixed (float* kp = k, vp = v)
        {
            KvRows.LoadRef(kType, keys, rows, headDim, kp, headDim);
            KvRows.LoadRef(vType, values, rows, headDim, vp, headDim);
            AttendRef(q, qStride, output, outStride, positions, tokens, groupHeads, headDim, kp, vp, headDim, scale);
        }
    }

    /// <summary>
    /// Scalar reference: naive softmax attention, one query row at a time (scores over 0..pos, softmax, weighted sum of values).
    /// Same arguments as <see cref="Attend(float*, int, float*, int, int*, int, int, int, float*, float*, int, float, float*)"/>;
    /// allocates its score buffer (a test reference, not for the forward pass).
    /// </summary>
    public static void AttendRef(float* q, int qStride, float* output, int outStride, int* positions, int tokens, int groupHeads, int headDim,
        float* keys, float* values, int kvStride, float scale)
    {
        for (int t = 0; t < tokens; t++)
        {
            int count = positions[t] + 1;
            var scores = new float[count];
            for (int g = 0; g < groupHeads; g++)
            {
                float* qr = q + (long)t * qStride + g * headDim;
                float* o = output + (long)t * outStride + g * headDim;
                float max = float.NegativeInfinity;
                for (int p = 0; p < count; p++)
                {
                    float s = 0;
                    for (int i = 0; i < headDim; i++) s += qr[i] * keys[(long)p * kvStride + i];
                    scores[p] = s * scale;
                    max = MathF.Max(max, scores[p]);
                }
                float sum = 0;
                for (int p = 0; p < count; p++)
                {
                    scores[p] = MathF.Exp(scores[p] - max);
                    sum += scores[p];
                }
                for (int i = 0; i < headDim; i++)
                {
                    float acc = 0;
                    for (int p = 0; p < count; p++) acc += scores[p] * values[(long)p * kvStride + i];
                    o[i] = acc / sum;
                }
            }
        }
    }

    /// <summary>Sizes of the tile for one vector width.</summary>
    private readonly struct TileShape
    {
        public readonly int Rows, RowsPad, HeadDim, DPad;
        public readonly bool CopyValues, Converts;

        public TileShape(int rows, int headDim, int rowChunk, int valueColumns, bool converts)
        {
            Rows = rows;
            RowsPad = RoundUp(rows, rowChunk);
            HeadDim = headDim;
            DPad = RoundUp(headDim, valueColumns);
            Converts = converts;
            CopyValues = DPad != headDim;
        }

        // Scratch layout, in floats from the base (every part a multiple of 16 floats, so each stays 64-byte aligned):
        public long QtFloats => (long)HeadDim * RowsPad;               // Qᵀ (headDim, RowsPad)
        public long OFloats => (long)RowsPad * DPad;                   // O (RowsPad, DPad)
        public long SFloats(int keyBlock) => (long)keyBlock * RowsPad; // Sᵀ, then Pᵀ (KeyBlock, RowsPad)
        public long VFloats(int keyBlock) => CopyValues || Converts ? (long)keyBlock * DPad : 0; // values padded to DPad (KeyBlock, DPad)
        public long KFloats(int keyBlock) => Converts ? (long)keyBlock * HeadDim : 0;  // converted keys (KeyBlock, headDim)
        public long Total(int keyBlock) => RoundUp(QtFloats, 16) + OFloats + SFloats(keyBlock) + 4L * RowsPad + VFloats(keyBlock) + KFloats(keyBlock);
    }

    private static int RoundUp(int x, int m) => (x + m - 1) / m * m;
    private static long RoundUp(long x, long m) => (x + m - 1) / m * m;

    private static TileShape Shape<T>(int tokens, int groupHeads, int headDim, bool converts) where T : struct, ITileOps =>
        new(tokens * groupHeads, headDim, T.RowChunk, T.ValueColumns, converts);

    internal static long ScratchFloats<T>(int tokens, int groupHeads, int headDim, bool converts = false) where T : struct, ITileOps =>
        Shape<T>(tokens, groupHeads, headDim, converts).Total(T.KeyBlock);

    /// <summary>The tiled kernel for one vector width over a float32 cache (tests call each width).</summary>
    internal static void Attend<T>(float* q, int qStride, float* output, int outStride, int* positions, int tokens, int groupHeads, int headDim,
        float* keys, float* values, int kvStride, float scale, float* scratch) where T : struct, ITileOps =>
        Attend<T, KvF32, KvF32>(new Args(q, qStride, output, outStride, positions, tokens, groupHeads, headDim,
            (byte*)keys, 4L * kvStride, (byte*)values, 4L * kvStride, scale, scratch));

    /// <summary>The tiled kernel for one vector width and one (K type, V type) pair (tests call each).</summary>
    internal static void Attend<T, TK, TV>(in Args a) where T : struct, ITileOps where TK : struct, IKvRows where TV : struct, IKvRows
    {
        float* q = a.Q, output = a.Output, scratch = a.Scratch;
        int qStride = a.QStride, outStride = a.OutStride, tokens = a.Tokens, groupHeads = a.GroupHeads, headDim = a.HeadDim;
        int* positions = a.Positions;
        byte* keys = a.Keys, values = a.Values;
        long kRowBytes = a.KeyRowBytes, vRowBytes = a.ValueRowBytes;
        float scale = a.Scale;
        if (tokens <= 0) return;
        bool converts = TK.Converts || TV.Converts;
        var shape = Shape<T>(tokens, groupHeads, headDim, converts);
        int m = shape.Rows, mPad = shape.RowsPad, d = headDim, dPad = shape.DPad;
        int keyBlock = T.KeyBlock;

        float* qt = scratch;                                   // (d, mPad)
        float* o = qt + RoundUp(shape.QtFloats, 16);           // (mPad, dPad)
        float* s = o + shape.OFloats;                          // (keyBlock, mPad)
        float* rowMax = s + shape.SFloats(keyBlock);           // (mPad)
        float* rowSum = rowMax + mPad;                         // (mPad)
        float* correction = rowSum + mPad;                     // (mPad)
        int* rowPos = (int*)(correction + mPad);               // (mPad)
        float* vPad = (float*)(rowPos + mPad);                 // (keyBlock, dPad) when values are copied
        float* kBuf = vPad + shape.VFloats(keyBlock);          // (keyBlock, d) when the cache is converted

        int minPos = int.MaxValue, maxPos = -1;
        for (int t = 0; t < tokens; t++)
        {
            minPos = Math.Min(minPos, positions[t]);
            maxPos = Math.Max(maxPos, positions[t]);
        }
        LoadQueries(q, qStride, groupHeads, d, scale, m, mPad, qt);
        for (int r = 0; r < mPad; r++)
        {
            rowPos[r] = r < m ? positions[r / groupHeads] : int.MaxValue; // padding rows see every key (their scores are 0)
            rowMax[r] = float.NegativeInfinity;
            rowSum[r] = 0;
        }
        new Span<float>(o, m * dPad).Clear();
        if (shape.CopyValues || TV.Converts) new Span<float>(vPad, keyBlock * dPad).Clear();

        for (int p0 = 0; p0 <= maxPos; p0 += keyBlock)
        {
            int count = Math.Min(keyBlock, maxPos + 1 - p0);
            float* k0 = (float*)(keys + p0 * kRowBytes);
            int kStride = (int)(kRowBytes / sizeof(float));
            if (TK.Converts)
            {
                TK.Load(keys + p0 * kRowBytes, count, d, kBuf, d);
                k0 = kBuf;
                kStride = d;
            }
            for (int j = 0; j < count; j += T.ScoreKeys)
                T.Scores(qt, mPad, d, k0 + (long)j * kStride, kStride, count - j, s + (long)j * mPad);

            bool masked = p0 + count - 1 > minPos; // some row cannot see the block's last key
            T.UpdateSoftmax(s, mPad, count, masked ? p0 : -1, rowPos, rowMax, rowSum, correction);

            float* v = (float*)(values + p0 * vRowBytes);
            int vStride = (int)(vRowBytes / sizeof(float));
            if (TV.Converts)
            {
                TV.Load(values + p0 * vRowBytes, count, d, vPad, dPad);
                v = vPad;
                vStride = dPad;
            }
            else if (shape.CopyValues)
            {
                for (int j = 0; j < count; j++)
                    new ReadOnlySpan<float>(v + (long)j * vStride, d).CopyTo(new Span<float>(vPad + (long)j * dPad, d));
                v = vPad;
                vStride = dPad;
            }
            Accumulate<T>(o, dPad, s, mPad, correction, v, vStride, count, m);
        }

        StoreOutput(o, dPad, rowSum, output, outStride, groupHeads, d, m);
    }

    /// <summary>Qᵀ[i, r] = scale · q[token r / G, head r % G][i]; padding rows are zero.</summary>
    private static void LoadQueries(float* q, int rowStride, int groupHeads, int d, float scale, int m, int mPad, float* qt)
    {
        for (int r = 0; r < m; r++)
        {
            float* src = q + (long)(r / groupHeads) * rowStride + (r % groupHeads) * d;
            for (int i = 0; i < d; i++) qt[(long)i * mPad + r] = src[i] * scale;
        }
        for (int i = 0; i < d; i++)
            for (int r = m; r < mPad; r++) qt[(long)i * mPad + r] = 0;
    }

    /// <summary>O[r, :] = O[r, :] · correction[r] + Σ_j Pᵀ[j, r] · v_j for the m real rows, four rows at a time.</summary>
    private static void Accumulate<T>(float* o, int dPad, float* p, int mPad, float* correction, float* v, int vStride, int count, int m)
        where T : struct, ITileOps
    {
        int r = 0;
        for (; r + 4 <= m; r += 4)
            for (int c = 0; c < dPad; c += T.ValueColumns)
                T.Accumulate4(o + (long)r * dPad + c, dPad, p + r, mPad, correction + r, v + c, vStride, count);
        for (; r < m; r++)
            for (int c = 0; c < dPad; c += T.ValueColumns)
                T.Accumulate1(o + (long)r * dPad + c, p + r, mPad, correction[r], v + c, vStride, count);
    }

    /// <summary>output[token r / G, head r % G] = O[r, :headDim] / rowSum[r].</summary>
    private static void StoreOutput(float* o, int dPad, float* rowSum, float* output, int rowStride, int groupHeads, int d, int m)
    {
        for (int r = 0; r < m; r++)
        {
            float* dst = output + (long)(r / groupHeads) * rowStride + (r % groupHeads) * d;
            System.Numerics.Tensors.TensorPrimitives.Multiply(
                new ReadOnlySpan<float>(o + (long)r * dPad, d), 1f / rowSum[r], new Span<float>(dst, d));
        }
    }
}
