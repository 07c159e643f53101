using Infer.Kernels.Cpu.Quants;
using Infer.Kernels.Cpu.Threading;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Backend;

/// <summary>
/// The matmul driver: quantizes the input rows to the weight's vec-dot type (reused while the input is unchanged: Wq, Wk and Wv
/// share one input), then hands weight rows out to the threads in chunks, each multiplied with every token through the widest
/// kernel the weight has (16-row tiles, 8-row repacked groups, 4x4 tiles, 4-token dots, single dots).
/// </summary>
internal sealed unsafe class MatMulDriver(NativeBuffers buffers, WorkerPool pool)
{
    private readonly QuantizeWork _quantize = new();
    private readonly MatMulWork _matMul = new();

    // Activations quantized for the current matmul input; reused while the source is unchanged (Wq, Wk, Wv share one input).
    private byte* _quantized;
    private long _quantizedCapacity;
    private CpuActivation? _quantizedSource;
    private int _quantizedVersion;
    private nint _quantizedWith; // the quantizer that wrote the buffer
    private int _quantizedRows;

    /// <summary>
    /// Activation bytes a matmul multiplies per pass over a row chunk: about a quarter of a 2 MB L2, leaving room for the chunk's
    /// weights. Tests lower it to exercise the token-block boundaries; it changes no result.
    /// </summary>
    public long TokenBlockBytes { get; set; } = 512 * 1024;

    /// <summary>
    /// Most floats of tile scales a worker keeps on its stack (128 KiB: Q4_0 rows up to 65536 columns, Q4_K up to 58000); a wider
    /// weight uses the 8-row kernels. Tests set 0 to exercise that path.
    /// </summary>
    public int MaxTileScratchFloats { get; set; } = 32 * 1024;

    /// <summary>y[t, :] = W · x[t, :] for the first <paramref name="n"/> rows.</summary>
    public void MatMul(CpuWeight w, CpuActivation xa, CpuActivation ya, int n)
    {
        if (xa.Cols != w.Cols || ya.Cols < w.Rows)
            throw new ArgumentException($"matmul shape mismatch: '{w.Name}' is [{w.Rows} x {w.Cols}], input has {xa.Cols} columns, output {ya.Cols}");

        byte* input;
        long inputRowBytes;
        var kernel = w.Kernel;
        if (kernel.VecDotType == GgmlType.F32)
        {
            input = (byte*)xa.Data;
            inputRowBytes = (long)xa.Cols * sizeof(float);
        }
        else
        {
            // Activation rows as the kernels want them (Q8_0 rows carry per-block sums after the blocks, for the repacked kernels).
            var quantizer = kernel.QuantizeActivations;
            inputRowBytes = kernel.ActivationRowBytes(xa.Cols);
            bool fresh = ReferenceEquals(_quantizedSource, xa) && _quantizedVersion == xa.Version
                && _quantizedWith == (nint)quantizer && _quantizedRows >= n;
            if (!fresh)
            {
                EnsureQuantizedCapacity(inputRowBytes * n);
                _quantize.X = xa;
                _quantize.Output = _quantized;
                _quantize.Quantizer = quantizer;
                _quantize.Rows = n;
                _quantize.RowBytes = inputRowBytes;
                if ((long)n * xa.Cols <= RowOps.InlineElements) _quantize.Execute(0, 1); // a decode step's row: no pool round trip
                else pool.Run(_quantize);
                _quantizedSource = xa;
                _quantizedVersion = xa.Version;
                _quantizedWith = (nint)quantizer;
                _quantizedRows = n;
            }
            input = _quantized;
        }

        _matMul.W = w;
        _matMul.Y = ya;
        _matMul.X = input;
        _matMul.XRowBytes = inputRowBytes;
        _matMul.Tokens = n;
        _matMul.TokenBlockBytes = TokenBlockBytes;
        _matMul.MaxTileScaleFloats = MaxTileScratchFloats;
        // Enough chunks for balance (8 per thread), each large enough to amortize the hand-out, in whole tiles (16 rows) when the
        // weight has a tile kernel, else in whole repack groups.
        // the weight's repacked copy as of now: a background repack may publish it during the call; this call keeps the layout
        _matMul.Repacked = w.Repacked;
        int unit = _matMul.Repacked != null && kernel.RepackedTile != null ? QuantKernel.TileRows : 8;
        _matMul.ChunkRows = Math.Max(unit, w.Rows / (pool.ThreadCount * 8)) / unit * unit;
        _matMul.NextChunk = 0;
        pool.Run(_matMul);
        ya.Version++;
    }

