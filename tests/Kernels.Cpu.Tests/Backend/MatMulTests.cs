using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Backend;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Tests.Backend;

/// <summary>
/// The CPU backend's matmul driver (threads, row chunks, repacked groups, 4-token GEMM, tails) against the scalar
/// reference dot of every weight type, row by row and token by token.
/// </summary>
public unsafe class MatMulTests
{
    /// <summary>Relative to the row's Σ|w·x| scale: the kernels only reorder integer and float32 sums.</summary>
    private const double Tolerance = 1e-4;

    public static IEnumerable<object[]> Cases()
    {
        GgmlType[] types =
        [
            GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
            GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS,
        ];
        foreach (var type in types)
            foreach (var (rows, tokens) in new[] { (1, 1), (7, 3), (8, 4), (13, 5), (67, 9), (130, 1), (40, 16) })
                foreach (bool repack in new[] { true, false })
                    yield return [type, rows, tokens, repack];
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesScalarReference(GgmlType type, int rows, int tokens, bool repack) =>
        Check(type, rows, tokens, repack && QuantKernels.Get(type).RepackRows > 0, 512, 0, convertMin: int.MaxValue);

    /// <summary>
    /// The low-bit types in a prompt batch, through the Q8_0 tiles (<see cref="QuantKernel.GemmVia"/>): each thread converts its rows,
    /// so the reference is the scalar Q8_0 dot of the converted rows with Q8_0 activations. Q3_K and IQ4_NL convert exactly; Q2_K's
    /// −dmin·m per group of 16 is added from the activations' group sums (the reference adds the same offsets in double); IQ4_XS is
    /// two Q8_0 halves of a row twice as long, against the activations repeated twice. Whole tiles, single 8-row groups, chunks
    /// that end in a few plain rows, token blocks with tails. IQ4_NL and IQ4_XS also repacked: their groups convert straight into
    /// the Q8_0 groups (<see cref="QuantKernel.ConvertGroup"/>), the rows past the last whole group from the plain rows.
    /// </summary>
    [Theory]
    [MemberData(nameof(PromptCases))]
    public void LowBitPromptsRunThroughTheQ8_0Tiles(GgmlType type, int rows, int tokens, int blockRows, bool repack)
    {
        Isa.RequireRepacked(GgmlType.Q8_0, QuantKernels.IsaLevel.Best);
        Check(type, rows, tokens, repack, 512, blockRows, convertMin: 4);
    }

    public static TheoryData<GgmlType, int, int, int, bool> PromptCases()
    {
        var data = new TheoryData<GgmlType, int, int, int, bool>();
        foreach (var (rows, tokens, blockRows) in new[] { (16, 16, 0), (24, 21, 0), (67, 20, 0), (40, 37, 5) })
        {
            foreach (var type in new[] { GgmlType.Q3_K, GgmlType.Q2_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS })
                data.Add(type, rows, tokens, blockRows, false);
            foreach (var type in Isa.RepackedWithoutTile) data.Add(type, rows, tokens, blockRows, true);
        }
        data.Add(GgmlType.Q3_K, 130, 4, 0, false);
        data.Add(GgmlType.Q2_K, 130, 6, 0, false);
        return data;
    }

    public static IEnumerable<object[]> BlockedCases()
    {
        foreach (var type in new[] { GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.F16 })
            foreach (var (rows, tokens, blockRows) in new[] { (48, 23, 1), (40, 37, 5), (72, 18, 8), (16, 9, 4) })
                yield return [type, rows, tokens, blockRows];
    }

    /// <summary>Token blocks of a few activation rows (ragged last block, tile tails inside each block) through the tile kernels.</summary>
    [Theory]
    [MemberData(nameof(BlockedCases))]
    public void TokenBlockedMatchesScalarReference(GgmlType type, int rows, int tokens, int blockRows) =>
        Check(type, rows, tokens, true, 1024, blockRows);

    /// <summary>A weight too wide for the tile scratch falls back to the 8-row × 4-token kernels.</summary>
    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_K)]
    public void WithoutTileScratchMatchesScalarReference(GgmlType type) => Check(type, 48, 11, true, 512, 0, tileScratch: 0);

    private static void Check(GgmlType type, int rows, int tokens, bool repack, int cols, int blockRows, int tileScratch = -1,
        int convertMin = 16)
    {
        if (repack) Isa.RequireRepacked(type, QuantKernels.IsaLevel.Best); // the backend would fall back to the plain layout
        var kernel = QuantKernels.Get(type);
        bool converted = kernel.GemmVia != null && tokens >= convertMin && rows >= QuantKernel.TileRows;
        var reference = QuantKernels.Get(converted ? kernel.GemmVia!.Type : type, QuantKernels.IsaLevel.Scalar);
        int width = converted ? kernel.GemmViaWidth : 1, wide = cols * width; // IQ4_XS: two Q8_0 halves against x twice
        long fileRowBytes = kernel.RowBytes(cols), rowBytes = reference.RowBytes(wide);
        var rng = new Random(rows * 31 + tokens);
        var file = new byte[rows * fileRowBytes];
        var weights = new byte[rows * rowBytes];
        var row = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            for (int i = 0; i < cols; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
            RowCodec.Quantize(type, row, file.AsSpan((int)(r * fileRowBytes), (int)fileRowBytes));
        }
        // converted: the rows as the Q8_0 reference converts them, and (Q2_K) each row's offsets per group of 16
        var mins = new float[rows * cols / 16];
        if (!converted) file.CopyTo(weights, 0);
        else
            fixed (byte* src = file, dst = weights)
            fixed (float* m = mins)
                for (int r = 0; r < rows; r++)
                {
                    if (type == GgmlType.Q3_K) Q3_K.ToQ8_0Ref(src + r * fileRowBytes, dst + r * rowBytes, cols);
                    else if (type == GgmlType.IQ4_NL) IQ4.NlToQ8_0Ref(src + r * fileRowBytes, dst + r * rowBytes, cols);
                    else if (type == GgmlType.IQ4_XS) IQ4.XsToQ8_0x2Ref(src + r * fileRowBytes, dst + r * rowBytes, cols);
                    else
                    {
                        Q2_K.ToQ8_0Ref(src + r * fileRowBytes, dst + r * rowBytes, cols);
                        Q2_K.RowMins(src + r * fileRowBytes, m + r * cols / 16, cols);
                    }
                }
        var x = new float[tokens * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);

        // Reference: activations quantized by the scalar quantizer, then the scalar dot per (token, row).
        var expected = new double[tokens * rows];
        var scale = new double[tokens * rows];
        var xq = new byte[Math.Max(reference.ActivationRowBytes(wide), cols * 4)];
        var wf = new float[cols];
        var repeated = new float[wide];
        fixed (byte* w = weights, q = xq, f = file)
        fixed (float* xs = x, wfp = wf, xr = repeated)
        {
            for (int t = 0; t < tokens; t++)
            {
                byte* act;
                if (reference.VecDotType == GgmlType.F32) act = (byte*)(xs + t * cols);
                else
                {
                    for (int k = 0; k < width; k++) Array.Copy(x, t * cols, repeated, k * cols, cols);
                    reference.QuantizeActivations(xr, q, wide);
                    act = q;
                }
                for (int r = 0; r < rows; r++)
                {
                    expected[t * rows + r] = reference.Dot(wide, w + r * rowBytes, act);
                    for (int g = 0; g < cols / 16; g++)
                        for (int i = 0; i < 16; i++) expected[t * rows + r] += (double)mins[r * cols / 16 + g] * x[t * cols + 16 * g + i];
                    kernel.Dequantize(f + r * fileRowBytes, wfp, cols);
                    double s = 0;
                    for (int i = 0; i < cols; i++) s += Math.Abs(wf[i] * x[t * cols + i]);
                    scale[t * rows + r] = s;
                }
            }

            using var backend = new CpuBackend(threads: 2, maxBatch: tokens, repack: repack);
            backend.MatMulConvertMinTokens = convertMin;
            if (tileScratch >= 0) backend.MatMulMaxTileScratchFloats = tileScratch;
            if (blockRows > 0) backend.MatMulTokenBlockBytes = blockRows * Math.Max(reference.ActivationRowBytes(cols), cols * 4L);
            var y = Product(backend, backend.CreateWeight("w", type, rows, cols, f), x, tokens);
            for (int i = 0; i < expected.Length; i++)
            {
                double err = Math.Abs(y[i] - expected[i]);
                Assert.True(err <= Tolerance * (scale[i] + 1), $"{type} token {i / rows} row {i % rows}: expected {expected[i]}, got {y[i]}");
            }
        }
    }

    /// <summary>W · x for <paramref name="tokens"/> rows of x (all at position and sequence 0), through the backend's matmul.</summary>
    internal static float[] Product(CpuBackend backend, IWeight weight, float[] x, int tokens)
    {
        var xa = backend.Allocate(tokens, weight.Cols);
        var ya = backend.Allocate(tokens, weight.Rows);
        x.CopyTo(backend.View(xa, tokens));
        var ids = new int[tokens];
        backend.SetBatch(ids, ids, ids);
        backend.MatMul(weight, xa, ya);
        return backend.View(ya, tokens).ToArray();
    }
}
