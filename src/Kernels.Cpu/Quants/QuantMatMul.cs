namespace Infer.Kernels.Cpu.Quants;

/// <summary>
/// Single-threaded matrix products over a range of weight rows, built on a <see cref="QuantKernel"/>; the caller's thread pool splits the rows.
/// Weights are (rows, n) in the plain GGUF layout, or repacked by <see cref="Repack"/>: then each group of 8 rows occupies the same bytes as its
/// 8 plain rows, and the last rows % 8 rows stay plain, so a row's byte offset is always r × RowBytes(n).
/// </summary>
public static unsafe class QuantMatMul
{
    /// <summary>Weight rows per tile in <see cref="MatMul"/>: a tile is reused from cache across every 4 tokens.</summary>
    public const int RowTile = 64;

    /// <summary>Repacks a (rows, n) weight matrix from <paramref name="src"/> into <paramref name="dst"/> (same size; may not overlap). Needs <see cref="QuantKernel.RepackRows"/> &gt; 0.</summary>
    public static void Repack(QuantKernel k, byte* src, byte* dst, long rows, int n)
    {
        if (k.RepackRows == 0) throw new NotSupportedException($"{k.Type}: no repacked kernels on this CPU");
        long rowBytes = k.RowBytes(n);
        long groups = rows / k.RepackRows;
        for (long g = 0; g < groups; g++)
        {
            long offset = g * k.RepackRows * rowBytes;
            k.Repack(src + offset, (nint)rowBytes, dst + offset, n);
        }
        long tail = groups * k.RepackRows * rowBytes;
        Buffer.MemoryCopy(src + tail, dst + tail, (rows - groups * k.RepackRows) * rowBytes, (rows - groups * k.RepackRows) * rowBytes);
    }

    /// <summary>
    /// y[t · yStride + r] = weight row r · activation row t, for r in [rowStart, rowEnd) and t in [0, tokens).
    /// Activation rows come from <see cref="QuantKernel.QuantizeActivations"/> (floats for F32/F16/BF16 weights), <paramref name="actStride"/> bytes apart.
    /// With repacked weights, rowStart and rowEnd must be multiples of 8 (rowEnd may also be <paramref name="rows"/>).
    /// </summary>
    public static void MatMul(QuantKernel k, byte* w, bool repacked, int n, long rows, byte* act, nint actStride, int tokens,
        float* y, nint yStride, long rowStart, long rowEnd)
    {
        if (rowStart < 0 || rowEnd > rows || rowStart > rowEnd) throw new ArgumentOutOfRangeException(nameof(rowStart), $"rows [{rowStart}, {rowEnd}) outside [0, {rows})");
        if (n % k.BlockSize != 0 || n % k.VecDotBlockSize != 0) throw new ArgumentException($"{k.Type}: row length {n} is not a multiple of the block size", nameof(n));
        int gr = repacked ? k.RepackRows : 0;
        if (repacked && gr == 0) throw new NotSupportedException($"{k.Type}: no repacked kernels on this CPU");
        long groupedEnd = repacked ? rows / gr * gr : 0;
        if (repacked && (rowStart % gr != 0 || (rowEnd % gr != 0 && rowEnd != rows)))
            throw new ArgumentException($"{k.Type}: repacked rows are split at multiples of {gr}; got [{rowStart}, {rowEnd})");
        long rowBytes = k.RowBytes(n);
        float* tmp = stackalloc float[32];
        for (long tileStart = rowStart; tileStart < rowEnd; tileStart += RowTile)
        {
            long tileEnd = Math.Min(rowEnd, tileStart + RowTile);
            int t = 0;
            for (; t + 4 <= tokens; t += 4)
            {
                byte* a = act + t * actStride;
                long r = tileStart;
                for (; r < Math.Min(tileEnd, groupedEnd); r += gr)
                {
                    k.RepackedDot4(n, w + r * rowBytes, a, actStride, tmp);
                    for (int c = 0; c < 4; c++)
                        for (int i = 0; i < gr; i++) y[(t + c) * yStride + r + i] = tmp[c * 8 + i];
                }
                for (; r < tileEnd; r++)
                {
                    k.Dot4(n, w + r * rowBytes, a, actStride, tmp);
                    for (int c = 0; c < 4; c++) y[(t + c) * yStride + r] = tmp[c];
                }
            }
            for (; t < tokens; t++)
            {
                byte* a = act + t * actStride;
                long r = tileStart;
                for (; r < Math.Min(tileEnd, groupedEnd); r += gr)
                    k.RepackedDot(n, w + r * rowBytes, a, y + t * yStride + r);
                for (; r < tileEnd; r++) y[t * yStride + r] = k.Dot(n, w + r * rowBytes, a);
            }
        }
    }
}