    private void EnsureQuantizedCapacity(long bytes)
    {
        if (bytes <= _quantizedCapacity) return;
        buffers.Free(_quantized);
        _quantized = (byte*)buffers.Alloc(bytes);
        _quantizedCapacity = bytes;
    }

    /// <summary>Quantizes the rows of the matmul input to the weight's vec-dot type, in parallel over rows.</summary>
    private sealed class QuantizeWork : IParallelWork
    {
        public CpuActivation X = null!;
        public byte* Output;
        public delegate*<float*, byte*, int, void> Quantizer;
        public int Rows;
        public long RowBytes;

        public void Execute(int thread, int threadCount)
        {
            var (start, end) = WorkerPool.Split(Rows, thread, threadCount);
            for (int r = start; r < end; r++)
                Quantizer(X.Data + (long)r * X.Cols, Output + r * RowBytes, X.Cols);
        }
    }

    /// <summary>
    /// y[t, r] = dot(W[r], x[t]). Weight rows are handed out in chunks (a multiple of the tile rows); each chunk is multiplied with
    /// every token, a block of tokens at a time (sized so the block's activations stay in L2 while the chunk's rows pass over them),
    /// through the 16-row × TileTokens tile kernel where the type has one, else 8 rows × 4 tokens, so a chunk of weights is read
    /// from memory once per call.
    /// </summary>
    private sealed class MatMulWork : IParallelWork
    {
        /// <summary>Activation bytes per token block (<see cref="MatMulDriver.TokenBlockBytes"/>).</summary>
        public long TokenBlockBytes;

        /// <summary>Most floats of tile scales kept on a worker's stack (<see cref="MatMulDriver.MaxTileScratchFloats"/>).</summary>
        public int MaxTileScaleFloats;
        public CpuWeight W = null!;
        public byte* Repacked; // W.Repacked when the call began
        public CpuActivation Y = null!;
        public byte* X;
        public long XRowBytes;
        public int Tokens;
        public int ChunkRows;
        public int NextChunk;

        public void Execute(int thread, int threadCount)
        {
            var w = W;
            var k = w.Kernel;
            int rows = w.Rows;
            int tileTokens = k.RepackedTile != null ? k.TileTokens : 4;
            int block = (int)Math.Max(tileTokens, TokenBlockBytes / Math.Max(1, XRowBytes) / tileTokens * tileTokens);
            long scaleFloats = k.RepackedTile != null ? (long)w.Cols / k.BlockSize * k.TileScaleFloats : long.MaxValue;
            float* tileScales = null;
            if (scaleFloats <= MaxTileScaleFloats)
            {
                float* buffer = stackalloc float[(int)scaleFloats];
                tileScales = buffer;
            }
            while (true)
            {
                int chunk = Interlocked.Increment(ref NextChunk) - 1;
                int r0 = chunk * ChunkRows;
                if (r0 >= rows) break;
                int r1 = Math.Min(rows, r0 + ChunkRows);
                for (int t0 = 0; t0 < Tokens; t0 += block)
                    Multiply(r0, r1, t0, Math.Min(Tokens, t0 + block), tileScales);
            }
        }

