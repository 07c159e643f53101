using System.Runtime.Intrinsics;
using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Tests.Quants;

/// <summary>The repacked kernels' 8-wide fp16 scale conversion against the scalar reference, for every half value.</summary>
public unsafe class HalfScalesTests
{
    [Fact]
    public void Load8ScaledTimesUnbiasMatchesReferenceForEveryHalf()
    {
        Assert.SkipUnless(Isa.HasAvx2, Isa.NoAvx2); // the conversion is only called from AVX2 kernels
        var halves = new ushort[65536];
        for (int i = 0; i < halves.Length; i++) halves[i] = (ushort)i;
        var lane = new float[8];
        fixed (ushort* h = halves)
        fixed (float* o = lane)
        {
            for (int i = 0; i < 65536; i += 8)
            {
                (HalfScales.Load8Scaled(h + i) * HalfScales.Unbias).Store(o);
                for (int e = 0; e < 8; e++)
                {
                    float expected = HalfBits.ToFloatRef((ushort)(i + e));
                    if (float.IsNaN(expected)) Assert.True(float.IsNaN(lane[e]), $"half 0x{i + e:X4}: {lane[e]}, expected NaN");
                    else Assert.True(BitConverter.SingleToUInt32Bits(expected) == BitConverter.SingleToUInt32Bits(lane[e]),
                        $"half 0x{i + e:X4}: {lane[e]} vs {expected}");
                }
            }
        }
    }

    [Fact]
    public void ScaledProductRoundsLikeTheDirectProduct()
    {
        Assert.SkipUnless(Isa.HasAvx2, Isa.NoAvx2);
        var rnd = new Random(7);
        var h = new ushort[8];
        var lane = new float[8];
        for (int t = 0; t < 20000; t++)
        {
            for (int e = 0; e < 8; e++) h[e] = (ushort)rnd.Next(0, 0x7C00); // finite, positive (sign is a bit flip either way)
            ushort yh = (ushort)rnd.Next(0, 0x7C00);
            float y = HalfBits.ToFloatRef(yh);
            fixed (ushort* ph = h)
            fixed (float* o = lane)
                (HalfScales.Load8Scaled(ph) * (y * HalfScales.Unbias)).Store(o);
            for (int e = 0; e < 8; e++)
                Assert.Equal(BitConverter.SingleToUInt32Bits(HalfBits.ToFloatRef(h[e]) * y), BitConverter.SingleToUInt32Bits(lane[e]));
        }
    }
}
