using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Tests.Quants;

/// <summary>Blocks worked out by hand from ggml's reference algorithms, pinning the exact bytes (rounding mode, clamping, nibble order).</summary>
public class HandComputedBlockTests
{
    [Fact]
    public void Q8_0BlockWithUnitScale()
    {
        // amax = 127 → d = 127/127 = 1.0 exactly (fp16 0x3C00), id = 1. q = roundf(x): halfway cases go away from zero
        // (2.5 → 3, -2.5 → -3, 0.5 → 1), unlike round-to-even; 0.49999997 (just below 0.5) → 0.
        var x = new float[32];
        x[0] = 127; x[1] = 2.5f; x[2] = -2.5f; x[3] = 0.5f; x[4] = -0.5f; x[5] = 1.5f; x[6] = 0.49999997f; x[7] = 3.4f; x[8] = -126.6f;
        var expected = new byte[34];
        expected[0] = 0x00; expected[1] = 0x3C;
        sbyte[] q = [127, 3, -3, 1, -1, 2, 0, 3, -127];
        for (int j = 0; j < q.Length; j++) expected[2 + j] = (byte)q[j];
        Assert.Equal(expected, QuantTestUtil.Quantize(GgmlType.Q8_0, x));
    }

    [Fact]
    public void Q8_0FastQuantizerMatchesTheHandComputedBlock()
    {
        var x = new float[32];
        x[0] = 127; x[1] = 2.5f; x[2] = -2.5f; x[3] = 0.5f; x[4] = -0.5f; x[5] = 1.5f; x[6] = 0.49999997f; x[7] = 3.4f; x[8] = -126.6f;
        Assert.Equal(QuantTestUtil.Quantize(GgmlType.Q8_0, x), FastQ8_0(x));
    }

    internal static unsafe byte[] FastQ8_0(float[] x)
    {
        var y = new byte[x.Length / 32 * 34];
        fixed (float* px = x) fixed (byte* py = y) Q8_0.QuantizeFast(px, py, x.Length);
        return y;
    }

    [Fact]
    public void Q4_0BlockWithNegativeMax()
    {
        // The value of largest magnitude is -8 → d = max / -8 = 1.0 (fp16 0x3C00), id = 1.
        // q = min(15, (int8)(x*id + 8.5)): the cast truncates, so x = 0.4 → 8.9 → 8, x = 0.5 → 9, x = -0.5 → 8, x = -0.6 → 7.9 → 7,
        // x = 7 → 15.5 → 15, x = -8 → 0.5 → 0, x = 1.2 → 9.7 → 9, x = 0 → 8.
        // Element j sits in the low nibble of qs[j], element j + 16 in the high nibble.
        var x = new float[32];
        float[] first = [-8, 0.4f, 0.5f, -0.5f, -0.6f, 7, 1.2f];
        float[] second = [7, -8, 0, 1.2f, 0.5f, -0.6f, 0.4f];
        int[] qFirst = [0, 8, 9, 8, 7, 15, 9];
        int[] qSecond = [15, 0, 8, 9, 9, 7, 8];
        first.CopyTo(x, 0);
        second.CopyTo(x, 16);
        var expected = new byte[18];
        expected[0] = 0x00; expected[1] = 0x3C;
        for (int j = 0; j < 16; j++)
        {
            int lo = j < first.Length ? qFirst[j] : 8;   // zeros quantize to 8
            int hi = j < second.Length ? qSecond[j] : 8;
            expected[2 + j] = (byte)(lo | (hi << 4));
        }
        Assert.Equal(expected, QuantTestUtil.Quantize(GgmlType.Q4_0, x));
    }

    [Fact]
    public void Q4_0BlockWithPositiveMaxClampsAt15()
    {
        // Largest magnitude +8 → d = 8 / -8 = -1 (fp16 0xBC00), id = -1. x = 8 → -8 + 8.5 = 0.5 → 0;
        // x = -7 → 15.5 → 15; x = -8 → 16.5 → 16, clamped to 15 by min(15, ...); x = 0 → 8.
        var x = new float[32];
        x[0] = 8; x[1] = -7; x[2] = -8; x[16] = -8; x[17] = 8;
        var expected = new byte[18];
        expected[0] = 0x00; expected[1] = 0xBC;
        for (int j = 0; j < 16; j++) expected[2 + j] = 0x88;
        expected[2] = (byte)(0 | (15 << 4));
        expected[3] = (byte)(15 | (0 << 4));
        expected[4] = (byte)(15 | (8 << 4));
        Assert.Equal(expected, QuantTestUtil.Quantize(GgmlType.Q4_0, x));
    }

    [Fact]
    public void Q8_KBlockUsesMinus127OverSignedMax()
    {
        // max (largest magnitude, signed) = -254 → iscale = -127 / -254 = 0.5, d = 1/iscale = 2.
        // q = min(127, nearest_int(0.5 x)): nearest_int rounds half to even: 1 → 0.5 → 0, 3 → 1.5 → 2, -254 → -127, 5 → 2.5 → 2.
        // bsums[0] = -127 + 0 + 2 + 2 = -123.
        var x = new float[256];
        x[0] = -254; x[1] = 1; x[2] = 3; x[3] = 5; x[16] = 200;
        byte[] q = QuantTestUtil.Quantize(GgmlType.Q8_K, x);
        Assert.Equal(2.0f, BitConverter.ToSingle(q, 0));
        Assert.Equal(-127, (sbyte)q[4]);
        Assert.Equal(0, (sbyte)q[5]);
        Assert.Equal(2, (sbyte)q[6]);
        Assert.Equal(2, (sbyte)q[7]);
        Assert.Equal(100, (sbyte)q[4 + 16]);
        Assert.Equal(-123, BitConverter.ToInt16(q, 260));
        Assert.Equal(100, BitConverter.ToInt16(q, 262));
    }

    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.Q8_K)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q8_0)]
    public void AllZeroInputGivesAllZeroBlocks(GgmlType type)
    {
        // Every reference quantizer maps an all-zero block to zero levels and d = 0, except Q4_0: there d = max / -8 with max = 0.0f
        // gives -0.0f (fp16 0x8000, bytes 00 80), and each nibble holds level 8 (= 0).
        byte[] q = QuantTestUtil.Quantize(type, new float[512]);
        int ts = GgmlTypeInfo.TypeSize(type);
        for (int i = 0; i < q.Length; i++)
        {
            byte expected = type != GgmlType.Q4_0 ? (byte)0 : i % ts == 0 ? (byte)0 : i % ts == 1 ? (byte)0x80 : (byte)0x88;
            Assert.Equal(expected, q[i]);
        }
    }
}
