using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Tests.Quants;

/// <summary>Every vectorized dot against the scalar reference dot of the same format, at every instruction-set level this CPU has.</summary>
public unsafe class DotKernelTests
{
    /// <summary>
    /// The integer parts are exact; only the float accumulation order differs between SIMD and reference,
    /// so the allowed difference is relative to Σ|w·a| (the size of what was summed).
    /// </summary>
    private const double DotRelTolerance = 2e-6;

    public static TheoryData<GgmlType, QuantKernels.IsaLevel> Cases()
    {
        var data = new TheoryData<GgmlType, QuantKernels.IsaLevel>();
        foreach (var t in QuantKernels.SupportedWeightTypes)
            foreach (var level in new[] { QuantKernels.IsaLevel.Best, QuantKernels.IsaLevel.Avx2, QuantKernels.IsaLevel.Scalar })
                data.Add(t, level);
        return data;
    }

    private static IEnumerable<int> Lengths(GgmlType type)
    {
        var k = QuantKernels.Get(type);
        int bs = Math.Max(k.BlockSize, k.VecDotBlockSize);
        if (bs == 1)
        {
            for (int n = 0; n <= 256; n++) yield return n;
            foreach (int n in new[] { 1023, 4097, 14335 }) yield return n;
        }
        else
        {
            for (int b = 1; b <= 16; b++) yield return b * bs;
            foreach (int n in bs == 32 ? new[] { 4096, 14336, 32 * 137 } : new[] { 4096, 14336, 256 * 37 }) yield return n;
        }
    }

