namespace Infer.Runtime.Gguf;

/// <summary>
/// A tensor stored in a GGUF file: a view into the memory map, never a copy. <see cref="Dims"/> lists ggml's ne[]:
/// Dims[0] is the row length (contiguous), Dims[1] the number of rows, and so on.
/// </summary>
public sealed unsafe class GgufTensor
{
    private readonly GgufFile _file;

    internal GgufTensor(GgufFile file, string name, GgmlType type, long[] dims, long relativeOffset, long absoluteOffset, long byteSize)
    {
        _file = file;
        Name = name;
        Type = type;
        Dims = dims;
        RelativeOffset = relativeOffset;
        FileOffset = absoluteOffset;
        ByteSize = byteSize;
        long n = 1;
        foreach (var d in dims) n *= d;
        ElementCount = n;
    }

    public string Name { get; }
    public GgmlType Type { get; }
    public IReadOnlyList<long> Dims { get; }

    /// <summary>Offset from the start of the data section, as stored in the file.</summary>
    public long RelativeOffset { get; }

    /// <summary>Offset from the start of the file.</summary>
    public long FileOffset { get; }
    public long ByteSize { get; }
    public long ElementCount { get; }

    /// <summary>Row length (ne[0]).</summary>
    public long RowLength => Dims[0];

    /// <summary>Number of rows (product of ne[1..]).</summary>
    public long RowCount => ElementCount / Dims[0];

    public long RowBytes => ByteSize / RowCount;

    /// <summary>Pointer to the first byte of the tensor inside the mapping; valid while the file is open.</summary>
    public byte* Data => _file.BasePointer + FileOffset;

    /// <summary>The bytes as a span; only for tensors under 2 GB (use <see cref="Data"/> otherwise).</summary>
    public ReadOnlySpan<byte> Span => ByteSize <= int.MaxValue
        ? new ReadOnlySpan<byte>(Data, (int)ByteSize)
        : throw new InvalidOperationException($"tensor '{Name}' is {ByteSize} bytes; address it through Data");

    public string ShapeString => "[" + string.Join(", ", Dims) + "]";

    public override string ToString() => $"{Name} {GgmlTypeInfo.Name(Type)} {ShapeString}";
}
