using System.Runtime.InteropServices;
using Infer.Kernels.Cpu.Ops;

namespace Infer.Kernels.Cpu.Tests.Ops;

/// <summary>
/// The tiled flash-attention kernel (both vector widths) against the naive scalar softmax attention, over token counts
/// 1..70, prefixes already in the cache, GQA ratios 1/2/4/8, head sizes 64/128 and odd ones, and out-of-order positions.
/// </summary>
public unsafe class FlashAttentionTests
{
    /// <summary>
    /// float32 attention with a different summation order and an online softmax (rescaled partial sums, pre-scaled queries,
    /// vectorized exp): a few ulps per step over a few hundred positions, relative to 1 + |expected|.
    /// </summary>
    private const float AttentionTolerance = 2e-5f;

    private static readonly int[] TokenCounts = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 70];
    private static readonly int[] Prefixes = [0, 1, 30, 97];

    public static IEnumerable<object[]> Shapes()
    {
        foreach (int group in new[] { 1, 2, 4, 8 })
            foreach (int headDim in new[] { 64, 128, 80, 40 })
                yield return [group, headDim];
        yield return [3, 96];
        yield return [4, 8];
        yield return [1, 256];
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ConsecutivePositionsMatchReference(int group, int headDim)
    {
        foreach (int tokens in TokenCounts)
            foreach (int prefix in Prefixes)
            {
                var positions = Enumerable.Range(prefix, tokens).ToArray();
                Check<Tile512>(group, headDim, positions, seed: tokens * 131 + prefix);
                Check<Tile256>(group, headDim, positions, seed: tokens * 131 + prefix);
            }
    }

    /// <summary>Every token count 1..70 (every row tail and key tail of both widths), behind an empty and an odd-length prefix.</summary>
    [Theory]
    [InlineData(4, 64)]
    [InlineData(1, 128)]
    public void EveryTokenCountMatchesReference(int group, int headDim)
    {
        for (int tokens = 1; tokens <= 70; tokens++)
            foreach (int prefix in new[] { 0, 37 })
            {
                var positions = Enumerable.Range(prefix, tokens).ToArray();
                Check<Tile512>(group, headDim, positions, seed: tokens);
                Check<Tile256>(group, headDim, positions, seed: tokens);
            }
    }

    /// <summary>Positions out of order and with repeats: each token sees exactly 0..its own position.</summary>
    [Theory]
    [InlineData(4, 64, 9)]
    [InlineData(1, 128, 33)]
    [InlineData(8, 64, 5)]
    [InlineData(2, 80, 40)]
    public void ArbitraryPositionsMatchReference(int group, int headDim, int tokens)
    {
        var rng = new Random(tokens);
        for (int trial = 0; trial < 6; trial++)
        {
            var positions = new int[tokens];
            for (int t = 0; t < tokens; t++) positions[t] = rng.Next(0, 150);
            Check<Tile512>(group, headDim, positions, seed: trial);
            Check<Tile256>(group, headDim, positions, seed: trial);
        }
    }

    /// <summary>Large scores (sharp softmax) with the maximum late in the cache: the online rescaling must carry the earlier blocks.</summary>
    [Theory]
    [InlineData(4, 64)]
    [InlineData(2, 128)]
    public void SharpSoftmaxMatchesReference(int group, int headDim)
    {
        var positions = Enumerable.Range(90, 20).ToArray();
        Check<Tile512>(group, headDim, positions, seed: 5, queryScale: 30);
        Check<Tile256>(group, headDim, positions, seed: 5, queryScale: 30);
    }

    [Fact]
    public void DispatchingEntryMatchesReference() => Check<Tile512>(4, 64, Enumerable.Range(3, 21).ToArray(), seed: 9, dispatch: true);

    /// <summary>
    /// Runs one block in a cache of 3 KV heads (the block's KV head is the middle one) and query rows of 3 groups, then checks
    /// the group's heads against the reference, that the other heads' output is untouched and that scratch past its size is.
    /// </summary>
    private static void Check<T>(int group, int headDim, int[] positions, int seed, float queryScale = 2, bool dispatch = false)
        where T : struct, ITileOps
    {
        const int kvHeads = 3, kvHead = 1;
        int tokens = positions.Length;
        int rowStride = kvHeads * group * headDim, kvStride = kvHeads * headDim;
        int cachePositions = positions.Max() + 1;
        float scale = 1f / MathF.Sqrt(headDim);
        var rng = new Random(seed);
        var q = Random(rng, tokens * rowStride, queryScale);
        var keys = Random(rng, cachePositions * kvStride, 1);
        var values = Random(rng, cachePositions * kvStride, 1);
        var expected = new float[tokens * rowStride];
        var actual = new float[tokens * rowStride];
        Array.Fill(actual, float.NaN);

        long scratchFloats = dispatch ? FlashAttention.ScratchFloats(tokens, group, headDim)
            : FlashAttention.ScratchFloats<T>(tokens, group, headDim);
        const int Guard = 64;
        float* scratch = (float*)NativeMemory.AlignedAlloc((nuint)((scratchFloats + Guard) * sizeof(float)), 64);
        try
        {
            new Span<float>(scratch, (int)scratchFloats).Fill(float.NaN); // the kernel must not read scratch it did not write
            new Span<float>(scratch + scratchFloats, Guard).Fill(12345f);
            int groupOffset = kvHead * group * headDim;
            fixed (float* qp = q, kp = keys, vp = values, ep = expected, ap = actual)
            fixed (int* pp = positions)
            {
                float* kh = kp + kvHead * headDim, vh = vp + kvHead * headDim;
                float* qg = qp + groupOffset, eg = ep + groupOffset, ag = ap + groupOffset;
                FlashAttention.AttendRef(qg, rowStride, eg, rowStride, pp, tokens, group, headDim, kh, vh, kvStride, scale);
                if (dispatch)
                    FlashAttention.Attend(qg, rowStride, ag, rowStride, pp, tokens, group, headDim, kh, vh, kvStride, scale, scratch);
                else
                    FlashAttention.Attend<T>(qg, rowStride, ag, rowStride, pp, tokens, group, headDim, kh, vh, kvStride, scale, scratch);
            }
            for (int i = 0; i < Guard; i++) Assert.Equal(12345f, scratch[scratchFloats + i]);

            string Shape() => $"{typeof(T).Name}, group {group}, head dim {headDim}, "
                + $"positions [{string.Join(",", positions.Take(8))}{(tokens > 8 ? ",…" : "")}] ({tokens} tokens)";
            for (int t = 0; t < tokens; t++)
                for (int c = 0; c < rowStride; c++)
                {
                    int idx = t * rowStride + c;
                    bool inGroup = c / (group * headDim) == kvHead;
                    if (!inGroup)
                    {
                        if (!float.IsNaN(actual[idx])) Assert.Fail($"{Shape()}: token {t} column {c} outside the group was written");
                        continue;
                    }
                    float err = MathF.Abs(expected[idx] - actual[idx]);
                    if (!(err <= AttentionTolerance * (1 + MathF.Abs(expected[idx]))))
                        Assert.Fail($"{Shape()}: token {t} column {c}: expected {expected[idx]}, got {actual[idx]}");
                }
        }
        finally
        {
            NativeMemory.AlignedFree(scratch);
        }
    }

    private static float[] Random(Random rng, int n, float scale)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return a;
    }
}
