using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Tests.Quants;

/// <summary>
/// IQ4_NL and IQ4_XS prompts convert whole repacked groups into the Q8_0 tiles' groups (<see cref="QuantKernel.ConvertGroup"/>):
/// the bytes must be those of the scalar row conversion (<see cref="IQ4.NlToQ8_0Ref"/>, <see cref="IQ4.XsToQ8_0x2Ref"/>) repacked
/// by the Q8_0 kernels of the same level, whose tiles then read them.
/// </summary>
public unsafe class ConvertGroupTests
{
    public static TheoryData<GgmlType, QuantKernels.IsaLevel> Cases()
    {
        var data = new TheoryData<GgmlType, QuantKernels.IsaLevel>();
        foreach (var type in Isa.RepackedWithoutTile)
            foreach (var level in Enum.GetValues<QuantKernels.IsaLevel>())
                data.Add(type, level);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ConvertedGroupIsTheRepackedRowConversion(GgmlType type, QuantKernels.IsaLevel level)
    {
        var k = QuantKernels.Get(type, level);
        if (level == QuantKernels.IsaLevel.Scalar || !Isa.HasAvx2)
        {
            Assert.True(k.ConvertGroup == null);
            Isa.RequireRepacked(type, level); // skipped when this CPU, not the design, is why there is none
            return;
        }
        Isa.RequireSimd(type, level);
        var via = k.GemmVia!;
        Assert.True(k.ConvertGroup != null && via.Type == GgmlType.Q8_0 && via.RepackRows == 8);
        var rng = new Random((int)type * 10 + (int)level);
        int bs = k.BlockSize, width = k.GemmViaWidth;
        foreach (int n in Enumerable.Range(1, 6).Select(b => b * bs).Concat([bs * 37]))
        {
            int rowBytes = (int)k.RowBytes(n), viaRowBytes = (int)via.RowBytes((long)n * width);
            // random bits: every nibble, every 6-bit scale (IQ4_XS), with finite scales d below 2047 (32·d stays finite in fp16)
            var plain = new byte[8 * rowBytes];
            rng.NextBytes(plain);
            for (int b = 0; b < plain.Length / k.TypeSize; b++)
                BitConverter.TryWriteBytes(plain.AsSpan(b * k.TypeSize), BitConverter.HalfToUInt16Bits((Half)(rng.NextDouble() * 2 - 1)));
            var rows = new byte[8 * viaRowBytes];
            var expected = new byte[8 * viaRowBytes];
            var group = new byte[8 * rowBytes];
            var actual = new byte[8 * viaRowBytes];
            fixed (byte* pp = plain, pr = rows, pe = expected, pg = group, pa = actual)
            {
                for (int r = 0; r < 8; r++)
                    if (type == GgmlType.IQ4_NL) IQ4.NlToQ8_0Ref(pp + r * rowBytes, pr + r * viaRowBytes, n);
                    else IQ4.XsToQ8_0x2Ref(pp + r * rowBytes, pr + r * viaRowBytes, n);
                via.Repack(pr, viaRowBytes, pe, n * width);
                k.Repack(pp, rowBytes, pg, n);
                k.ConvertGroup(pg, pa, n);
            }
            Assert.True(expected.AsSpan().SequenceEqual(actual), $"{type} {k.Isa} n={n}: first difference at byte "
                + expected.AsSpan().CommonPrefixLength(actual));
        }
    }

    /// <summary>
    /// IQ4_XS prompts in one pass (<see cref="QuantKernel.GemmViaScaled"/>): two converted groups through the Q8_0 tile with the
    /// scales d·(ls − 32) from the IQ4_XS groups, and the leftover tokens' dots of the IQ4_XS groups against the Q8_0 tile's
    /// activations, against the scalar Q8_0 dot of the two exact halves (<see cref="IQ4.XsToQ8_0x2Ref"/>) with the activations
    /// twice: the same integer sums per block, so only float rounding differs.
    /// </summary>
    [Theory]
    [InlineData(QuantKernels.IsaLevel.Best)]
    [InlineData(QuantKernels.IsaLevel.Avx512)]
    [InlineData(QuantKernels.IsaLevel.AvxVnni)]
    [InlineData(QuantKernels.IsaLevel.Avx2)]
    public void IQ4_XSScaledPromptPathMatchesTheHalves(QuantKernels.IsaLevel level)
    {
        Isa.RequireSimd(GgmlType.IQ4_XS, level);
        var k = QuantKernels.Get(GgmlType.IQ4_XS, level);
        var via = k.GemmVia!;
        var sv = k.GemmViaScaled!;
        Assert.True(sv != null && via.RepackedTile != null);
        var rng = new Random((int)level);
        int tt = via.TileTokens;
        foreach (int n in new[] { 256, 512, 256 * 11 })
        {
            int rowBytes = (int)k.RowBytes(n), halfBytes = (int)via.RowBytes(2L * n), actStride = (int)via.ActivationRowBytes(n);
            var plain = new byte[16 * rowBytes];
            rng.NextBytes(plain);
            for (int b = 0; b < plain.Length / k.TypeSize; b++)
                BitConverter.TryWriteBytes(plain.AsSpan(b * k.TypeSize), BitConverter.HalfToUInt16Bits((Half)(rng.NextDouble() * 0.02 - 0.01)));
            var x = new float[tt][];
            var act = new byte[tt * actStride];
            var expected = new double[tt, 16];
            var scale = new double[tt, 16];
            var halves = new byte[halfBytes];
            var w = new float[n];
            fixed (byte* pp = plain, ph = halves, pa = act)
            fixed (float* pw = w)
                for (int c = 0; c < tt; c++)
                {
                    x[c] = QuantTestUtil.RandomData(n, 1000 * c + n, 2.0f);
                    fixed (float* px = x[c]) via.QuantizeActivations(px, pa + c * actStride, n);
                    byte[] twice = QuantTestUtil.Quantize(GgmlType.Q8_0, [.. x[c], .. x[c]]);
                    float[] xq = QuantTestUtil.Dequantize(GgmlType.Q8_0, twice[..(halfBytes / 2)], n);
                    for (int r = 0; r < 16; r++)
                    {
                        IQ4.XsToQ8_0x2Ref(pp + r * rowBytes, ph, n);
                        expected[c, r] = QuantTestUtil.Dot(&Q8_0.DotRef, 2 * n, halves, twice);
                        k.Dequantize(pp + r * rowBytes, pw, n);
                        for (int i = 0; i < n; i++) scale[c, r] += Math.Abs((double)w[i] * xq[i]);
                    }
                }
            var groups = new byte[16 * rowBytes];
            var converted = new byte[16 * (int)via.RowBytes(n)];
            var scales = new float[n / 32 * via.TileScaleFloats];
            var tile = new float[tt * 16];
            var one = new float[16];
            var four = new float[64];
            fixed (byte* pp = plain, pg = groups, pc = converted, pa = act)
            fixed (float* ps = scales, pt = tile, po = one, pf = four)
            {
                int convertedGroup = 8 * (int)via.RowBytes(n);
                for (int g = 0; g < 2; g++)
                {
                    k.Repack(pp + g * 8 * rowBytes, rowBytes, pg + g * 8 * rowBytes, n);
                    sv.Convert(pg + g * 8 * rowBytes, pc + g * convertedGroup, n);
                    sv.Dot(n, pg + g * 8 * rowBytes, pa, po + 8 * g);
                    sv.Dot4(n, pg + g * 8 * rowBytes, pa, actStride, pf + 32 * g);
                }
                sv.TileScales(n, pg, 8 * rowBytes, ps);
                via.RepackedTile(n, pc, convertedGroup, ps, pa, actStride, pt, 16);
            }
            for (int c = 0; c < tt; c++)
                for (int r = 0; r < 16; r++)
                {
                    double tol = 2e-6 * scale[c, r] + 1e-30;
                    Assert.True(Math.Abs(tile[16 * c + r] - expected[c, r]) <= tol,
                        $"{k.Isa} n={n} tile token {c} row {r}: {tile[16 * c + r]} vs {expected[c, r]}");
                    if (c < 4)
                    {
                        float got = four[32 * (r / 8) + 8 * c + r % 8];
                        Assert.True(Math.Abs(got - expected[c, r]) <= tol, $"{k.Isa} n={n} Dot4 token {c} row {r}: {got} vs {expected[c, r]}");
                    }
                    if (c == 0) Assert.True(Math.Abs(one[r] - expected[0, r]) <= tol, $"{k.Isa} n={n} Dot row {r}: {one[r]} vs {expected[0, r]}");
                }
        }
    }
}
