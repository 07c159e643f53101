using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Tests.Quants;

/// <summary>The 8-row interleaved (repacked) kernels of every type that has them against the scalar reference dot, row by row.</summary>
public unsafe class RepackedKernelTests
{
    /// <summary>Integer sums are exact; only float accumulation order differs (relative to Σ|w·a|).</summary>
    private const double DotRelTolerance = 2e-6;

    public static TheoryData<GgmlType, QuantKernels.IsaLevel, bool> Cases() => Cases(Isa.Repacked);

    /// <summary>The types with a tile kernel.</summary>
    public static TheoryData<GgmlType, QuantKernels.IsaLevel, bool> TileCases() => Cases(Isa.Repacked.Except(Isa.RepackedWithoutTile));

    private static TheoryData<GgmlType, QuantKernels.IsaLevel, bool> Cases(IEnumerable<GgmlType> types)
    {
        var data = new TheoryData<GgmlType, QuantKernels.IsaLevel, bool>();
        foreach (var type in types)
            foreach (var level in Enum.GetValues<QuantKernels.IsaLevel>())
                data.Add(type, level, true);
        foreach (var type in Isa.GeneratedTypes)
            foreach (var level in Isa.GeneratedLevels)
                data.Add(type, level, false);
        return data;
    }

    /// <summary>Whether this CPU has repacked kernels of <paramref name="type"/> at <paramref name="level"/>.</summary>
    private static bool Expected(GgmlType type, QuantKernels.IsaLevel level) =>
        level != QuantKernels.IsaLevel.Scalar && Isa.HasAvx2 && Isa.Repacked.Contains(type);

