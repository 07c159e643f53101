using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Tests.Quants;

public unsafe class QuantMatMulTests
{
    /// <summary>Integer sums are exact; float accumulation order differs (relative to Σ|w·a| of the row).</summary>
    private const double DotRelTolerance = 2e-6;

    public static TheoryData<GgmlType, bool> Cases()
    {
        var data = new TheoryData<GgmlType, bool>();
        foreach (var t in new[] { GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q5_0, GgmlType.BF16, GgmlType.F32 })
        {
            data.Add(t, false);
            if (QuantKernels.Get(t).RepackRows > 0) data.Add(t, true);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatMulMatchesRowByRowDots(GgmlType type, bool repacked)
    {
        var k = QuantKernels.Get(type);
        int n = Math.Max(k.BlockSize, 32) * 3;
        const int rows = 8 * 9 + 3; // groups, a partial tile and a plain tail
        int rowBytes = (int)k.RowBytes(n);
        var w = new byte[rows * rowBytes];
        for (int r = 0; r < rows; r++) QuantTestUtil.Quantize(type, QuantTestUtil.RandomData(n, 1000 + r, 0.05f)).CopyTo(w, r * rowBytes);
        var packed = new byte[w.Length];
        const int tokens = 7;
        int actStride = (int)k.ActivationRowBytes(n) + 8;
        var act = new byte[tokens * actStride];
        var abs = new double[tokens, rows];
        var expected = new float[tokens, rows];
        for (int t = 0; t < tokens; t++)
        {
            float[] x = QuantTestUtil.RandomData(n, 77 + t, 1.5f);
            fixed (float* px = x) fixed (byte* pa = &act[t * actStride])
            {
                if (k.QuantizeActivations != null) k.QuantizeActivations(px, pa, n);
                else Buffer.MemoryCopy(px, pa, n * 4, n * 4);
            }
            byte[] row = act.AsSpan(t * actStride, (int)GgmlTypeInfo.RowBytes(k.VecDotType, n)).ToArray();
            float[] af = QuantTestUtil.Dequantize(k.VecDotType, row, n);
            for (int r = 0; r < rows; r++)
            {
                byte[] wr = w.AsSpan(r * rowBytes, rowBytes).ToArray();
                expected[t, r] = QuantTestUtil.Dot(k.Dot, n, wr, row);
                float[] wf = QuantTestUtil.Dequantize(type, wr, n);
                for (int i = 0; i < n; i++) abs[t, r] += Math.Abs((double)wf[i] * af[i]);
            }
        }
        const int yStride = rows + 5;
        var y = new float[tokens * yStride];
        fixed (byte* pw = w, pp = packed, pa = act)
        fixed (float* py = y)
        {
            byte* weights = pw;
            if (repacked)
            {
                QuantMatMul.Repack(k, pw, pp, rows, n);
                weights = pp;
            }
            // two calls, as two threads would split the rows
            QuantMatMul.MatMul(k, weights, repacked, n, rows, pa, actStride, tokens, py, yStride, 0, 16);
            QuantMatMul.MatMul(k, weights, repacked, n, rows, pa, actStride, tokens, py, yStride, 16, rows);
        }
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
                Assert.True(Math.Abs(y[t * yStride + r] - expected[t, r]) <= DotRelTolerance * abs[t, r] + 1e-30,
                    $"{type} repacked={repacked} token {t} row {r}: {y[t * yStride + r]} vs {expected[t, r]}");
    }

    [Fact]
    public void RepackedSplitsMustBeGroupAligned()
    {
        var k = QuantKernels.Get(GgmlType.Q4_0);
        if (k.RepackRows == 0)
        {
            Assert.Throws<NotSupportedException>(() => QuantMatMul.MatMul(k, null, true, 32, 16, null, 0, 1, null, 16, 0, 16));
            return;
        }
        Assert.Throws<ArgumentException>(() => QuantMatMul.MatMul(k, null, true, 32, 16, null, 0, 1, null, 16, 3, 16));
        Assert.Throws<ArgumentOutOfRangeException>(() => QuantMatMul.MatMul(k, null, false, 32, 16, null, 0, 1, null, 16, 0, 17));
    }
}