    private static delegate*<int, byte*, byte*, float> ReferenceDot(GgmlType type) => type switch
    {
        GgmlType.F32 => &F32.DotRef,
        GgmlType.F16 => &F16.DotRef,
        GgmlType.BF16 => &BF16.DotRef,
        GgmlType.Q8_0 => &Q8_0.DotRef,
        GgmlType.Q4_0 => &Q4_0.DotRef,
        GgmlType.Q4_1 => &Q4_1.DotRef,
        GgmlType.Q5_0 => &Q5_0.DotRef,
        GgmlType.Q5_1 => &Q5_1.DotRef,
        GgmlType.Q2_K => &Q2_K.DotRef,
        GgmlType.Q3_K => &Q3_K.DotRef,
        GgmlType.IQ4_NL => &IQ4.DotNlRef,
        GgmlType.IQ4_XS => &IQ4.DotXsRef,
        GgmlType.Q4_K => &Q4_K.DotRef,
        GgmlType.Q5_K => &Q5_K.DotRef,
        GgmlType.Q6_K => &Q6_K.DotRef,
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void DotMatchesReference(GgmlType type, QuantKernels.IsaLevel level)
    {
        Isa.RequireSimd(type, level);
        var k = QuantKernels.Get(type, level);
        var reference = ReferenceDot(type);
        int seed = 1;
        foreach (int n in Lengths(type))
        {
            float[] x = QuantTestUtil.RandomData(n, seed++, 0.05f);
            float[] y = QuantTestUtil.RandomData(n, seed++, 3.0f);
            byte[] w = QuantTestUtil.Quantize(type, x);
            byte[] a = QuantTestUtil.Quantize(k.VecDotType, y);
            float expected = QuantTestUtil.Dot(reference, n, w, a);
            float actual = QuantTestUtil.Dot(k.Dot, n, w, a);
            double tol = DotRelTolerance * QuantTestUtil.AbsDot(type, w, k.VecDotType, a, n) + 1e-30;
            Assert.True(Math.Abs(actual - expected) <= tol, $"{type} {k.Isa} n={n}: simd {actual} vs reference {expected} (tolerance {tol})");
        }
    }

    /// <summary>
    /// Each format's scalar reference dot against the dot of the dequantized rows in double (the dequantizers are checked against
    /// ggml's own bytes and values in Runtime.Tests): the references' integer sums and scale order are right.
    /// </summary>
    [Theory]
    [MemberData(nameof(QuantTypes))]
    public void ReferenceDotEqualsTheDotOfTheDequantizedRows(GgmlType type)
    {
        var k = QuantKernels.Get(type, QuantKernels.IsaLevel.Scalar);
        int seed = 500;
        foreach (int n in Lengths(type))
        {
            byte[] w = QuantTestUtil.Quantize(type, QuantTestUtil.RandomData(n, seed++, 0.05f));
            byte[] a = QuantTestUtil.Quantize(k.VecDotType, QuantTestUtil.RandomData(n, seed++, 3.0f));
            float[] wf = QuantTestUtil.Dequantize(type, w, n), af = QuantTestUtil.Dequantize(k.VecDotType, a, n);
            double exact = 0;
            for (int i = 0; i < n; i++) exact += (double)wf[i] * af[i];
            float actual = QuantTestUtil.Dot(ReferenceDot(type), n, w, a);
            double tol = DotRelTolerance * QuantTestUtil.AbsDot(type, w, k.VecDotType, a, n) + 1e-30;
            Assert.True(Math.Abs(actual - exact) <= tol, $"{type} n={n}: reference dot {actual} vs dequantized {exact} (tolerance {tol})");
        }
    }

    /// <summary>
    /// The formats dotted with Q8_0 or Q8_K activations. Not Q4_1 and Q5_1: ggml's Q8_1 activations carry s = d·Σq rounded to
    /// fp16, which the min term uses instead of the exact sum (as ggml does), so they differ from the dequantized dot by design.
    /// </summary>
    public static TheoryData<GgmlType> QuantTypes() =>
        [.. QuantKernels.SupportedWeightTypes.Where(t => QuantKernels.Get(t).VecDotType is GgmlType.Q8_0 or GgmlType.Q8_K)];

    /// <summary>
    /// Q3_K → Q8_0 for the prompt GEMM: the vector conversion writes the reference's bytes, and the Q8_0 rows dequantize to the
    /// Q3_K rows' values exactly.
    /// </summary>
    [Fact]
    public void Q3_KToQ8_0IsExact()
    {
        Isa.RequireSimd(GgmlType.Q3_K, QuantKernels.IsaLevel.Avx2);
        foreach (int n in Lengths(GgmlType.Q3_K))
        {
            byte[] w = QuantTestUtil.Quantize(GgmlType.Q3_K, QuantTestUtil.RandomData(n, n, 0.05f));
            // every scale and every quant, including sc − 32 = −32 with q − 4 = −4 (the product 128 is stored negated: −128)
            if (n == 256) { Array.Fill<byte>(w, 0, 0, 96); Array.Fill<byte>(w, 0, 96, 12); }
            var expected = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_0, n)];
            var actual = new byte[expected.Length];
            fixed (byte* pw = w, pe = expected, pa = actual)
            {
                Q3_K.ToQ8_0Ref(pw, pe, n);
                Q3_K.ToQ8_0(pw, pa, n);
            }
            Assert.Equal(expected, actual);
            float[] a = QuantTestUtil.Dequantize(GgmlType.Q3_K, w, n), b = QuantTestUtil.Dequantize(GgmlType.Q8_0, actual, n);
            for (int i = 0; i < n; i++) Assert.True(a[i] == b[i], $"n={n} element {i}: Q3_K {a[i]}, as Q8_0 {b[i]}");
        }
    }

    /// <summary>
    /// IQ4_XS → two Q8_0 halves for the prompt GEMM: the vector conversion writes the reference's bytes, and the halves' values sum
    /// to the IQ4_XS row's exactly.
    /// </summary>
    [Fact]
    public void IQ4_XSToTwoQ8_0HalvesIsExact()
    {
        Isa.RequireSimd(GgmlType.IQ4_XS, QuantKernels.IsaLevel.Avx2);
        foreach (int n in Lengths(GgmlType.IQ4_XS))
        {
            byte[] w = QuantTestUtil.Quantize(GgmlType.IQ4_XS, QuantTestUtil.RandomData(n, n + 5, 0.05f));
            if (n == 256) { w[2] = 0; w[3] = 0; Array.Fill<byte>(w, 0, 4, 4); } // every ls - 32 = -32 (with kvalue -127: 4064)
            var expected = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_0, 2 * n)];
            var actual = new byte[expected.Length];
            fixed (byte* pw = w, pe = expected, pa = actual)
            {
                IQ4.XsToQ8_0x2Ref(pw, pe, n);
                IQ4.XsToQ8_0x2(pw, pa, n);
            }
            Assert.Equal(expected, actual);
            float[] a = QuantTestUtil.Dequantize(GgmlType.IQ4_XS, w, n), b = QuantTestUtil.Dequantize(GgmlType.Q8_0, actual, 2 * n);
            for (int i = 0; i < n; i++) Assert.True(a[i] == b[i] + b[n + i], $"n={n} element {i}: {a[i]} vs {b[i]} + {b[n + i]}");
        }
    }

    /// <summary>IQ4_NL → Q8_0 for the prompt GEMM: the vector conversion writes the reference's bytes and the same values.</summary>
    [Fact]
    public void IQ4_NLToQ8_0IsExact()
    {
        Isa.RequireSimd(GgmlType.IQ4_NL, QuantKernels.IsaLevel.Avx2);
        foreach (int n in Lengths(GgmlType.IQ4_NL))
        {
            byte[] w = QuantTestUtil.Quantize(GgmlType.IQ4_NL, QuantTestUtil.RandomData(n, n + 3, 0.05f));
            var expected = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_0, n)];
            var actual = new byte[expected.Length];
            fixed (byte* pw = w, pe = expected, pa = actual)
            {
                IQ4.NlToQ8_0Ref(pw, pe, n);
                IQ4.NlToQ8_0(pw, pa, n);
            }
            Assert.Equal(expected, actual);
            Assert.Equal(QuantTestUtil.Dequantize(GgmlType.IQ4_NL, w, n), QuantTestUtil.Dequantize(GgmlType.Q8_0, actual, n));
        }
    }

    /// <summary>
    /// Q2_K → Q8_0 for the prompt GEMM: the vector conversion writes the reference's bytes, and the Q8_0 rows plus the group offsets
    /// (<see cref="Q2_K.RowMins"/>) give the Q2_K rows' values.
    /// </summary>
    [Fact]
    public void Q2_KToQ8_0PlusGroupOffsetsIsTheRow()
    {
        Isa.RequireSimd(GgmlType.Q2_K, QuantKernels.IsaLevel.Avx2);
        foreach (int n in Lengths(GgmlType.Q2_K))
        {
            byte[] w = QuantTestUtil.Quantize(GgmlType.Q2_K, QuantTestUtil.RandomData(n, n + 7, 0.05f));
            var expected = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_0, n)];
            var actual = new byte[expected.Length];
            var mins = new float[n / 16];
            fixed (byte* pw = w, pe = expected, pa = actual)
            fixed (float* pm = mins)
            {
                Q2_K.ToQ8_0Ref(pw, pe, n);
                Q2_K.ToQ8_0(pw, pa, n);
                Q2_K.RowMins(pw, pm, n);
            }
            Assert.Equal(expected, actual);
            float[] a = QuantTestUtil.Dequantize(GgmlType.Q2_K, w, n), b = QuantTestUtil.Dequantize(GgmlType.Q8_0, actual, n);
            for (int i = 0; i < n; i++)
                Assert.True(Math.Abs(a[i] - (b[i] + mins[i / 16])) <= 1e-6 * Math.Abs(a[i]) + 1e-9,
                    $"n={n} element {i}: {a[i]} vs {b[i]} + {mins[i / 16]}");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Dot4MatchesFourReferenceDots(GgmlType type, QuantKernels.IsaLevel level)
    {
        Isa.RequireSimd(type, level);
        var k = QuantKernels.Get(type, level);
        var reference = ReferenceDot(type);
        int seed = 100;
        foreach (int n in Lengths(type).Where((_, i) => i % 3 == 0))
        {
            float[] x = QuantTestUtil.RandomData(n, seed++, 0.05f);
            byte[] w = QuantTestUtil.Quantize(type, x);
            int rowBytes = (int)k.ActivationRowBytes(n);
            int stride = rowBytes + 40; // a padded stride, as a GEMM's activation matrix may have
            var a = new byte[4 * stride];
            var rows = new byte[4][];
            for (int r = 0; r < 4; r++)
            {
                rows[r] = QuantTestUtil.Quantize(k.VecDotType, QuantTestUtil.RandomData(n, seed++, 2.0f));
                rows[r].CopyTo(a, r * stride);
            }
            var result = new float[4];
            fixed (byte* pw = w, pa = a) fixed (float* pr = result) k.Dot4(n, pw, pa, stride, pr);
            for (int r = 0; r < 4; r++)
            {
                float expected = QuantTestUtil.Dot(reference, n, w, rows[r]);
                double tol = DotRelTolerance * QuantTestUtil.AbsDot(type, w, k.VecDotType, rows[r], n) + 1e-30;
                Assert.True(Math.Abs(result[r] - expected) <= tol, $"{type} {k.Isa} n={n} row {r}: {result[r]} vs {expected}");
            }
        }
    }

    [Theory]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    public void Dot4x4MatchesSixteenReferenceDots(GgmlType type)
    {
        var k = QuantKernels.Get(type);
        if (k.Dot4x4 == null)
        {
            Assert.False(System.Runtime.Intrinsics.X86.Avx512F.IsSupported); // only AVX-512 machines have the tile; the plain Dot4 is tested above
            Assert.Skip(Isa.NoAvx512);
        }
        var reference = ReferenceDot(type);
        int seed = 300;
        foreach (int n in Lengths(type))
        {
            int wStride = (int)k.RowBytes(n) + 6, aStride = n * 4 + 24; // padded strides, as in a weight matrix and an activation batch
            var w = new byte[4 * wStride];
            var a = new byte[4 * aStride];
            var wRows = new byte[4][];
            var aRows = new byte[4][];
            for (int r = 0; r < 4; r++)
            {
                wRows[r] = QuantTestUtil.Quantize(type, QuantTestUtil.RandomData(n, seed++, 0.05f));
                wRows[r].CopyTo(w, r * wStride);
                aRows[r] = QuantTestUtil.Quantize(GgmlType.F32, QuantTestUtil.RandomData(n, seed++, 2.0f));
                aRows[r].CopyTo(a, r * aStride);
            }
            var result = new float[16];
            fixed (byte* pw = w, pa = a) fixed (float* pr = result) k.Dot4x4(n, pw, wStride, pa, aStride, pr);
            for (int c = 0; c < 4; c++)
                for (int r = 0; r < 4; r++)
                {
                    float expected = QuantTestUtil.Dot(reference, n, wRows[r], aRows[c]);
                    double tol = DotRelTolerance * QuantTestUtil.AbsDot(type, wRows[r], GgmlType.F32, aRows[c], n) + 1e-30;
                    Assert.True(Math.Abs(result[c * 4 + r] - expected) <= tol, $"{type} n={n} row {r} token {c}: {result[c * 4 + r]} vs {expected}");
                }
        }
    }

    [Fact]
    public void FloatDotsAreFloat32AccurateAgainstDouble()
    {
        // BF16/F16 weights with F32 activations: nothing is rounded but the float32 sum (the BF16 fixtures need 1e-3 logits).
        const int n = 4099;
        float[] x = QuantTestUtil.RandomData(n, 5, 0.02f);
        float[] y = QuantTestUtil.RandomData(n, 6, 2.0f);
        foreach (var type in new[] { GgmlType.F32, GgmlType.F16, GgmlType.BF16 })
        {
            byte[] w = QuantTestUtil.Quantize(type, x);
            float[] wf = QuantTestUtil.Dequantize(type, w, n);
            double exact = 0, abs = 0;
            for (int i = 0; i < n; i++) { exact += (double)wf[i] * y[i]; abs += Math.Abs((double)wf[i] * y[i]); }
            byte[] a = QuantTestUtil.Quantize(GgmlType.F32, y);
            float got = QuantTestUtil.Dot(QuantKernels.Get(type).Dot, n, w, a);
            Assert.True(Math.Abs(got - exact) <= 1e-6 * abs, $"{type}: {got} vs {exact}");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void FastQ8_0ActivationQuantizerIsByteIdenticalToReference(int seed)
    {
        foreach (int blocks in new[] { 1, 2, 7, 64, 129 })
        {
            float[] x = QuantTestUtil.RandomData(blocks * 32, seed * 1000 + blocks, 1.0f);
            // plant exact halfway products: amax 127 gives d = 1 so x.5 values are ties for roundf
            x[0] = 127; x[1] = 2.5f; x[2] = -0.5f; x[3] = -126.5f;
            Assert.Equal(QuantTestUtil.Quantize(GgmlType.Q8_0, x), HandComputedBlockTests.FastQ8_0(x));
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void FastQ8_KActivationQuantizerIsByteIdenticalToReference(int seed)
    {
        foreach (int blocks in new[] { 1, 2, 5, 16 })
        {
            float[] x = QuantTestUtil.RandomData(blocks * 256, seed * 1000 + blocks, 1.0f);
            // block 0: +a and -a both of the largest magnitude, the negative one first (its sign picks iscale);
            // iscale = -127 / -12.7 ≈ 10, so 0.25 and 0.35 land next to the halfway points 2.5 and 3.5
            for (int j = 0; j < 256; j++) x[j] = MathF.Max(-12.0f, MathF.Min(12.0f, x[j]));
            x[3] = -12.7f; x[200] = 12.7f; x[4] = 0.25f; x[5] = 0.35f;
            if (blocks > 1) Array.Clear(x, 256, 256); // an all-zero block
            var fast = new byte[blocks * 292];
            fixed (float* px = x) fixed (byte* py = fast) Q8_K.QuantizeFast(px, py, x.Length);
            Assert.Equal(QuantTestUtil.Quantize(GgmlType.Q8_K, x), fast);
        }
    }

    [Theory]
    [InlineData(QuantKernels.IsaLevel.Best)]
    [InlineData(QuantKernels.IsaLevel.Avx2)]
    [InlineData(QuantKernels.IsaLevel.Scalar)]
    public void F16DotConvertsEveryHalfValueExactly(QuantKernels.IsaLevel level)
    {
        // 16 copies of one half value against a one-hot activation: the dot is that value, exactly (subnormals, ±0, largest, Inf included).
        Isa.RequireSimd(GgmlType.F16, level);
        var k = QuantKernels.Get(GgmlType.F16, level);
        var w = new ushort[16];
        var a = new float[16];
        fixed (ushort* pw = w) fixed (float* pa = a)
        {
            for (int h = 0; h < 65536; h++)
            {
                if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0) continue; // NaN payloads: only NaN-ness is defined
                Array.Fill(w, (ushort)h);
                Array.Clear(a);
                a[h % 16] = 1.0f;
                float expected = HalfBits.ToFloatRef((ushort)h);
                if (float.IsInfinity(expected)) Array.Fill(a, 1.0f);
                float got = k.Dot(16, (byte*)pw, (byte*)pa);
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(got) || (expected == 0 && got == 0),
                    $"{k.Isa}: half 0x{h:X4} gave {got}, expected {expected}");
            }
            Array.Fill(w, (ushort)0x7E00);
            Assert.True(float.IsNaN(k.Dot(16, (byte*)pw, (byte*)pa)));
        }
    }
}
