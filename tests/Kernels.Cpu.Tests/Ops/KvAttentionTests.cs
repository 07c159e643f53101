using System.Runtime.InteropServices;
using Infer.Kernels.Cpu.Ops;
using Infer.Runtime.Backend;

namespace Infer.Kernels.Cpu.Tests.Ops;

/// <summary>
/// Decode attention over F16 and Q8_0 caches (<see cref="KvAttention"/>) and the tiled prefill over them (the typed
/// <see cref="FlashAttention"/>) against their scalar references: the same cache bytes converted by the reference conversion,
/// then the naive softmax attention. Conversions are exact on both sides, so the bound is float32 attention's.
/// </summary>
public unsafe class KvAttentionTests
{
    /// <summary>As <c>FlashAttentionTests.AttentionTolerance</c>: float32 sums in another order, relative to 1 + |expected|.</summary>
    private const float AttentionTolerance = 2e-5f;

    private static readonly KvCacheType[] Types = [KvCacheType.F32, KvCacheType.F16, KvCacheType.Q8_0];

    private static readonly int[] Counts = [1, 2, 3, 7, 8, 9, 15, 31, 32, 33, 63, 64, 65, 70, 100, 257, 1031];

    public static IEnumerable<object[]> TypePairs() =>
        from k in Types from v in Types where k != KvCacheType.F32 || v != KvCacheType.F32 select new object[] { k, v };

    [Theory]
    [MemberData(nameof(TypePairs))]
    public void DecodeMatchesReference(KvCacheType kType, KvCacheType vType)
    {
        foreach (int group in new[] { 1, 2, 4, 8 })
            foreach (int headDim in new[] { 32, 64, 128 })
                foreach (int count in Counts)
                    CheckDecode(kType, vType, group, headDim, count, seed: group * 1000 + headDim + count);
    }

    /// <summary>Head sizes that are not a multiple of 8 or 32 (no vector path, or no Q8_0 blocks): F16 and F32 only.</summary>
    [Theory]
    [InlineData(KvCacheType.F16, KvCacheType.F16)]
    [InlineData(KvCacheType.F16, KvCacheType.F32)]
    public void OddHeadSizesMatchReference(KvCacheType kType, KvCacheType vType)
    {
        foreach (int headDim in new[] { 8, 40, 80, 36, 17 })
            foreach (int count in new[] { 1, 9, 33, 70 })
                CheckDecode(kType, vType, group: 3, headDim, count, seed: headDim * 7 + count);
    }

    [Theory]
    [MemberData(nameof(TypePairs))]
    public void TiledPrefillMatchesReference(KvCacheType kType, KvCacheType vType)
    {
        int[][] positionSets =
        [
            [.. Enumerable.Range(0, 1)], [.. Enumerable.Range(0, 33)], [.. Enumerable.Range(30, 17)], [.. Enumerable.Range(97, 70)],
            [5, 90, 3, 3, 140, 61, 62, 0, 17],
        ];
        foreach (int group in new[] { 1, 4, 8 })
            foreach (int headDim in new[] { 32, 64, 128, 96 })
                foreach (var positions in positionSets)
                {
                    CheckTiled<Tile512>(kType, vType, group, headDim, positions, seed: group + headDim + positions.Length);
                    CheckTiled<Tile256>(kType, vType, group, headDim, positions, seed: group + headDim + positions.Length);
                }
    }

    [Fact]
    public void TiledF16CacheWithOddHeadSizeMatchesReference()
    {
        foreach (int headDim in new[] { 40, 80 })
        {
            CheckTiled<Tile512>(KvCacheType.F16, KvCacheType.F16, 4, headDim, [.. Enumerable.Range(11, 21)], seed: headDim);
            CheckTiled<Tile256>(KvCacheType.F16, KvCacheType.F16, 4, headDim, [.. Enumerable.Range(11, 21)], seed: headDim);
        }
    }

