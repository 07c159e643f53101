using Infer.Kernels.Gpu.Kernels;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Gpu.Tests;

/// <summary>
/// The low-bit formats' word helpers on the host (the kernels' non-CUDA branch): IQ4's table looked up four indices at a time
/// against <see cref="IQ4Format.Values"/>, the byte permute against its definition, and Q3_K's q − 4 as signed bytes.
/// </summary>
public sealed class LowBitTests
{
    [Fact]
    public void KValuesLooksUpEveryIndexInEveryByte()
    {
        var values = IQ4Format.Values.ToArray();
        var rng = new Random(5);
        for (int trial = 0; trial < 2000; trial++)
        {
            int[] idx = [rng.Next(16), rng.Next(16), rng.Next(16), rng.Next(16)];
            if (trial < 16) idx = [trial, 15 - trial, trial, (trial + 3) & 15];
            int noise = rng.Next() & unchecked((int)0xF0F0F0F0); // the high nibbles are not the lookup's
            int nibbles = noise | idx[0] | (idx[1] << 8) | (idx[2] << 16) | (idx[3] << 24);
            int got = LowBit.KValues(nibbles);
            for (int k = 0; k < 4; k++) Assert.Equal(values[idx[k]], Numeric.SByte(got, k));
        }
    }

    [Fact]
    public void PermutePicksBytesOfTheEightByteOperand()
    {
        var rng = new Random(9);
        for (int trial = 0; trial < 1000; trial++)
        {
            int a = rng.Next() ^ (rng.Next() << 1), b = rng.Next() ^ (rng.Next() << 1), sel = rng.Next() & 0x7777;
            ulong ab = (uint)a | ((ulong)(uint)b << 32);
            int expected = 0;
            for (int k = 0; k < 4; k++) expected |= (int)((ab >> (8 * ((sel >> (4 * k)) & 7))) & 0xFF) << (8 * k);
            Assert.Equal(expected, LowBit.Permute(a, b, sel));
        }
    }

    [Fact]
    public void Signed3IsQuantMinusFourInEachByte()
    {
        for (int v = 0; v < 4096; v++)
        {
            int[] q = [v & 7, (v >> 3) & 7, (v >> 6) & 7, (v >> 9) & 7];
            int got = LowBit.Signed3(q[0] | (q[1] << 8) | (q[2] << 16) | (q[3] << 24));
            for (int k = 0; k < 4; k++) Assert.Equal(q[k] - 4, Numeric.SByte(got, k));
        }
    }
}
