using Infer.Kernels.Cpu.Ops;
using Infer.Runtime.Backend;

namespace Infer.Kernels.Cpu.Tests.Ops;

/// <summary>
/// The KV cache row conversions against their scalar references (ggml's fp16 conversions and Q8_0 reference quantizer): the
/// same bytes stored, the same floats read back. Run under DOTNET_EnableAVX512=0 and DOTNET_EnableAVX2=0 to cover the narrower paths.
/// </summary>
public unsafe class KvRowsTests
{
    public static IEnumerable<object[]> HalfLengths() =>
        Enumerable.Range(1, 70).Concat([127, 128, 129, 255, 4096 + 13]).Select(n => new object[] { n });

    /// <summary>Every one of the 65536 half values reads back as ggml's conversion gives it (NaNs as NaN with the same bits).</summary>
    [Fact]
    public void EveryHalfReadsBackExactly()
    {
        var halves = new ushort[65536];
        for (int i = 0; i < halves.Length; i++) halves[i] = (ushort)i;
        var expected = new float[65536];
        var actual = new float[65536];
        fixed (ushort* h = halves)
        fixed (float* e = expected, a = actual)
        {
            KvRows.LoadRef(KvCacheType.F16, (byte*)h, 1, 65536, e, 65536);
            KvRows.Load(KvCacheType.F16, (byte*)h, 1, 65536, a, 65536);
        }
        for (int i = 0; i < halves.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"half 0x{i:X4}: expected {expected[i]} (0x{BitConverter.SingleToInt32Bits(expected[i]):X8}), "
                    + $"got {actual[i]} (0x{BitConverter.SingleToInt32Bits(actual[i]):X8})");
    }

    /// <summary>Rows of odd lengths (every vector tail), each row written and read through the row stride.</summary>
    [Theory]
    [MemberData(nameof(HalfLengths))]
    public void HalfRowsMatchReference(int headDim) => CheckRows(KvCacheType.F16, headDim, rows: 5, seed: headDim);

    [Theory]
    [InlineData(32)]
    [InlineData(64)]
    [InlineData(96)]
    [InlineData(128)]
    [InlineData(256)]
    public void Q8_0RowsMatchReference(int headDim) => CheckRows(KvCacheType.Q8_0, headDim, rows: 7, seed: headDim);

    [Theory]
    [InlineData(1)]
    [InlineData(33)]
    [InlineData(128)]
    public void F32RowsAreCopied(int headDim) => CheckRows(KvCacheType.F32, headDim, rows: 3, seed: headDim);

    /// <summary>
    /// Values where rounding to half is delicate: exact ties (round to even), the largest half and past it (infinity),
    /// the smallest normal and subnormal halves and below (zero), negative zero.
    /// </summary>
    [Fact]
    public void HalfRoundingEdgesMatchReference()
    {
        float ulp1 = MathF.ScaleB(1, -10); // half ulp at 1.0 is 2^-10
        float[] edges =
        [
            0f, -0f, 1f, -1f, 1f + ulp1 / 2, 1f + 3 * ulp1 / 2, 1f + ulp1 / 2 + 1e-7f, -(1f + ulp1 / 2),
            65504f, 65519.99f, 65520f, -65520f, 1e9f, -1e9f, float.PositiveInfinity, float.NegativeInfinity,
            MathF.ScaleB(1, -14), MathF.ScaleB(1, -24), MathF.ScaleB(1, -25), MathF.ScaleB(3, -26), MathF.ScaleB(1, -26), 1e-30f, -1e-30f,
            float.Epsilon, 0.1f, 1f / 3, 2049f, 2051f, 4097f, 1e-5f, 6.1e-5f,
        ];
        var expected = new ushort[edges.Length];
        var actual = new ushort[edges.Length];
        fixed (float* x = edges)
        fixed (ushort* e = expected, a = actual)
        {
            KvRows.StoreRef(KvCacheType.F16, x, (byte*)e, edges.Length);
            KvRows.Store(KvCacheType.F16, x, (byte*)a, edges.Length);
        }
        for (int i = 0; i < edges.Length; i++)
            Assert.True(expected[i] == actual[i], $"{edges[i]:R}: expected 0x{expected[i]:X4}, got 0x{actual[i]:X4}");
    }

    private static void CheckRows(KvCacheType type, int headDim, int rows, int seed)
    {
        long rowBytes = KvRows.RowBytes(type, headDim);
        var rng = new Random(seed);
        var x = new float[rows * headDim];
        // magnitudes from 1e-6 to 1e3, so half subnormals, ordinary values and coarse half steps all occur
        for (int i = 0; i < x.Length; i++) x[i] = (float)((rng.NextDouble() * 2 - 1) * Math.Pow(10, rng.Next(-6, 4)));
        var expectedBytes = new byte[rows * rowBytes];
        var actualBytes = new byte[rows * rowBytes];
        fixed (float* xp = x)
        fixed (byte* e = expectedBytes, a = actualBytes)
        {
            for (int r = 0; r < rows; r++)
            {
                KvRows.StoreRef(type, xp + r * headDim, e + r * rowBytes, headDim);
                KvRows.Store(type, xp + r * headDim, a + r * rowBytes, headDim);
            }
        }
        Assert.Equal(expectedBytes, actualBytes);

        const int pad = 3; // read into rows wider than the head: the padding columns stay untouched
        int stride = headDim + pad;
        var expected = new float[rows * stride];
        var actual = new float[rows * stride];
        Array.Fill(actual, -7f);
        fixed (byte* src = expectedBytes)
        fixed (float* e = expected, a = actual)
        {
            KvRows.LoadRef(type, src, rows, headDim, e, stride);
            KvRows.Load(type, src, rows, headDim, a, stride);
        }
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < stride; i++)
            {
                int idx = r * stride + i;
                if (i >= headDim) Assert.True(actual[idx] == -7f, $"{type}: padding column {i} of row {r} was written");
                else if (BitConverter.SingleToInt32Bits(expected[idx]) != BitConverter.SingleToInt32Bits(actual[idx]))
                    Assert.Fail($"{type}, head {headDim}: row {r} element {i}: expected {expected[idx]:R}, got {actual[idx]:R}");
            }
        if (type == KvCacheType.F16)
        {
            // and the stored halves are the nearest: |x - read| ≤ half an ulp of the half format (2^-11 relative, or 2^-25 absolute)
            for (int r = 0; r < rows; r++)
                for (int i = 0; i < headDim; i++)
                {
                    float v = x[r * headDim + i], back = expected[r * stride + i];
                    float bound = MathF.Max(MathF.Abs(v) * MathF.ScaleB(1, -11), MathF.ScaleB(1, -25));
                    Assert.True(MathF.Abs(v - back) <= bound, $"{v:R} read back as {back:R}");
                }
        }
    }
}