    /// <summary>
    /// A cache of <paramref name="rows"/> random rows stored by the reference conversion (kernel and reference read the same bytes).
    /// </summary>
    internal static byte[] RandomCache(KvCacheType type, int rows, int headDim, Random rng)
    {
        var x = new float[headDim];
        long rowBytes = KvRows.RowBytes(type, headDim);
        var cache = new byte[rows * rowBytes];
        fixed (float* xp = x)
        fixed (byte* c = cache)
            for (int r = 0; r < rows; r++)
            {
                for (int i = 0; i < headDim; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
                KvRows.StoreRef(type, xp, c + r * rowBytes, headDim);
            }
        return cache;
    }

    private static void CheckDecode(KvCacheType kType, KvCacheType vType, int group, int headDim, int count, int seed)
    {
        var rng = new Random(seed);
        var keys = RandomCache(kType, count, headDim, rng);
        var values = RandomCache(vType, count, headDim, rng);
        var q = new float[group * headDim];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 2 - 1) * 2;
        float scale = 1f / MathF.Sqrt(headDim);
        var expected = new float[group * headDim];
        var actual = new float[group * headDim + 16];
        actual.AsSpan(group * headDim).Fill(12345f);
        long rowFloats = KvAttention.ScratchFloats(headDim);
        float* rows = (float*)NativeMemory.AlignedAlloc((nuint)((rowFloats + 16) * sizeof(float)), 64);
        float* scores = (float*)NativeMemory.AlignedAlloc((nuint)(((long)group * count + 16) * sizeof(float)), 64);
        try
        {
            new Span<float>(rows, (int)rowFloats).Fill(float.NaN); // the kernel must not read rows it did not convert
            new Span<float>(rows + rowFloats, 16).Fill(12345f);
            new Span<float>(scores + (long)group * count, 16).Fill(12345f);
            fixed (float* qp = q, ep = expected, ap = actual)
            fixed (byte* kp = keys, vp = values)
            {
                KvAttention.AttendRef(kType, vType, qp, group, headDim, kp, vp, count, scale, ep);
                KvAttention.Attend(kType, vType, qp, group, headDim, kp, vp, count, scale, scores, ap, rows);
            }
            for (int i = 0; i < 16; i++)
            {
                Assert.Equal(12345f, rows[rowFloats + i]);
                Assert.Equal(12345f, scores[(long)group * count + i]);
                Assert.Equal(12345f, actual[group * headDim + i]);
            }
        }
        finally
        {
            NativeMemory.AlignedFree(rows);
            NativeMemory.AlignedFree(scores);
        }
        for (int i = 0; i < expected.Length; i++)
            if (!(MathF.Abs(expected[i] - actual[i]) <= AttentionTolerance * (1 + MathF.Abs(expected[i]))))
                Assert.Fail($"K {kType}, V {vType}, group {group}, head {headDim}, {count} positions: element {i}: "
                    + $"expected {expected[i]}, got {actual[i]}");
    }

    private static void CheckTiled<T>(KvCacheType kType, KvCacheType vType, int group, int headDim, int[] positions, int seed)
        where T : struct, ITileOps
    {
        int tokens = positions.Length, rowStride = group * headDim;
        int rowsInCache = positions.Max() + 1;
        var rng = new Random(seed);
        var keys = RandomCache(kType, rowsInCache, headDim, rng);
        var values = RandomCache(vType, rowsInCache, headDim, rng);
        var q = new float[tokens * rowStride];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 2 - 1) * 2;
        float scale = 1f / MathF.Sqrt(headDim);
        var expected = new float[tokens * rowStride];
        var actual = new float[tokens * rowStride];
        long scratchFloats = FlashAttention.ScratchFloats<T>(tokens, group, headDim, converts: true);
        const int Guard = 64;
        float* scratch = (float*)NativeMemory.AlignedAlloc((nuint)((scratchFloats + Guard) * sizeof(float)), 64);
        try
        {
            new Span<float>(scratch, (int)scratchFloats).Fill(float.NaN);
            new Span<float>(scratch + scratchFloats, Guard).Fill(12345f);
            fixed (float* qp = q, ep = expected, ap = actual)
            fixed (byte* kp = keys, vp = values)
            fixed (int* pp = positions)
            {
                FlashAttention.AttendRef(kType, vType, qp, rowStride, ep, rowStride, pp, tokens, group, headDim, kp, vp, scale);
                var args = new FlashAttention.Args(qp, rowStride, ap, rowStride, pp, tokens, group, headDim,
                    kp, KvRows.RowBytes(kType, headDim), vp, KvRows.RowBytes(vType, headDim), scale, scratch);
                Run<T>(kType, vType, args);
            }
            for (int i = 0; i < Guard; i++) Assert.Equal(12345f, scratch[scratchFloats + i]);
        }
        finally
        {
            NativeMemory.AlignedFree(scratch);
        }
        for (int i = 0; i < expected.Length; i++)
            if (!(MathF.Abs(expected[i] - actual[i]) <= AttentionTolerance * (1 + MathF.Abs(expected[i]))))
                Assert.Fail($"{typeof(T).Name}, K {kType}, V {vType}, group {group}, head {headDim}, {tokens} tokens: token {i / rowStride} "
                    + $"column {i % rowStride}: expected {expected[i]}, got {actual[i]}");
    }

    private static void Run<T>(KvCacheType kType, KvCacheType vType, in FlashAttention.Args a) where T : struct, ITileOps
    {
        switch (kType)
        {
            case KvCacheType.F32: Run<T, KvF32>(vType, a); break;
            case KvCacheType.F16: Run<T, KvF16>(vType, a); break;
            default: Run<T, KvQ8_0>(vType, a); break;
        }
    }

    private static void Run<T, TK>(KvCacheType vType, in FlashAttention.Args a) where T : struct, ITileOps where TK : struct, IKvRows
    {
        switch (vType)
        {
            case KvCacheType.F32: FlashAttention.Attend<T, TK, KvF32>(a); break;
            case KvCacheType.F16: FlashAttention.Attend<T, TK, KvF16>(a); break;
            default: FlashAttention.Attend<T, TK, KvQ8_0>(a); break;
        }
    }
}
