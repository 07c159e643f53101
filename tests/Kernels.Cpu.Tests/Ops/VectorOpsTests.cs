using Infer.Kernels.Cpu.Ops;
using Infer.Runtime.Backend;

namespace Infer.Kernels.Cpu.Tests.Ops;

/// <summary>Every vectorized row kernel against its scalar reference, over all lengths 0..256 and some large odd ones.</summary>
public unsafe class VectorOpsTests
{
    // float32 kernels that only reorder sums: relative error of a few ulps per element.
    private const float RowKernelTolerance = 2e-5f;

    public static IEnumerable<object[]> Lengths() =>
        Enumerable.Range(0, 257).Concat([511, 1000, 1023, 4095, 4097, 14336 + 7]).Select(n => new object[] { n });

    private static float[] Random(int n, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return a;
    }

    private static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float tol)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            float err = MathF.Abs(expected[i] - actual[i]);
            Assert.True(err <= tol * (1 + MathF.Abs(expected[i])), $"index {i}: expected {expected[i]}, got {actual[i]}");
        }
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void RmsNormMatchesReference(int n)
    {
        var x = Random(n, n, 3);
        var w = Random(n, n + 1);
        var expected = new float[n];
        var actual = new float[n];
        VectorOps.RmsNormRef(x, w, 1e-5f, expected);
        VectorOps.RmsNorm(x, w, 1e-5f, actual);
        AssertClose(expected, actual, RowKernelTolerance);
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void SoftmaxMatchesReference(int n)
    {
        var expected = Random(n, n, 8);
        var actual = (float[])expected.Clone();
        VectorOps.SoftmaxRef(expected);
        VectorOps.Softmax(actual);
        AssertClose(expected, actual, RowKernelTolerance);
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void SwiGluMatchesReference(int n)
    {
        var expected = Random(n, n, 6);
        var actual = (float[])expected.Clone();
        var up = Random(n, n + 7, 2);
        VectorOps.SwiGluRef(expected, up);
        VectorOps.SwiGlu(actual, up);
        AssertClose(expected, actual, RowKernelTolerance);
    }

    [Theory]
    [InlineData(1, 64)]
    [InlineData(2, 32)]
    [InlineData(7, 64)]
    [InlineData(33, 128)]
    [InlineData(257, 64)]
    [InlineData(513, 128)]
    [InlineData(5, 256)]
    [InlineData(9, 48)]
    [InlineData(3, 40)]
    [InlineData(4, 16)]
    public void AttendMatchesReference(int count, int headDim)
    {
        int stride = headDim * 3; // K/V rows of a cache with 3 KV heads
        var keys = Random(count * stride, count);
        var values = Random(count * stride, count + 1);
        var q = Random(headDim, count + 2, 2);
        var scores = new float[count];
        var expected = new float[headDim];
        var actual = new float[headDim];
        fixed (float* k = keys, v = values)
        {
            VectorOps.AttendRef(q, k + headDim, v + headDim, stride, count, 0.125f, scores, expected);
            VectorOps.Attend(q, k + headDim, v + headDim, stride, count, 0.125f, scores, actual);
        }
        AssertClose(expected, actual, RowKernelTolerance);
    }

    [Fact]
    public void RopeHandComputed()
    {
        // Position 1, dims 4, base 10000: pair 0 turns by 1 rad, pair 1 by 1/100 rad.
        var cos = new float[2];
        var sin = new float[2];
        new RopeConfig(4, 10000f, 1f, NeoX: false, null).CosSin(1, cos, sin);
        Assert.Equal(MathF.Cos(1), cos[0], 6);
        Assert.Equal(MathF.Sin(0.01f), sin[1], 6);

        float[] normal = [1, 0, 1, 0];
        VectorOps.RopeHead(normal, 4, neox: false, cos, sin);
        Assert.Equal([MathF.Cos(1), MathF.Sin(1), MathF.Cos(0.01f), MathF.Sin(0.01f)], normal);

        float[] neox = [1, 1, 0, 0]; // pairs (0, 2) and (1, 3)
        VectorOps.RopeHead(neox, 4, neox: true, cos, sin);
        Assert.Equal([MathF.Cos(1), MathF.Cos(0.01f), MathF.Sin(1), MathF.Sin(0.01f)], neox);
    }

    [Fact]
    public void RopeFreqFactorsDivideTheFrequency()
    {
        var cos = new float[2];
        var sin = new float[2];
        new RopeConfig(4, 10000f, 1f, NeoX: false, [1f, 4f]).CosSin(3, cos, sin);
        Assert.Equal(MathF.Sin(3f), sin[0], 6);
        Assert.Equal(MathF.Sin(3f * 0.01f / 4f), sin[1], 6);
    }

    /// <summary>The grouped decode kernel (a GQA group's heads over one cache) equals the scalar reference per head.</summary>
    [Theory]
    [InlineData(1, 64)]
    [InlineData(2, 8)]
    [InlineData(4, 64)]
    [InlineData(4, 80)]
    [InlineData(6, 128)]
    [InlineData(8, 40)]
    public void AttendGroupMatchesReferencePerHead(int group, int headDim)
    {
        var rng = new Random(group * 1000 + headDim);
        foreach (int count in Enumerable.Range(1, 20).Concat([63, 64, 65, 130, 1030]))
        {
            int stride = headDim + 8; // a padded row, as any cache layout may have
            var k = new float[count * stride];
            var v = new float[count * stride];
            var q = new float[group * headDim];
            for (int i = 0; i < k.Length; i++) { k[i] = (float)(rng.NextDouble() * 2 - 1); v[i] = (float)(rng.NextDouble() * 2 - 1); }
            for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 4 - 2);
            var scores = new float[group * count];
            var output = new float[group * headDim];
            fixed (float* kp = k, vp = v, qp = q, sp = scores, op = output)
                VectorOps.AttendGroup(qp, group, headDim, kp, vp, stride, count, 0.125f, sp, op);
            var refScores = new float[count];
            var expected = new float[headDim];
            for (int g = 0; g < group; g++)
            {
                fixed (float* kp = k, vp = v)
                    VectorOps.AttendRef(q.AsSpan(g * headDim, headDim), kp, vp, stride, count, 0.125f, refScores, expected);
                for (int i = 0; i < headDim; i++)
                    Assert.True(MathF.Abs(expected[i] - output[g * headDim + i]) <= RowKernelTolerance * (1 + MathF.Abs(expected[i])),
                        $"group {group} dim {headDim} count {count} head {g} element {i}: {output[g * headDim + i]} vs {expected[i]}");
            }
        }
    }
}
