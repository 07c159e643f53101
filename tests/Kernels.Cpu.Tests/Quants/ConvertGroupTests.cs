using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Formats;
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
}
