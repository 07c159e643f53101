using Infer.Kernels.Gpu.Kernels;

namespace Infer.Kernels.Gpu.Tests;

/// <summary>
/// The kernels' integer float32 → half conversion (the f16 KV cache's store) against System.Half's cast, the rounding the CPU
/// backend's f16 cache uses: every tie, both sides of every rounding boundary, subnormals, overflow, and a sweep of the whole
/// float32 bit range. The half → float32 read back is checked over all 65,536 halves.
/// </summary>
public sealed class HalfConversionTests
{
    private static ushort Reference(float x) => BitConverter.HalfToUInt16Bits((Half)x);

    private static void Check(uint bits)
    {
        float x = BitConverter.UInt32BitsToSingle(bits);
        ushort actual = Numeric.FloatToHalf(x);
        if (float.IsNaN(x))
        {
            Assert.True((actual & 0x7C00) == 0x7C00 && (actual & 0x3FF) != 0, $"NaN 0x{bits:X8} -> 0x{actual:X4}, not a NaN");
            Assert.Equal(bits >> 31, (uint)actual >> 15);
            return;
        }
        ushort expected = Reference(x);
        Assert.True(expected == actual, $"{x:R} (0x{bits:X8}): 0x{actual:X4}, System.Half gives 0x{expected:X4}");
    }

    [Fact]
    public void EveryHalfsBoundaryAndTieRoundsAsSystemHalf()
    {
        // Each half h (both signs): its own value, the midpoint to the next half (a tie), and the floats either side of both.
        for (int h = 0; h < 0x7C00; h++)
        {
            double v = (double)BitConverter.UInt16BitsToHalf((ushort)h);
            double next = h + 1 < 0x7C00 ? (double)BitConverter.UInt16BitsToHalf((ushort)(h + 1)) : 65536.0;
            foreach (double d in new[] { v, (v + next) / 2 })
            {
                uint bits = BitConverter.SingleToUInt32Bits((float)d);
                foreach (uint b in new[] { bits - 1, bits, bits + 1 })
                {
                    if (b == uint.MaxValue) continue;
                    Check(b);
                    Check(b | 0x80000000u);
                }
            }
        }
    }

    [Fact]
    public void SpecialValuesAndAStrideOverAllFloatsRoundAsSystemHalf()
    {
        float[] specials =
        [
            0f, -0f, float.Epsilon, -float.Epsilon, float.MaxValue, float.MinValue, float.PositiveInfinity, float.NegativeInfinity,
            float.NaN, 65504f, 65519.99f, 65520f, 65536f, 1e-8f, 2.9802322e-8f /* 2^-25 */, 2.9802326e-8f, 5.9604645e-8f /* 2^-24 */,
            6.097555e-5f /* largest subnormal half */, 6.1035156e-5f /* 2^-14 */, 1f, -1f, 0.1f, 3.14159f,
        ];
        foreach (float x in specials) Check(BitConverter.SingleToUInt32Bits(x));
        Check(0x7FC00001u); // a quiet NaN with a payload
        Check(0xFF800001u); // a signalling NaN, negative
        for (ulong bits = 0; bits <= uint.MaxValue; bits += 4099) Check((uint)bits);
    }

    /// <summary>The q8_0 cache store's roundf against .NET's away-from-zero rounding, at and beside every half step to ±128.</summary>
    [Fact]
    public void RoundHalfAwayMatchesRoundAwayFromZero()
    {
        for (int i = -256; i <= 256; i++)
        {
            uint bits = BitConverter.SingleToUInt32Bits(i / 2f);
            foreach (uint b in new[] { bits - 1, bits, bits + 1 })
            {
                float x = BitConverter.UInt32BitsToSingle(b);
                if (float.IsNaN(x)) continue;
                int expected = (int)MathF.Round(x, MidpointRounding.AwayFromZero);
                Assert.True(expected == Numeric.RoundHalfAway(x), $"{x:R}: {Numeric.RoundHalfAway(x)}, expected {expected}");
            }
        }
        var rng = new Random(5);
        for (int i = 0; i < 100_000; i++)
        {
            float x = (float)(rng.NextDouble() * 300 - 150);
            Assert.Equal((int)MathF.Round(x, MidpointRounding.AwayFromZero), Numeric.RoundHalfAway(x));
        }
    }

    [Fact]
    public void EveryHalfReadsBackExactly()
    {
        for (int h = 0; h < 65536; h++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)h);
            float actual = Numeric.HalfToFloat(h);
            if (float.IsNaN(expected)) Assert.True(float.IsNaN(actual), $"half 0x{h:X4}");
            else Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(actual));
        }
    }
}
