using System.Runtime.InteropServices;
using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Tests.Quants;

/// <summary>
/// The repacked kernels at the ends of their integer ranges: weight rows of random bytes (every quant, scale and min pattern),
/// one block of all bits set (every quant at its maximum), against activation rows whose quants sit at the ends of their range
/// (the quantizer of ±1 inputs gives ±127 for Q8_0 and Q8_1, −128 and 127 for Q8_K). The 256-bit AVX2 pairs and the 512-bit
/// int16 sums must neither saturate nor overflow: GEMV, 4-token dot and tile equal the scalar reference dot.
/// </summary>
public unsafe class RepackedRangeTests
{
    /// <summary>As <see cref="RepackedKernelTests"/>: integer sums are exact, float accumulation order differs.</summary>
    private const double DotRelTolerance = 2e-6;

    private static readonly QuantKernels.IsaLevel[] Levels =
    [
        QuantKernels.IsaLevel.Best, QuantKernels.IsaLevel.Avx512, QuantKernels.IsaLevel.AvxVnni, QuantKernels.IsaLevel.Avx2,
    ];

    public static TheoryData<GgmlType, QuantKernels.IsaLevel, bool> Cases()
    {
        var data = new TheoryData<GgmlType, QuantKernels.IsaLevel, bool>();
        foreach (var type in Isa.Repacked)
            foreach (var level in Levels)
                data.Add(type, level, true);
        foreach (var type in Isa.GeneratedTypes)
            foreach (var level in Isa.GeneratedLevels)
                data.Add(type, level, false);
        return data;
    }

    /// <summary>Offsets of the fp16 fields in a block of <paramref name="type"/> (they get finite, moderate values).</summary>
    private static int[] HalfOffsets(GgmlType type) => type switch
    {
        GgmlType.Q4_0 or GgmlType.Q8_0 or GgmlType.Q5_0 or GgmlType.IQ4_NL or GgmlType.IQ4_XS => [0],
        GgmlType.Q4_1 or GgmlType.Q5_1 or GgmlType.Q4_K or GgmlType.Q5_K => [0, 2],
        GgmlType.Q6_K => [Q6_KFormat.DOffset],
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void RepackedKernelsMatchReferenceAtRangeLimits(GgmlType type, QuantKernels.IsaLevel level, bool generated)
    {
        Isa.RequireWithoutGenerated(generated);
        Isa.RequireSimd(type, level);
        var k = QuantKernels.Get(type, level, generated);
        Assert.Equal(8, k.RepackRows);
        var reference = QuantKernels.Get(type, QuantKernels.IsaLevel.Scalar);
        var rng = new Random((int)type * 7 + (int)level);
        int bs = k.BlockSize;
        foreach (int blocks in bs == 32 ? new[] { 1, 3, 9, 16 } : new[] { 1, 3 })
        {
            int n = blocks * bs, rowBytes = (int)k.RowBytes(n), actBytes = (int)k.ActivationRowBytes(n);
            var plain = new byte[QuantKernel.TileRows * rowBytes];
            rng.NextBytes(plain);
            for (int r = 0; r < QuantKernel.TileRows; r++)
                for (int b = 0; b < blocks; b++)
                {
                    int o = r * rowBytes + b * k.TypeSize;
                    if (b == blocks / 2 || r % 5 == 0) plain.AsSpan(o, k.TypeSize).Fill(0xFF); // every quant at its maximum
                    foreach (int h in HalfOffsets(type))
                        BitConverter.TryWriteBytes(plain.AsSpan(o + h), HalfBits.FromFloat((float)(0.001 + 0.01 * rng.NextDouble())));
                }
            int tokens = Math.Max(4, k.TileTokens);
            var act = new byte[tokens * actBytes];
            var x = new float[n];
            for (int c = 0; c < tokens; c++)
            {
                // all +1, all -1, then random signs: quants at both ends of the activation range
                for (int i = 0; i < n; i++) x[i] = c == 0 ? 1 : c == 1 ? -1 : rng.Next(2) == 0 ? 1 : -1;
                fixed (float* px = x) fixed (byte* pa = &act[c * actBytes]) k.QuantizeActivations(px, pa, n);
            }
            var one = new float[8];
            var four = new float[32];
            var tile = new float[tokens * QuantKernel.TileRows];
            var scales = new float[Math.Max(1, blocks * k.TileScaleFloats)];
            byte* packed = (byte*)NativeMemory.AlignedAlloc((nuint)plain.Length, 64);
            try
            {
                fixed (byte* pPlain = plain, pAct = act)
                fixed (float* pOne = one, pFour = four, pTile = tile, pScales = scales)
                {
                    k.Repack(pPlain, rowBytes, packed, n);
                    k.Repack(pPlain + 8 * rowBytes, rowBytes, packed + 8 * rowBytes, n);
                    if (k.RepackedTile != null)
                    {
                        k.RepackedTileScales(n, packed, 8 * rowBytes, pScales);
                        for (int c = 0; c + k.TileTokens <= tokens; c += k.TileTokens)
                            k.RepackedTile(n, packed, 8 * rowBytes, pScales, pAct + c * actBytes, actBytes, pTile + c * QuantKernel.TileRows,
                                QuantKernel.TileRows);
                    }
                    for (int g = 0; g < 2; g++)
                    {
                        byte* group = packed + g * 8 * rowBytes;
                        k.RepackedDot4(n, group, pAct, actBytes, pFour);
                        for (int c = 0; c < tokens; c++)
                        {
                            k.RepackedDot(n, group, pAct + c * actBytes, pOne);
                            for (int r = 0; r < 8; r++)
                            {
                                int row = 8 * g + r;
                                byte* w = pPlain + row * rowBytes, a = pAct + c * actBytes;
                                float expected = reference.Dot(n, w, a);
                                double tol = DotRelTolerance * QuantTestUtil.AbsDot(type, w, k.VecDotType, a, n) + 1e-30;
                                string at = $"{type} {k.Isa} n={n} token {c} row {row}";
                                Assert.True(Math.Abs(one[r] - expected) <= tol, $"{at} Dot: {one[r]} vs {expected}");
                                if (c < 4) Assert.True(Math.Abs(four[c * 8 + r] - expected) <= tol, $"{at} Dot4: {four[c * 8 + r]} vs {expected}");
                                if (k.RepackedTile != null)
                                {
                                    float got = tile[c * QuantKernel.TileRows + row];
                                    Assert.True(Math.Abs(got - expected) <= tol, $"{at} tile: {got} vs {expected}");
                                }
                            }
                        }
                    }
                }
            }
            finally
            {
                NativeMemory.AlignedFree(packed);
            }
        }
    }
}