    private static delegate*<int, byte*, byte*, float> Reference(GgmlType type) =>
        type switch
        {
            GgmlType.Q4_0 => &Q4_0.DotRef,
            GgmlType.Q8_0 => &Q8_0.DotRef,
            GgmlType.Q4_1 => &Q4_1.DotRef,
            GgmlType.Q5_0 => &Q5_0.DotRef,
            GgmlType.Q5_1 => &Q5_1.DotRef,
            GgmlType.Q4_K => &Q4_K.DotRef,
            GgmlType.Q5_K => &Q5_K.DotRef,
            GgmlType.Q6_K => &Q6_K.DotRef,
            GgmlType.IQ4_NL => &IQ4.DotNlRef,
            GgmlType.IQ4_XS => &IQ4.DotXsRef,
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, "no repacked kernels"),
        };

    [Theory]
    [MemberData(nameof(Cases))]
    public void RepackedDotsMatchReference(GgmlType type, QuantKernels.IsaLevel level, bool generated)
    {
        Isa.RequireWithoutGenerated(generated);
        var k = QuantKernels.Get(type, level, generated);
        if (!Expected(type, level))
        {
            Assert.Equal(0, k.RepackRows);
            Assert.True(k.Repack == null && k.RepackedDot == null && k.RepackedDot4 == null);
            Isa.RequireRepacked(type, level); // skipped when this CPU, not the design, is why there are none
            return;
        }
        Assert.Equal(8, k.RepackRows);
        Isa.RequireSimd(type, level);
        int seed = 1;
        int bs = k.BlockSize;
        var lengths = Enumerable.Range(1, 16).Select(b => b * bs).Concat(bs == 32 ? [4096, 32 * 137] : [4096, 14336, 256 * 37]);
        foreach (int n in lengths)
        {
            int rowBytes = (int)k.RowBytes(n);
            var rows = new byte[8][];
            var plain = new byte[8 * rowBytes];
            for (int r = 0; r < 8; r++)
            {
                rows[r] = QuantTestUtil.Quantize(type, QuantTestUtil.RandomData(n, seed++, 0.05f));
                rows[r].CopyTo(plain, r * rowBytes);
            }
            var group = new byte[8 * rowBytes];
            int actStride = (int)k.ActivationRowBytes(n) + 6;
            var acts = new byte[4][];
            var act = new byte[4 * actStride];
            for (int c = 0; c < 4; c++)
            {
                // activation rows as the hot path makes them (Q8_0 rows carry block sums after the blocks)
                float[] y = QuantTestUtil.RandomData(n, seed++, 2.0f);
                acts[c] = QuantTestUtil.Quantize(k.VecDotType, y);
                fixed (float* py = y) fixed (byte* pa = &act[c * actStride]) k.QuantizeActivations(py, pa, n);
            }
            var one = new float[8];
            var four = new float[32];
            fixed (byte* pPlain = plain, pGroup = group, pAct = act)
            fixed (float* pOne = one, pFour = four)
            {
                k.Repack(pPlain, rowBytes, pGroup, n);
                k.RepackedDot(n, pGroup, pAct, pOne);
                k.RepackedDot4(n, pGroup, pAct, actStride, pFour);
            }
            for (int c = 0; c < 4; c++)
                for (int r = 0; r < 8; r++)
                {
                    float expected = QuantTestUtil.Dot(Reference(type), n, rows[r], acts[c]);
                    double tol = DotRelTolerance * QuantTestUtil.AbsDot(type, rows[r], k.VecDotType, acts[c], n) + 1e-30;
                    Assert.True(Math.Abs(four[c * 8 + r] - expected) <= tol,
                        $"{type} {k.Isa} n={n} Dot4 col {c} row {r}: {four[c * 8 + r]} vs {expected}");
                    if (c == 0) Assert.True(Math.Abs(one[r] - expected) <= tol, $"{type} {k.Isa} n={n} Dot row {r}: {one[r]} vs {expected}");
                }
        }
    }

    /// <summary>The 16-row × TileTokens GEMM tile (two consecutive groups) against the scalar reference dot, into a strided output.</summary>
    [Theory]
    [MemberData(nameof(TileCases))]
    public void RepackedTileMatchesReference(GgmlType type, QuantKernels.IsaLevel level, bool generated)
    {
        Isa.RequireWithoutGenerated(generated);
        var k = QuantKernels.Get(type, level, generated);
        if (!Expected(type, level))
        {
            Assert.True(k.RepackedTile == null && k.RepackedTileScales == null && k.TileTokens == 0);
            Isa.RequireRepacked(type, level);
            return;
        }
        Assert.True(k.RepackedTile != null && k.RepackedTileScales != null && k.TileScaleFloats > 0);
        Isa.RequireSimd(type, level);
        int tt = k.TileTokens;
        Assert.True(tt >= 1);
        int seed = 100;
        int bs = k.BlockSize;
        var lengths = Enumerable.Range(1, 12).Select(b => b * bs).Concat(bs == 32 ? [2048, 32 * 137] : [2048, 8192, 256 * 37]);
        foreach (int n in lengths)
        {
            int rowBytes = (int)k.RowBytes(n);
            int rowCount = QuantKernel.TileRows;
            var rows = new byte[rowCount][];
            var plain = new byte[rowCount * rowBytes];
            for (int r = 0; r < rowCount; r++)
            {
                rows[r] = QuantTestUtil.Quantize(type, QuantTestUtil.RandomData(n, seed++, 0.05f));
                rows[r].CopyTo(plain, r * rowBytes);
            }
            // the second group is placed at a gap after the first, so the group stride is exercised
            int groupStride = 8 * rowBytes + 64;
            var packed = new byte[groupStride + 8 * rowBytes];
            int actStride = (int)k.ActivationRowBytes(n) + 10;
            var acts = new byte[tt][];
            var act = new byte[tt * actStride];
            for (int c = 0; c < tt; c++)
            {
                float[] yv = QuantTestUtil.RandomData(n, seed++, 2.0f);
                acts[c] = QuantTestUtil.Quantize(k.VecDotType, yv);
                fixed (float* py = yv) fixed (byte* pa = &act[c * actStride]) k.QuantizeActivations(py, pa, n);
            }
            const int yStride = 21;
            var scales = new float[n / bs * k.TileScaleFloats];
            fixed (byte* pPlain = plain, pPacked = packed)
            fixed (float* pScales = scales)
            {
                k.Repack(pPlain, rowBytes, pPacked, n);
                k.Repack(pPlain + 8 * rowBytes, rowBytes, pPacked + groupStride, n);
                k.RepackedTileScales(n, pPacked, groupStride, pScales);
            }
            CheckTile("tile", k.RepackedTile, tt);
            // the 4-token tail tile, where the type has one, on the same weights and scales
            if (k.RepackedTileTail != null) CheckTile("tail tile", k.RepackedTileTail, 4);

            void CheckTile(string what, delegate*<int, byte*, nint, float*, byte*, nint, float*, nint, void> tile, int tokens)
            {
                var output = new float[tokens * yStride];
                Array.Fill(output, float.NaN);
                fixed (byte* pPacked = packed, pAct = act)
                fixed (float* pOut = output, pScales = scales)
                    tile(n, pPacked, groupStride, pScales, pAct, actStride, pOut, yStride);
                for (int c = 0; c < tokens; c++)
                {
                    for (int r = 0; r < rowCount; r++)
                    {
                        float expected = QuantTestUtil.Dot(Reference(type), n, rows[r], acts[c]);
                        double tol = DotRelTolerance * QuantTestUtil.AbsDot(type, rows[r], k.VecDotType, acts[c], n) + 1e-30;
                        float got = output[c * yStride + r];
                        Assert.True(Math.Abs(got - expected) <= tol, $"{type} {k.Isa} n={n} {what} col {c} row {r}: {got} vs {expected}");
                    }
                    for (int r = rowCount; r < yStride && c * yStride + r < output.Length; r++)
                        Assert.True(float.IsNaN(output[c * yStride + r]), $"{type} n={n} {what} wrote outside its 16 rows (col {c}, {r})");
                }
            }
        }
    }

    /// <summary>
    /// Q6_K blocks of random bits (every q in 0..63, every int8 scale including −128 and 127), one block of all q = 63 with scales −128,
    /// against hand-built Q8_K activations at the ends of their range (±127): the repacked dots and the tile must not saturate
    /// (AVX2's int16 pair sums) or overflow, and must match <see cref="Q6_K.DotRef"/>.
    /// </summary>
    [Theory]
    [InlineData(QuantKernels.IsaLevel.Best)]
    [InlineData(QuantKernels.IsaLevel.Avx512)]
    [InlineData(QuantKernels.IsaLevel.AvxVnni)]
    [InlineData(QuantKernels.IsaLevel.Avx2)]
    public void Q6_KRepackedKernelsMatchReferenceAtRangeLimits(QuantKernels.IsaLevel level)
    {
        var k = QuantKernels.Get(GgmlType.Q6_K, level);
        if (!Expected(GgmlType.Q6_K, level))
        {
            Assert.Equal(0, k.RepackRows);
            Isa.RequireRepacked(GgmlType.Q6_K, level);
            return;
        }
        Isa.RequireSimd(GgmlType.Q6_K, level);
        const int blocks = 9;
        const int n = blocks * Q6_KFormat.BlockSize;
        int rowBytes = (int)k.RowBytes(n), actBytes = (int)k.ActivationRowBytes(n);
        var rng = new Random(7);
        var rows = new byte[QuantKernel.TileRows][];
        var plain = new byte[QuantKernel.TileRows * rowBytes];
        for (int r = 0; r < rows.Length; r++)
        {
            rows[r] = new byte[rowBytes];
            rng.NextBytes(rows[r]);
            for (int b = 0; b < blocks; b++)
            {
                int o = b * Q6_KFormat.TypeSize;
                if (b == 4) rows[r].AsSpan(o, 192).Fill(0xFF); // q = 63 everywhere
                if (b == 4 || r % 3 == 0) rows[r].AsSpan(o + 192, 16).Fill(0x80); // scales −128
                rows[r][o + 192 + 1] = 127;
                BitConverter.TryWriteBytes(rows[r].AsSpan(o + 208), HalfBits.FromFloat((float)(0.001 + 0.01 * rng.NextDouble())));
            }
            rows[r].CopyTo(plain, r * rowBytes);
        }
        int tokens = Math.Max(4, k.TileTokens); // the tile reads TileTokens activation rows and writes as many output rows
        var acts = new byte[tokens][];
        var act = new byte[tokens * actBytes];
        for (int c = 0; c < tokens; c++)
        {
            acts[c] = new byte[actBytes];
            for (int b = 0; b < blocks; b++)
            {
                int o = b * Q8_KFormat.TypeSize;
                BitConverter.TryWriteBytes(acts[c].AsSpan(o), (float)(0.01 + 0.1 * rng.NextDouble()));
                for (int j = 0; j < 16; j++)
                {
                    int sum = 0;
                    for (int i = 0; i < 16; i++)
                    {
                        // all +127 in block 4 (the largest sums), else ±127 or random
                        int v = b == 4 ? 127 : rng.Next(3) switch { 0 => 127, 1 => -127, _ => rng.Next(-127, 128) };
                        acts[c][o + 4 + 16 * j + i] = (byte)(sbyte)v;
                        sum += v;
                    }
                    BitConverter.TryWriteBytes(acts[c].AsSpan(o + 260 + 2 * j), (short)sum);
                }
            }
            acts[c].CopyTo(act, c * actBytes);
        }
        var one = new float[8];
        var four = new float[32];
        var tile = new float[tokens * QuantKernel.TileRows];
        var scales = new float[blocks * k.TileScaleFloats];
        fixed (byte* pPlain = plain, pAct = act)
        fixed (float* pOne = one, pFour = four, pTile = tile, pScales = scales)
        {
            byte* packed = (byte*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)plain.Length);
            try
            {
                k.Repack(pPlain, rowBytes, packed, n);
                k.Repack(pPlain + 8 * rowBytes, rowBytes, packed + 8 * rowBytes, n);
                k.RepackedTileScales(n, packed, 8 * rowBytes, pScales);
                k.RepackedTile(n, packed, 8 * rowBytes, pScales, pAct, actBytes, pTile, QuantKernel.TileRows);
                for (int grp = 0; grp < 2; grp++)
                {
                    byte* group = packed + grp * 8 * rowBytes;
                    k.RepackedDot4(n, group, pAct, actBytes, pFour);
                    for (int c = 0; c < tokens; c++)
                    {
                        k.RepackedDot(n, group, pAct + c * actBytes, pOne);
                        for (int r = 0; r < 8; r++)
                        {
                            int row = 8 * grp + r;
                            float expected = QuantTestUtil.Dot(&Q6_K.DotRef, n, rows[row], acts[c]);
                            double tol = DotRelTolerance * QuantTestUtil.AbsDot(GgmlType.Q6_K, rows[row], GgmlType.Q8_K, acts[c], n) + 1e-30;
                            Assert.True(Math.Abs(one[r] - expected) <= tol, $"{k.Isa} Dot row {row} col {c}: {one[r]} vs {expected}");
                            if (c < 4)
                                Assert.True(Math.Abs(four[8 * c + r] - expected) <= tol,
                                    $"{k.Isa} Dot4 row {row} col {c}: {four[8 * c + r]} vs {expected}");
                            float got = tile[c * QuantKernel.TileRows + row];
                            Assert.True(Math.Abs(got - expected) <= tol, $"{k.Isa} tile row {row} col {c}: {got} vs {expected}");
                        }
                    }
                }
            }
            finally
            {
                System.Runtime.InteropServices.NativeMemory.Free(packed);
            }
        }
    }

    /// <summary>
    /// Q5_K rows of random bytes (every 5-bit weight, scale and min pattern, including 31 and 63 everywhere they can occur) against
    /// Q8_K rows of extreme values (-128 and 127 mixed with random ones): the repacked GEMV, Dot4 and tile equal the scalar reference,
    /// so no int16 pair (AVX2) or int32 sum saturates.
    /// </summary>
    [Theory]
    [InlineData(QuantKernels.IsaLevel.Best)]
    [InlineData(QuantKernels.IsaLevel.Avx512)]
    [InlineData(QuantKernels.IsaLevel.AvxVnni)]
    [InlineData(QuantKernels.IsaLevel.Avx2)]
    public void RepackedQ5_KExtremeBlocksMatchReference(QuantKernels.IsaLevel level)
    {
        var k = QuantKernels.Get(GgmlType.Q5_K, level);
        if (!Expected(GgmlType.Q5_K, level))
        {
            Assert.Equal(0, k.RepackRows);
            Isa.RequireRepacked(GgmlType.Q5_K, level);
            return;
        }
        Isa.RequireSimd(GgmlType.Q5_K, level);
        var rng = new Random(5);
        foreach (int n in new[] { 256, 256 * 3 })
        {
            int nb = n / Q5_KFormat.BlockSize, rowBytes = (int)k.RowBytes(n), actBytes = (int)k.ActivationRowBytes(n);
            var plain = new byte[16 * rowBytes];
            rng.NextBytes(plain);
            for (int r = 0; r < 16; r++)
                for (int b = 0; b < nb; b++)
                {
                    int o = r * rowBytes + b * Q5_KFormat.TypeSize;
                    BitConverter.TryWriteBytes(plain.AsSpan(o), (ushort)(0x2000 + rng.Next(0x0C00))); // d: a normal half in [2^-7, 2^-4)
                    BitConverter.TryWriteBytes(plain.AsSpan(o + 2), (ushort)(0x1C00 + rng.Next(0x0C00))); // dmin
                    if (r % 4 == 0) plain.AsSpan(o + 4, Q5_KFormat.TypeSize - 4).Fill(0xFF); // all weights 31, all scales and mins 63
                }
            int tokens = Math.Max(4, k.TileTokens); // the tile reads TileTokens activation rows and writes as many output rows
            var act = new byte[tokens * actBytes];
            for (int c = 0; c < tokens; c++)
                for (int b = 0; b < nb; b++)
                {
                    int o = c * actBytes + b * Q8_KFormat.TypeSize;
                    BitConverter.TryWriteBytes(act.AsSpan(o), 0.01f + c);
                    var qs = new sbyte[256];
                    for (int i = 0; i < 256; i++)
                        qs[i] = c == 0 ? (sbyte)127 : c == 1 ? (sbyte)-128
                            : (sbyte)(rng.Next(3) switch { 0 => -128, 1 => 127, _ => rng.Next(-128, 128) });
                    for (int i = 0; i < 256; i++) act[o + 4 + i] = (byte)qs[i];
                    for (int j = 0; j < 16; j++)
                    {
                        int sum = 0;
                        for (int i = 0; i < 16; i++) sum += qs[16 * j + i];
                        BitConverter.TryWriteBytes(act.AsSpan(o + 260 + 2 * j), (short)sum);
                    }
                }
            var packed = new byte[16 * rowBytes];
            var one = new float[8];
            var four = new float[32];
            var tile = new float[tokens * 16];
            var scales = new float[nb * k.TileScaleFloats];
            fixed (byte* pPlain = plain, pPacked = packed, pAct = act)
            fixed (float* pOne = one, pFour = four, pTile = tile, pScales = scales)
            {
                k.Repack(pPlain, rowBytes, pPacked, n);
                k.Repack(pPlain + 8 * rowBytes, rowBytes, pPacked + 8 * rowBytes, n);
                k.RepackedTileScales(n, pPacked, 8 * rowBytes, pScales);
                k.RepackedTile(n, pPacked, 8 * rowBytes, pScales, pAct, actBytes, pTile, 16);
                for (int g = 0; g < 2; g++)
                {
                    k.RepackedDot4(n, pPacked + g * 8 * rowBytes, pAct, actBytes, pFour);
                    for (int c = 0; c < tokens; c++)
                    {
                        k.RepackedDot(n, pPacked + g * 8 * rowBytes, pAct + c * actBytes, pOne);
                        for (int r = 0; r < 8; r++)
                        {
                            int row = 8 * g + r;
                            float expected = Q5_K.DotRef(n, pPlain + row * rowBytes, pAct + c * actBytes);
                            byte[] w = plain.AsSpan(row * rowBytes, rowBytes).ToArray(), a = act.AsSpan(c * actBytes, actBytes).ToArray();
                            double tol = DotRelTolerance * QuantTestUtil.AbsDot(GgmlType.Q5_K, w, GgmlType.Q8_K, a, n) + 1e-30;
                            string at = $"{k.Isa} n={n} token {c} row {row}";
                            Assert.True(Math.Abs(one[r] - expected) <= tol, $"{at} Dot: {one[r]} vs {expected}");
                            if (c < 4) Assert.True(Math.Abs(four[c * 8 + r] - expected) <= tol, $"{at} Dot4: {four[c * 8 + r]} vs {expected}");
                            Assert.True(Math.Abs(tile[c * 16 + row] - expected) <= tol, $"{at} tile: {tile[c * 16 + row]} vs {expected}");
                        }
                    }
                }
            }
        }
    }
}