        /// <summary>
        /// Rows r0..r1 of the weight times tokens t0..t1; <paramref name="tileScales"/> is scratch for one tile's scales, or null
        /// (no tile kernel).
        /// </summary>
        private void Multiply(int r0, int r1, int t0, int t1, float* tileScales)
        {
            var w = W;
            var k = w.Kernel;
            int cols = w.Cols, yCols = Y.Cols;
            float* results = stackalloc float[32];

            // Repacked groups of 8 rows: pairs of groups through the tile kernel, then single groups.
            int g = k.RepackRows;
            int rEnd = Repacked != null ? Math.Min(r1, w.RepackedRows) : r0;
            int r = r0;
            if (tileScales != null)
            {
                int tt = k.TileTokens;
                nint groupStride = (nint)(g * w.RowBytes);
                var tail = k.RepackedTileTail;
                // with a 4-token tail tile, a remainder of 2 or 3 tokens after 6-token tiles gives back one full tile: 6 + 2 = 4 + 4,
                // 6 + 3 = 4 + 4 + 1 (tiles of a multiple of 4 tokens leave the same 2 or 3 either way)
                int full = (t1 - t0) / tt, rest = (t1 - t0) % tt;
                if (tail != null && full > 0 && rest is 2 or 3 && tt % 4 != 0) full--;
                for (; r + QuantKernel.TileRows <= rEnd; r += QuantKernel.TileRows)
                {
                    byte* group = Repacked + r * w.RowBytes;
                    int t = t0, tEnd = t0 + full * tt;
                    if (full > 0 || (tail != null && t + 4 <= t1)) k.RepackedTileScales(cols, group, groupStride, tileScales);
                    for (; t < tEnd; t += tt)
                        k.RepackedTile(cols, group, groupStride, tileScales, X + t * XRowBytes, (nint)XRowBytes, Y.Data + (long)t * yCols + r, yCols);
                    if (tail != null)
                        for (; t + 4 <= t1; t += 4)
                            tail(cols, group, groupStride, tileScales, X + t * XRowBytes, (nint)XRowBytes, Y.Data + (long)t * yCols + r, yCols);
                    // the tokens left (1-3 after a tail tile, 1-7 after an 8-token tile): 4 at a time through the 8-row x 4-token
                    // dot, after the single-token dots (which prefetch the weights' stream; the 4-token dots then find them in cache):
                    // a batch of a few sequences (serving) unpacks each group's weights once per 4 tokens, not once per token
                    int singles = (t1 - t) % 4;
                    for (int s = 0; s < singles; s++, t++)
                    {
                        float* y = Y.Data + (long)t * yCols + r;
                        k.RepackedDot(cols, group, X + t * XRowBytes, y);
                        k.RepackedDot(cols, group + groupStride, X + t * XRowBytes, y + g);
                    }
                    for (; t + 4 <= t1; t += 4)
                    {
                        Dot4Group(group, t, r, results);
                        Dot4Group(group + groupStride, t, r + g, results);
                    }
                }
            }
            for (; r < rEnd; r += g)
            {
                byte* group = Repacked + r * w.RowBytes;
                int t = t0;
                for (; t + 4 <= t1; t += 4) Dot4Group(group, t, r, results);
                for (; t < t1; t++) k.RepackedDot(cols, group, X + t * XRowBytes, Y.Data + (long)t * yCols + r);
            }

            // Plain rows: 4 × 4 tiles where the type has them, then the 4-token dot for GEMM, the single dot for the rest.
            r = Math.Max(r0, rEnd);
            if (k.Dot4x4 != null && t1 - t0 >= 4)
            {
                for (; r + 4 <= r1; r += 4)
                {
                    byte* wr = w.Data + r * w.RowBytes;
                    int t = t0;
                    for (; t + 4 <= t1; t += 4)
                    {
                        k.Dot4x4(cols, wr, (nint)w.RowBytes, X + t * XRowBytes, (nint)XRowBytes, results);
                        for (int c = 0; c < 4; c++)
                            for (int i = 0; i < 4; i++) Y.Data[(long)(t + c) * yCols + r + i] = results[c * 4 + i];
                    }
                    for (; t < t1; t++)
                        for (int i = 0; i < 4; i++) Y.Data[(long)t * yCols + r + i] = k.Dot(cols, wr + i * w.RowBytes, X + t * XRowBytes);
                }
            }
            for (; r < r1; r++)
            {
                byte* wr = w.Data + r * w.RowBytes;
                int t = t0;
                for (; t + 4 <= t1; t += 4)
                {
                    k.Dot4(cols, wr, X + t * XRowBytes, (nint)XRowBytes, results);
                    for (int c = 0; c < 4; c++) Y.Data[(long)(t + c) * yCols + r] = results[c];
                }
                for (; t < t1; t++) Y.Data[(long)t * yCols + r] = k.Dot(cols, wr, X + t * XRowBytes);
            }
        }

        /// <summary>
        /// The repacked group at <paramref name="group"/> (rows r..r+7) times tokens t..t+3; <paramref name="results"/> is 32 floats
        /// of scratch.
        /// </summary>
        private void Dot4Group(byte* group, int t, int r, float* results)
        {
            var k = W.Kernel;
            int yCols = Y.Cols;
            k.RepackedDot4(W.Cols, group, X + t * XRowBytes, (nint)XRowBytes, results);
            for (int c = 0; c < 4; c++)
            {
                float* y = Y.Data + (long)(t + c) * yCols + r;
                for (int i = 0; i < k.RepackRows; i++) y[i] = results[c * 8 + i];
            }
        }
    }
}
