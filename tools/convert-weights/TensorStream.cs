using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights;

/// <summary>Produces a tensor's rows as float32, a chunk at a time.</summary>
public interface ITensorSource
{
    /// <summary>Fills <paramref name="dst"/> (count x row length floats) with rows firstRow .. firstRow+count-1.</summary>
    void ReadRows(long firstRow, int count, int rowLength, Span<float> dst);
}

/// <summary>A tensor whose bytes are already in the output type and are copied unchanged.</summary>
public interface IRawTensorSource
{
    unsafe byte* Data { get; }
}

/// <summary>One tensor of the output file: GGUF name, type, ggml dims (dims[0] = row length) and where its values come from.</summary>
public sealed record PlannedTensor(string Name, GgmlType Type, long[] Dims, object Source)
{
    /// <summary>
    /// Importance weights for the quantizer (llama-quantize --imatrix): one per column, per matrix of a 3-D tensor
    /// (row length × dims[2]); null: none.
    /// </summary>
    public float[]? Importance { get; init; }

    /// <summary>Rows per matrix: the importance weights change every this many rows.</summary>
    public long RowsPerMatrix => Dims.Length > 2 ? Dims[1] : Rows;

    public long RowLength => Dims[0];
    public long Rows => Dims.Skip(1).Aggregate(1L, (a, b) => a * b);
    public long ElementCount => RowLength * Rows;
    public long ByteSize => GgmlTypeInfo.RowBytes(Type, RowLength) * Rows;
}

/// <summary>Progress of a conversion: bytes written so far of the total, and the tensor being written.</summary>
public readonly record struct WriteProgress(long BytesDone, long BytesTotal, string Tensor);

/// <summary>Streams planned tensors into a <see cref="GgufWriter"/> in chunks, so memory stays bounded whatever the model size.</summary>
public static class TensorStream
{
    /// <summary>Floats converted per chunk (16 MB of float32).</summary>
    public const int ChunkFloats = 4 << 20;

    /// <summary>Encodes count rows; large chunks are split across cores (each row is independent).</summary>
    private static void EncodeRows(GgmlType type, float[] floats, byte[] bytes, int count, int rowLength, int rowBytes, float[]? importance)
    {
        const int minFloatsPerTask = 1 << 18;
        int tasks = (int)Math.Min(Environment.ProcessorCount, Math.Max(1, (long)count * rowLength / minFloatsPerTask));
        if (tasks <= 1)
        {
            RowEncoder.Encode(type, floats.AsSpan(0, count * rowLength), rowLength, bytes.AsSpan(0, count * rowBytes), importance);
            return;
        }
        int rowsPerTask = (count + tasks - 1) / tasks;
        Parallel.For(0, tasks, k =>
        {
            int first = k * rowsPerTask;
            int n = Math.Min(rowsPerTask, count - first);
            if (n <= 0) return;
            RowEncoder.Encode(type, floats.AsSpan(first * rowLength, n * rowLength), rowLength, bytes.AsSpan(first * rowBytes, n * rowBytes),
                importance);
        });
    }

    public static unsafe void WriteAll(GgufWriter writer, IReadOnlyList<PlannedTensor> tensors, IProgress<WriteProgress>? progress)
    {
        long total = tensors.Sum(t => t.ByteSize);
        long done = 0;
        float[]? floats = null;
        byte[]? bytes = null;
        foreach (var t in tensors)
        {
            progress?.Report(new WriteProgress(done, total, t.Name));
            if (t.Source is IRawTensorSource raw)
            {
                const int step = 16 << 20;
                for (long off = 0; off < t.ByteSize; off += step)
                {
                    int n = (int)Math.Min(step, t.ByteSize - off);
                    writer.WriteTensorData(new ReadOnlySpan<byte>(raw.Data + off, n));
                    done += n;
                    progress?.Report(new WriteProgress(done, total, t.Name));
                }
                continue;
            }
            var src = (ITensorSource)t.Source;
            int rowLength = checked((int)t.RowLength);
            int rowBytes = checked((int)GgmlTypeInfo.RowBytes(t.Type, rowLength));
            int rowsPerChunk = (int)Math.Max(1, Math.Min(t.Rows, ChunkFloats / rowLength));
            floats ??= new float[Math.Max(ChunkFloats, rowLength)];
            if (floats.Length < (long)rowsPerChunk * rowLength) floats = new float[rowsPerChunk * rowLength];
            if (bytes is null || bytes.Length < (long)rowsPerChunk * rowBytes) bytes = new byte[(long)rowsPerChunk * rowBytes];
            for (long row = 0; row < t.Rows; row += rowsPerChunk)
            {
                int count = (int)Math.Min(rowsPerChunk, t.Rows - row);
                float[]? importance = null;
                if (t.Importance is not null)
                {
                    // a chunk stays inside one matrix, whose weights it takes
                    count = (int)Math.Min(count, t.RowsPerMatrix - row % t.RowsPerMatrix);
                    importance = t.Importance.AsSpan(checked((int)(row / t.RowsPerMatrix * rowLength)), rowLength).ToArray();
                }
                var f = floats.AsSpan(0, count * rowLength);
                var b = bytes.AsSpan(0, count * rowBytes);
                src.ReadRows(row, count, rowLength, f);
                EncodeRows(t.Type, floats, bytes, count, rowLength, rowBytes, importance);
                writer.WriteTensorData(b);
                done += b.Length;
                progress?.Report(new WriteProgress(done, total, t.Name));
            }
        }
    }
}

/// <summary>Rows of a safetensors tensor, optionally with the llama Q/K row permutation applied.</summary>
public sealed class SafetensorsSource(SafetensorsTensor tensor, int permuteHeads) : ITensorSource
{
    public SafetensorsTensor Tensor => tensor;

    public void ReadRows(long firstRow, int count, int rowLength, Span<float> dst)
    {
        if (tensor.Shape.Count == 1 && permuteHeads > 0)
        {
            // a Q/K bias: the permutation moves single elements
            var all = new float[rowLength];
            tensor.ReadFloats(0, all);
            for (int k = 0; k < rowLength; k++) dst[k] = all[QkPermutation.SourceRow(k, permuteHeads, rowLength)];
            return;
        }
        long rows = tensor.ElementCount / rowLength;
        for (int i = 0; i < count; i++)
        {
            long r = firstRow + i;
            long srcRow = permuteHeads > 0 ? QkPermutation.SourceRow(r, permuteHeads, rows) : r;
            tensor.ReadFloats(srcRow * rowLength, dst.Slice(i * rowLength, rowLength));
        }
    }
}

/// <summary>A small tensor computed in memory (rope_freqs, norms of a synthetic model).</summary>
public sealed class ArraySource(float[] values) : ITensorSource
{
    public void ReadRows(long firstRow, int count, int rowLength, Span<float> dst) =>
        values.AsSpan(checked((int)(firstRow * rowLength)), count * rowLength).CopyTo(dst);
}
