using System.Numerics.Tensors;
using Infer.Runtime.Backend;

namespace Infer.Runtime.Imatrix;

/// <summary>
/// Collects an importance matrix while a model runs (llama.cpp's llama-imatrix): for every matmul of a layer weight
/// (<c>blk.*</c>, and <c>output.weight</c> when asked) over a batch of at least <see cref="MinRows"/> rows, the sums of its input
/// columns' squares and of the columns themselves, and the rows counted (<see cref="ImatrixEntry"/>). Wraps a backend whose
/// activations it can read back (<see cref="IBackend.ReadRows"/>); the fused operations run as their primitives, so Q, K and V
/// (gate and up) each see the same input, as in llama.cpp.
/// </summary>
public sealed class ImatrixBackend(IBackend inner, bool processOutput = false) : ForwardingBackend(inner)
{
    /// <summary>llama-imatrix ignores smaller batches (a generation step's matmuls).</summary>
    public const int MinRows = 16;

    private readonly Dictionary<string, ImatrixEntry> _entries = new(StringComparer.Ordinal);
    private float[] _rows = [];
    private int _batchRows;

    /// <summary>What has been collected, by weight name.</summary>
    public IReadOnlyDictionary<string, ImatrixEntry> Entries => _entries;

    public override void SetBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> sequences)
    {
        _batchRows = tokens.Length;
        base.SetBatch(tokens, positions, sequences);
    }

    public override void MatMul(IWeight w, IActivation x, IActivation y, int rows = -1)
    {
        int n = rows < 0 ? _batchRows : rows;
        if (n >= MinRows && (w.Name.StartsWith("blk.", StringComparison.Ordinal) || (processOutput && w.Name == "output.weight")))
            Collect(w, x, n);
        base.MatMul(w, x, y, rows);
    }

    /// <exception cref="InvalidDataException">an input value is not finite (llama-imatrix stops there too).</exception>
    private void Collect(IWeight w, IActivation x, int n)
    {
        int cols = x.Cols;
        if ((long)n * cols > _rows.Length) _rows = new float[(long)n * cols];
        var rows = _rows.AsSpan(0, n * cols);
        Inner.ReadRows(x, n, rows);
        if (!_entries.TryGetValue(w.Name, out var e)) _entries[w.Name] = e = new ImatrixEntry(w.Cols);
        if (e.Sum2.Length != w.Cols) throw new InvalidOperationException($"{w.Name}: {w.Cols} columns, collected {e.Sum2.Length} before");
        for (int r = 0; r < n; r++)
        {
            var row = rows.Slice(r * cols, w.Cols);
            TensorPrimitives.FusedMultiplyAdd(row, row, e.Sum2, e.Sum2); // float sums, as llama-imatrix keeps them
            TensorPrimitives.Add(row, e.Sum, e.Sum);
        }
        if (!float.IsFinite(TensorPrimitives.Sum(e.Sum2)))
            throw new InvalidDataException($"a value that is not finite in the input of {w.Name}: the model's weights are not finite (a corrupt "
                + "file?) or its activations overflowed");
        e.Count += n;
    }
}

/// <summary>One weight's statistics: per input column Σx² and Σx over <see cref="Count"/> rows.</summary>
public sealed class ImatrixEntry(int cols)
{
    public float[] Sum2 { get; } = new float[cols];
    public float[] Sum { get; } = new float[cols];
    public long Count { get; set; }
}
