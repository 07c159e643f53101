using Infer.Runtime.Formats;

namespace Infer.Runtime.Tests.Formats;

public class FloatConversionTests
{
    [Fact]
    public void Fp16ToFloatMatchesSystemHalfForEveryValue()
    {
        for (int i = 0; i < 65536; i++)
        {
            var h = BitConverter.UInt16BitsToHalf((ushort)i);
            float expected = (float)h;
            if (float.IsNaN(expected))
            {
                Assert.True(float.IsNaN(HalfBits.ToFloat((ushort)i)));
                continue;
            }
            Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(HalfBits.ToFloatRef((ushort)i)));
            Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(HalfBits.ToFloat((ushort)i)));
        }
    }

    [Fact]
    public void Fp16FromFloatRoundsToNearestEvenLikeSystemHalf()
    {
        var rng = new Random(7);
        var values = new List<float>();
        // every half value and every midpoint between neighbours (the tie cases), plus random bit patterns
        for (int i = 0; i < 0x7C00; i++)
        {
            float a = HalfBits.ToFloatRef((ushort)i), b = HalfBits.ToFloatRef((ushort)(i + 1));
            values.Add(a); values.Add(-a); values.Add((a + b) / 2); values.Add(-(a + b) / 2);
            values.Add(BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits((a + b) / 2) + 1));
            values.Add(BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits((a + b) / 2) - 1));
        }
        for (int i = 0; i < 200_000; i++) values.Add(BitConverter.Int32BitsToSingle(rng.Next(int.MinValue, int.MaxValue)));
        values.AddRange([float.PositiveInfinity, float.NegativeInfinity, 65504f, 65520f, 65519.99f, 1e-8f, 5.96e-8f, 2.98e-8f, 0f, -0f]);
        foreach (float f in values)
        {
            if (float.IsNaN(f)) continue;
            ushort expected = BitConverter.HalfToUInt16Bits((Half)f);
            Assert.Equal(expected, HalfBits.FromFloat(f));
        }
    }

    [Fact]
    public void Fp16FromFloatNaNIsQuietWithSign()
    {
        Assert.Equal(0x7E00, HalfBits.FromFloat(float.NaN) & 0x7FFF);
        Assert.Equal(0x7E00, HalfBits.FromFloat(BitConverter.UInt32BitsToSingle(0x7F800001)));
        Assert.Equal(0xFE00, HalfBits.FromFloat(BitConverter.UInt32BitsToSingle(0xFFC00000)));
    }

    [Fact]
    public void Bf16RoundsToNearestEvenAndQuietsNaN()
    {
        // 1 + 2^-8 lies exactly between bf16 0x3F80 (1.0) and 0x3F81: ties go to the even mantissa 0x3F80
        Assert.Equal(0x3F80, BFloat16Bits.FromFloat(BitConverter.UInt32BitsToSingle(0x3F808000)));
        // 0x3F818000 lies between 0x3F81 and 0x3F82: the even one is 0x3F82
        Assert.Equal(0x3F82, BFloat16Bits.FromFloat(BitConverter.UInt32BitsToSingle(0x3F818000)));
        // just above the tie rounds up
        Assert.Equal(0x3F81, BFloat16Bits.FromFloat(BitConverter.UInt32BitsToSingle(0x3F808001)));
        // largest finite float rounds up to infinity
        Assert.Equal(0x7F80, BFloat16Bits.FromFloat(float.MaxValue));
        Assert.Equal(0x7F80, BFloat16Bits.FromFloat(float.PositiveInfinity));
        Assert.Equal(0xFF80, BFloat16Bits.FromFloat(float.NegativeInfinity));
        // signalling NaN 0x7F800001 keeps sign and top bits, forced quiet with bit 6: 0x7F80 | 64 = 0x7FC0
        Assert.Equal(0x7FC0, BFloat16Bits.FromFloat(BitConverter.UInt32BitsToSingle(0x7F800001)));
        Assert.Equal(0xFFC1, BFloat16Bits.FromFloat(BitConverter.UInt32BitsToSingle(0xFFC1FFFF)));
        Assert.Equal(1.0f, BFloat16Bits.ToFloat(0x3F80));
        Assert.Equal(-2.0f, BFloat16Bits.ToFloat(0xC000));
    }
}
