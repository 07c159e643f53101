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
    private int _quantizedWidth = 1; // and how many times each row was repeated (QuantKernel.GemmViaWidth)
    private byte*[] _repeatScratch = []; // per worker: one input row repeated that many times, as floats
    private long _repeatCapacity;
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

    /// <summary>
    /// Batches of at least this many tokens multiply a weight whose kernel has <see cref="QuantKernel.GemmVia"/> through it (each
    /// thread converts its rows, then runs the other type's tiles); smaller batches keep the type's own dots. Tests lower it.
    /// </summary>
    public int ConvertMinTokens { get; set; } = 16;

    // per worker: the rows of its current chunk converted for GemmVia (repacked groups, then up to 8 plain rows, then the group
    // offsets of RowMins per 16-row tile); and the activations' sums per group of 16 (GroupOffsets)
    private byte*[] _convertScratch = [];
    private long _convertCapacity;
    private byte* _groupSums;
    private long _groupSumsCapacity;

    /// <summary>y[t, :] = W · x[t, :] for the first <paramref name="n"/> rows.</summary>
    public void MatMul(CpuWeight w, CpuActivation xa, CpuActivation ya, int n)
    {
        if (xa.Cols != w.Cols || ya.Cols < w.Rows)
            throw new ArgumentException($"matmul shape mismatch: '{w.Name}' is [{w.Rows} x {w.Cols}], input has {xa.Cols} columns, output {ya.Cols}");

        byte* input;
        long inputRowBytes;
        // the weight's repacked copy as of now: a background repack may publish it during the call; this call keeps the layout
        byte* repacked = w.Repacked;
        var via = w.Kernel.GemmVia is { } v && n >= ConvertMinTokens && w.Rows >= QuantKernel.TileRows ? v : null;
        var kernel = via ?? w.Kernel; // the kernels that see the activations
        // one pass with the tiles' scales from the weight's groups where every row is in one (its repacked copy's, or the chunk's
        // rows repacked in the scratch when it has none yet) and the tiles' scales fit the scratch
        var scaled = via != null && w.Kernel.GemmViaScaled is { } sv && w.Rows % w.Kernel.RepackRows == 0
            && (long)w.Cols / via.BlockSize * via.TileScaleFloats <= MaxTileScratchFloats ? sv : null;
        // the converted rows are this many times as long, the activations repeated
        int width = via != null && scaled == null ? w.Kernel.GemmViaWidth : 1;
        if (kernel.VecDotType == GgmlType.F32)
        {
            input = (byte*)xa.Data;
            inputRowBytes = (long)xa.Cols * sizeof(float);
        }
        else
        {
            // Activation rows as the kernels want them (Q8_0 rows carry per-block sums after the blocks, for the repacked kernels).
            var quantizer = kernel.QuantizeActivations;
            inputRowBytes = kernel.ActivationRowBytes((long)xa.Cols * width);
            bool fresh = ReferenceEquals(_quantizedSource, xa) && _quantizedVersion == xa.Version
                && _quantizedWith == (nint)quantizer && _quantizedWidth == width && _quantizedRows >= n;
            if (!fresh)
            {
                EnsureCapacity(ref _quantized, ref _quantizedCapacity, inputRowBytes * n);
                if (width > 1) EnsurePerWorker(ref _repeatScratch, ref _repeatCapacity, (long)xa.Cols * width * sizeof(float));
                _quantize.Width = width;
                _quantize.Repeat = _repeatScratch;
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
                _quantizedWidth = width;
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
        _matMul.Repacked = repacked;
        _matMul.Via = via;
        _matMul.Scaled = scaled;
        _matMul.Cols = w.Cols * width;
        int unit = via != null || (_matMul.Repacked != null && kernel.RepackedTile != null) ? QuantKernel.TileRows : 8;
        _matMul.ChunkRows = Math.Max(unit, w.Rows / (pool.ThreadCount * 8)) / unit * unit;
        if (via != null)
        {
            long mins = w.Kernel.RowMins == null ? 0
                : ((long)_matMul.ChunkRows / QuantKernel.TileRows + 1) * QuantKernel.TileRows * (w.Cols / GroupOffsets.GroupSize + 1);
            long own = scaled != null && repacked == null ? _matMul.ChunkRows * w.RowBytes : 0; // the chunk's own groups (Convert)
            EnsurePerWorker(ref _convertScratch, ref _convertCapacity,
                (_matMul.ChunkRows + 8) * via.RowBytes((long)w.Cols * width) + Math.Max(mins * sizeof(float), own));
            _matMul.ConvertScratch = _convertScratch;
            if (w.Kernel.RowMins != null)
            {
                EnsureCapacity(ref _groupSums, ref _groupSumsCapacity, (long)n * (w.Cols / GroupOffsets.GroupSize) * sizeof(float));
                GroupOffsets.GroupSums(xa.Data, n, w.Cols, (float*)_groupSums);
            }
            _matMul.GroupSums = (float*)_groupSums;
        }
        _matMul.NextChunk = 0;
        pool.Run(_matMul);
        ya.Version++;
    }

    /// <summary>One buffer of at least <paramref name="bytes"/> per worker thread (grown, never shrunk).</summary>
    private void EnsurePerWorker(ref byte*[] perWorker, ref long capacity, long bytes)
    {
        if (perWorker.Length >= pool.ThreadCount && bytes <= capacity) return;
        foreach (byte* p in perWorker) buffers.Free(p);
        capacity = Math.Max(bytes, capacity);
        perWorker = new byte*[pool.ThreadCount];
        for (int i = 0; i < perWorker.Length; i++) perWorker[i] = (byte*)buffers.Alloc(capacity);
    }

    /// <summary>A buffer of at least <paramref name="bytes"/> (grown, never shrunk; the contents are not kept).</summary>
    private void EnsureCapacity(ref byte* buffer, ref long capacity, long bytes)
    {
        if (bytes <= capacity) return;
        buffers.Free(buffer);
        buffer = (byte*)buffers.Alloc(bytes);
        capacity = bytes;
    }

    /// <summary>Quantizes the rows of the matmul input to the weight's vec-dot type, in parallel over rows.</summary>
    private sealed class QuantizeWork : IParallelWork
    {
        public CpuActivation X = null!;
        public byte* Output;
        public delegate*<float*, byte*, int, void> Quantizer;
        public int Rows;
        public long RowBytes;
        public int Width = 1; // each row quantized as Width copies of itself (in Repeat[thread]) when above 1
        public byte*[] Repeat = [];

        public void Execute(int thread, int threadCount)
        {
            var (start, end) = WorkerPool.Split(Rows, thread, threadCount);
            int cols = X.Cols;
            for (int r = start; r < end; r++)
            {
                float* x = X.Data + (long)r * cols;
                if (Width > 1)
                {
                    float* repeated = (float*)Repeat[thread];
                    for (int k = 0; k < Width; k++) new ReadOnlySpan<float>(x, cols).CopyTo(new Span<float>(repeated + (long)k * cols, cols));
                    x = repeated;
                }
                Quantizer(x, Output + r * RowBytes, cols * Width);
            }
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
        public QuantKernel? Via; // W.Kernel.GemmVia for this call, or null
        public ScaledVia? Scaled; // W.Kernel.GemmViaScaled when this call takes it (Via's tiles, scales from W's groups), or null
        public int Cols; // the rows' length as the kernels see them: W.Cols, times GemmViaWidth with Via
        public byte*[] ConvertScratch = [];
        public float* GroupSums; // with Via and RowMins: the activations' sums per group of 16, [token][group]

        /// <summary>
        /// A weight's rows as the kernels read them: repacked groups up to <see cref="RepackedRows"/>, plain rows after; with
        /// <see cref="Scaled"/>, the tiles' scales and the leftover tokens' dots from the weight's own groups (<see cref="Original"/>,
        /// <see cref="OriginalRowBytes"/>).
        /// </summary>
        private readonly struct RowSource(QuantKernel kernel, byte* data, long rowBytes, byte* repacked, int repackedRows,
            ScaledVia? scaled = null, byte* original = null, long originalRowBytes = 0)
        {
            public readonly QuantKernel K = kernel;
            public readonly byte* Data = data, Repacked = repacked, Original = original;
            public readonly long RowBytes = rowBytes, OriginalRowBytes = originalRowBytes;
            public readonly int RepackedRows = repackedRows;
            public readonly ScaledVia? Scaled = scaled;
        }

        public void Execute(int thread, int threadCount)
        {
            var w = W;
            var k = Via ?? w.Kernel;
            int rows = w.Rows;
            int tileTokens = k.RepackedTile != null ? k.TileTokens : 4;
            int block = (int)Math.Max(tileTokens, TokenBlockBytes / Math.Max(1, XRowBytes) / tileTokens * tileTokens);
            long scaleFloats = k.RepackedTile != null ? (long)Cols / k.BlockSize * k.TileScaleFloats : long.MaxValue;
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
                var source = Via is null ? new RowSource(k, w.Data, w.RowBytes, Repacked, w.RepackedRows) : Convert(thread, r0, r1);
                for (int t0 = 0; t0 < Tokens; t0 += block)
                {
                    Multiply(source, r0, r1, t0, Math.Min(Tokens, t0 + block), tileScales);
                    if (Via != null && w.Kernel.RowMins != null) AddGroupOffsets(MinsScratch(thread), r0, r1, t0, Math.Min(Tokens, t0 + block));
                }
            }
        }

        /// <summary>
        /// Rows r0..r1 converted by <see cref="QuantKernel.ConvertRow"/> into this thread's scratch: whole groups of 8 repacked for
        /// <see cref="Via"/>'s tiles, the rest (fewer than 8) as plain rows.
        /// </summary>
        private RowSource Convert(int thread, int r0, int r1)
        {
            var w = W;
            var via = Via!;
            int cols = Cols, g = via.RepackRows;
            long rb = via.RowBytes(cols);
            byte* groups = ConvertScratch[thread], plain = groups + ChunkRows * rb;
            int full = (r1 - r0) / g * g;
            if (Scaled != null) // every row is in a group (MatMul checked)
            {
                byte* original = Repacked;
                if (original == null) // no repacked copy (yet, or --no-repack): the chunk's rows repacked here, after the plain rows
                {
                    byte* own = plain + 8 * rb;
                    for (int r = 0; r < full; r += g) w.Kernel.Repack(w.Data + (r0 + r) * w.RowBytes, (nint)w.RowBytes, own + r * w.RowBytes, w.Cols);
                    original = own - r0 * w.RowBytes;
                }
                for (int r = 0; r < full; r += g) Scaled.Convert(original + (r0 + r) * w.RowBytes, groups + r * rb, w.Cols);
                return new RowSource(via, null, rb, groups - r0 * rb, r1, Scaled, original, w.RowBytes);
            }
            for (int r = 0; r < full; r += g)
            {
                // from the weight's repacked copy where it has one (its mapped rows have left the process), else from the rows
                if (Repacked != null && w.Kernel.ConvertGroup != null && r0 + r + g <= w.RepackedRows)
                {
                    w.Kernel.ConvertGroup(Repacked + (r0 + r) * w.RowBytes, groups + r * rb, w.Cols);
                    continue;
                }
                for (int i = 0; i < g; i++) w.Kernel.ConvertRow(w.Data + (r0 + r + i) * w.RowBytes, plain + i * rb, w.Cols);
                via.Repack(plain, (nint)rb, groups + r * rb, cols);
            }
            for (int r = full; r < r1 - r0; r++) w.Kernel.ConvertRow(w.Data + (r0 + r) * w.RowBytes, plain + (r - full) * rb, w.Cols);
            if (w.Kernel.RowMins != null)
            {
                // per 16-row tile, [group][16] (rows past the chunk zero); after the tiles, one row's offsets as RowMins writes them
                int groupCount = w.Cols / GroupOffsets.GroupSize, tiles = (r1 - r0 + QuantKernel.TileRows - 1) / QuantKernel.TileRows;
                float* mins = MinsScratch(thread), row = mins + (long)tiles * QuantKernel.TileRows * groupCount;
                new Span<float>(mins, tiles * QuantKernel.TileRows * groupCount).Clear();
                for (int r = 0; r < r1 - r0; r++)
                {
                    w.Kernel.RowMins(w.Data + (r0 + r) * w.RowBytes, row, w.Cols);
                    GroupOffsets.Scatter(mins + (long)(r / QuantKernel.TileRows) * QuantKernel.TileRows * groupCount, r % QuantKernel.TileRows,
                        row, groupCount);
                }
            }
            return new RowSource(via, plain - (r0 + full) * rb, rb, groups - r0 * rb, r0 + full);
        }

        /// <summary>This thread's group offsets (after its converted rows in the scratch).</summary>
        private float* MinsScratch(int thread) => (float*)(ConvertScratch[thread] + (ChunkRows + 8) * Via!.RowBytes(Cols));

        /// <summary>y[t, r] += Σ_g offset[r, g]·sums[t, g] for rows r0..r1 and tokens t0..t1 (<see cref="GroupOffsets"/>).</summary>
        private void AddGroupOffsets(float* mins, int r0, int r1, int t0, int t1)
        {
            int groupCount = W.Cols / GroupOffsets.GroupSize;
            for (int r = r0; r < r1; r += QuantKernel.TileRows)
                GroupOffsets.Add(mins + (long)(r - r0) * groupCount, groupCount, GroupSums, t0, t1, Y.Data, Y.Cols, r,
                    Math.Min(QuantKernel.TileRows, r1 - r));
        }

        /// <summary>
        /// Rows r0..r1 of the weight times tokens t0..t1; <paramref name="tileScales"/> is scratch for one tile's scales, or null
        /// (no tile kernel).
        /// </summary>
        private void Multiply(in RowSource source, int r0, int r1, int t0, int t1, float* tileScales)
        {
            var k = source.K;
            byte* repacked = source.Repacked;
            long rowBytes = source.RowBytes;
            int cols = Cols, yCols = Y.Cols;
            float* results = stackalloc float[32];

            // Repacked groups of 8 rows: pairs of groups through the tile kernel, then single groups.
            int g = k.RepackRows;
            int rEnd = repacked != null ? Math.Min(r1, source.RepackedRows) : r0;
            int r = r0;
            if (tileScales != null)
            {
                int tt = k.TileTokens;
                nint groupStride = (nint)(g * rowBytes);
                var tail = k.RepackedTileTail;
                // with a 4-token tail tile, a remainder of 2 or 3 tokens after 6-token tiles gives back one full tile: 6 + 2 = 4 + 4,
                // 6 + 3 = 4 + 4 + 1 (tiles of a multiple of 4 tokens leave the same 2 or 3 either way)
                int full = (t1 - t0) / tt, rest = (t1 - t0) % tt;
                if (tail != null && full > 0 && rest is 2 or 3 && tt % 4 != 0) full--;
                for (; r + QuantKernel.TileRows <= rEnd; r += QuantKernel.TileRows)
                {
                    byte* group = repacked + r * rowBytes;
                    int t = t0, tEnd = t0 + full * tt;
                    if (full > 0 || (tail != null && t + 4 <= t1))
                    {
                        if (source.Scaled is { } sv)
                            sv.TileScales(cols, source.Original + r * source.OriginalRowBytes, (nint)(g * source.OriginalRowBytes), tileScales);
                        else k.RepackedTileScales(cols, group, groupStride, tileScales);
                    }
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
                        GroupDot(source, r, t, y);
                        GroupDot(source, r + g, t, y + g);
                    }
                    for (; t + 4 <= t1; t += 4)
                    {
                        Dot4Group(source, r, t, results);
                        Dot4Group(source, r + g, t, results);
                    }
                }
            }
            for (; r < rEnd; r += g)
            {
                int t = t0;
                for (; t + 4 <= t1; t += 4) Dot4Group(source, r, t, results);
                for (; t < t1; t++) GroupDot(source, r, t, Y.Data + (long)t * yCols + r);
            }

            // Plain rows: 4 × 4 tiles where the type has them, then the 4-token dot for GEMM, the single dot for the rest.
            r = Math.Max(r0, rEnd);
            if (k.Dot4x4 != null && t1 - t0 >= 4)
            {
                for (; r + 4 <= r1; r += 4)
                {
                    byte* wr = source.Data + r * rowBytes;
                    int t = t0;
                    for (; t + 4 <= t1; t += 4)
                    {
                        k.Dot4x4(cols, wr, (nint)rowBytes, X + t * XRowBytes, (nint)XRowBytes, results);
                        for (int c = 0; c < 4; c++)
                            for (int i = 0; i < 4; i++) Y.Data[(long)(t + c) * yCols + r + i] = results[c * 4 + i];
                    }
                    for (; t < t1; t++)
                        for (int i = 0; i < 4; i++) Y.Data[(long)t * yCols + r + i] = k.Dot(cols, wr + i * rowBytes, X + t * XRowBytes);
                }
            }
            for (; r < r1; r++)
            {
                byte* wr = source.Data + r * rowBytes;
                int t = t0;
                for (; t + 4 <= t1; t += 4)
                {
                    k.Dot4(cols, wr, X + t * XRowBytes, (nint)XRowBytes, results);
                    for (int c = 0; c < 4; c++) Y.Data[(long)(t + c) * yCols + r] = results[c];
                }
                for (; t < t1; t++) Y.Data[(long)t * yCols + r] = k.Dot(cols, wr, X + t * XRowBytes);
            }
        }

        /// <summary>The repacked group of rows r..r+7 times token t into <paramref name="y"/>[0..7].</summary>
        private void GroupDot(in RowSource source, int r, int t, float* y)
        {
            if (source.Scaled is { } sv) sv.Dot(Cols, source.Original + r * source.OriginalRowBytes, X + t * XRowBytes, y);
            else source.K.RepackedDot(Cols, source.Repacked + r * source.RowBytes, X + t * XRowBytes, y);
        }

        /// <summary>The repacked group of rows r..r+7 times tokens t..t+3; <paramref name="results"/> is 32 floats of scratch.</summary>
        private void Dot4Group(in RowSource source, int r, int t, float* results)
        {
            int yCols = Y.Cols;
            var k = source.K;
            if (source.Scaled is { } sv) sv.Dot4(Cols, source.Original + r * source.OriginalRowBytes, X + t * XRowBytes, (nint)XRowBytes, results);
            else k.RepackedDot4(Cols, source.Repacked + r * source.RowBytes, X + t * XRowBytes, (nint)XRowBytes, results);
            for (int c = 0; c < 4; c++)
            {
                float* y = Y.Data + (long)(t + c) * yCols + r;
                for (int i = 0; i < k.RepackRows; i++) y[i] = results[c * 8 + i];
            }
        }
    }
}
