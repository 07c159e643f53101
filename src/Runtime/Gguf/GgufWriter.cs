using System.Buffers.Binary;
using System.Text;

namespace Infer.Runtime.Gguf;

/// <summary>Writing a model file failed: the path is not writable, the disk is full, or the caller broke the writer's protocol.</summary>
public class GgufWriteException : IOException
{
    public string FilePath { get; }

    public GgufWriteException(string filePath, string message, Exception? inner = null)
        : base($"{filePath}: {message}", inner)
    {
        FilePath = filePath;
    }
}

/// <summary>The disk (or quota) ran out of space while writing.</summary>
public sealed class GgufDiskFullException : GgufWriteException
{
    public GgufDiskFullException(string filePath, Exception? inner = null)
        : base(filePath, "no space left on device while writing (the partial output was removed)", inner) { }
}

/// <summary>
/// Writes a GGUF v3 file in one pass with bounded memory:
/// <list type="number">
/// <item>declare metadata (<see cref="Add(string, GgufValueType, object)"/> and typed helpers) and tensors
/// (<see cref="AddTensor"/>) in file order;</item>
/// <item><see cref="WriteHeader"/>;</item>
/// <item>stream each tensor's bytes, in declaration order, with <see cref="WriteTensorData"/> (any number of chunks per tensor);</item>
/// <item><see cref="Commit"/>: pads, flushes and renames the temporary file <c>PATH.tmp</c> to <c>PATH</c>.</item>
/// </list>
/// Disposing without <see cref="Commit"/> deletes the temporary file, so an interrupted run leaves no half-written model.
/// </summary>
public sealed class GgufWriter : IDisposable
{
    public const uint Version = 3;
    public const int MaxTensorNameBytes = 63; // GGML_MAX_NAME - 1

    private sealed record TensorInfo(string Name, GgmlType Type, long[] Dims, long ByteSize, long Offset);

    private readonly string _path;
    private readonly string? _tempPath;
    private Stream? _stream;
    private readonly bool _ownsStream;
    private readonly List<(string Key, GgufMetadataValue Value)> _metadata = [];
    private readonly HashSet<string> _keys = new(StringComparer.Ordinal);
    private readonly List<TensorInfo> _tensors = [];
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);
    private long _dataSize;
    private bool _headerWritten;
    private bool _committed;
    private int _currentTensor;
    private long _currentWritten;

    public uint Alignment { get; }

    /// <summary>Where the file appears on <see cref="Commit"/> (full path); until then it is written to <c>PATH.tmp</c>.</summary>
    public string Path => _path;

    /// <summary>Creates <c>path.tmp</c> beside <paramref name="path"/>; the file appears under its own name only on <see cref="Commit"/>.</summary>
    public GgufWriter(string path, uint alignment = GgufFile.DefaultAlignment)
    {
        if (alignment == 0 || (alignment & (alignment - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(alignment), $"alignment {alignment} is not a power of two");
        Alignment = alignment;
        _path = System.IO.Path.GetFullPath(path);
        _tempPath = _path + ".tmp";
        if (Directory.Exists(_path))
            throw new GgufWriteException(_path, "output path is a directory");
        string? dir = System.IO.Path.GetDirectoryName(_path);
        if (dir is not null && !Directory.Exists(dir))
            throw new GgufWriteException(_path, $"output folder '{dir}' does not exist");
        try
        {
            _stream = new FileStream(_tempPath, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw Translate(e, _tempPath, "cannot create output file");
        }
        _ownsStream = true;
    }

    /// <summary>Writes into a caller's stream (no temporary file, no rename); <paramref name="displayPath"/> names it in errors.</summary>
    public GgufWriter(Stream stream, string displayPath, uint alignment = GgufFile.DefaultAlignment)
    {
        if (alignment == 0 || (alignment & (alignment - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(alignment), $"alignment {alignment} is not a power of two");
        Alignment = alignment;
        _path = displayPath;
        _stream = stream;
        _ownsStream = false;
    }

    // ---- metadata ----

    public void Add(string key, GgufValueType type, object value)
    {
        if (_headerWritten) throw new InvalidOperationException("metadata must be added before WriteHeader");
        ArgumentException.ThrowIfNullOrEmpty(key);
        CheckValue(key, type, value, depth: 0);
        if (!_keys.Add(key)) throw new ArgumentException($"duplicate metadata key '{key}'", nameof(key));
        _metadata.Add((key, new GgufMetadataValue(type, value)));
    }

    /// <summary>Adds the key, or replaces its value in place when it was already added (keeps its position).</summary>
    public void Set(string key, GgufValueType type, object value)
    {
        if (_keys.Contains(key))
        {
            CheckValue(key, type, value, depth: 0);
            int i = _metadata.FindIndex(kv => kv.Key == key);
            _metadata[i] = (key, new GgufMetadataValue(type, value));
        }
        else Add(key, type, value);
    }

    public bool ContainsKey(string key) => _keys.Contains(key);

    public void AddString(string key, string value) => Add(key, GgufValueType.String, value);
    public void AddUInt32(string key, uint value) => Add(key, GgufValueType.UInt32, value);
    public void AddInt32(string key, int value) => Add(key, GgufValueType.Int32, value);
    public void AddUInt64(string key, ulong value) => Add(key, GgufValueType.UInt64, value);
    public void AddFloat32(string key, float value) => Add(key, GgufValueType.Float32, value);
    public void AddBool(string key, bool value) => Add(key, GgufValueType.Bool, value);
    public void AddStringArray(string key, string[] values) => Add(key, GgufValueType.Array, new GgufArray(GgufValueType.String, values));
    public void AddFloat32Array(string key, float[] values) => Add(key, GgufValueType.Array, new GgufArray(GgufValueType.Float32, values));
    public void AddInt32Array(string key, int[] values) => Add(key, GgufValueType.Array, new GgufArray(GgufValueType.Int32, values));

    private static void CheckValue(string key, GgufValueType type, object value, int depth)
    {
        bool ok = type switch
        {
            GgufValueType.UInt8 => value is byte,
            GgufValueType.Int8 => value is sbyte,
            GgufValueType.UInt16 => value is ushort,
            GgufValueType.Int16 => value is short,
            GgufValueType.UInt32 => value is uint,
            GgufValueType.Int32 => value is int,
            GgufValueType.Float32 => value is float,
            GgufValueType.Bool => value is bool,
            GgufValueType.String => value is string,
            GgufValueType.UInt64 => value is ulong,
            GgufValueType.Int64 => value is long,
            GgufValueType.Float64 => value is double,
            GgufValueType.Array => value is GgufArray,
            _ => false,
        };
        if (!ok) throw new ArgumentException($"metadata key '{key}': value of CLR type {value.GetType().Name} does not match GGUF type {type}");
        if (value is GgufArray a)
        {
            if (depth >= GgufFile.MaxArrayDepth)
                throw new ArgumentException($"metadata key '{key}': arrays nested deeper than {GgufFile.MaxArrayDepth}");
            Type expected = a.ElementType switch
            {
                GgufValueType.UInt8 => typeof(byte[]),
                GgufValueType.Int8 => typeof(sbyte[]),
                GgufValueType.UInt16 => typeof(ushort[]),
                GgufValueType.Int16 => typeof(short[]),
                GgufValueType.UInt32 => typeof(uint[]),
                GgufValueType.Int32 => typeof(int[]),
                GgufValueType.Float32 => typeof(float[]),
                GgufValueType.Bool => typeof(bool[]),
                GgufValueType.String => typeof(string[]),
                GgufValueType.UInt64 => typeof(ulong[]),
                GgufValueType.Int64 => typeof(long[]),
                GgufValueType.Float64 => typeof(double[]),
                GgufValueType.Array => typeof(GgufArray[]),
                _ => throw new ArgumentException($"metadata key '{key}': unknown array element type {a.ElementType}"),
            };
            if (a.Values.GetType() != expected)
                throw new ArgumentException($"metadata key '{key}': array of {a.ElementType} holds a {a.Values.GetType().Name}");
            if (a.Values is GgufArray[] nested)
                foreach (var n in nested) CheckValue(key, GgufValueType.Array, n, depth + 1);
            if (a.Values is string[] strings && Array.IndexOf(strings, null) >= 0)
                throw new ArgumentException($"metadata key '{key}': string array holds null");
        }
    }

    // ---- tensors ----

    /// <summary>Declares a tensor; <paramref name="dims"/> are ggml's ne[] (dims[0] = row length).</summary>
    public void AddTensor(string name, GgmlType type, ReadOnlySpan<long> dims)
    {
        if (_headerWritten) throw new InvalidOperationException("tensors must be declared before WriteHeader");
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (Encoding.UTF8.GetByteCount(name) > MaxTensorNameBytes)
            throw new ArgumentException($"tensor name '{name}' is longer than {MaxTensorNameBytes} bytes");
        if (dims.Length is 0 or > GgufFile.MaxDims)
            throw new ArgumentException($"tensor '{name}' has {dims.Length} dimensions (1 to {GgufFile.MaxDims} allowed)");
        if (!GgmlTypeInfo.TryGetLayout(type, out int blockSize, out int typeSize))
            throw new ArgumentException($"tensor '{name}' has unknown type id {(uint)type}");
        long elements = 1;
        foreach (long d in dims)
        {
            if (d <= 0) throw new ArgumentException($"tensor '{name}' has dimension {d}");
            elements = checked(elements * d);
        }
        if (dims[0] % blockSize != 0)
            throw new ArgumentException(
                $"tensor '{name}' row length {dims[0]} is not a multiple of the {GgmlTypeInfo.Name(type)} block size {blockSize}");
        if (!_tensorNames.Add(name)) throw new ArgumentException($"duplicate tensor name '{name}'");
        long size = checked(elements / blockSize * typeSize);
        _tensors.Add(new TensorInfo(name, type, dims.ToArray(), size, _dataSize));
        _dataSize = AlignUp(checked(_dataSize + size), Alignment);
    }

    public int TensorCount => _tensors.Count;

    /// <summary>Bytes the tensor data section will take, padding included.</summary>
    public long DataSize => _dataSize;

    /// <summary>Name of the tensor whose bytes <see cref="WriteTensorData"/> expects next, or null when all are written.</summary>
    public string? NextTensor => _currentTensor < _tensors.Count ? _tensors[_currentTensor].Name : null;

    /// <summary>Writes magic, counts, metadata, tensor infos and the padding before the data section.</summary>
    public void WriteHeader()
    {
        if (_headerWritten) throw new InvalidOperationException("header already written");
        if (Alignment != GgufFile.DefaultAlignment && !_keys.Contains("general.alignment"))
            Add("general.alignment", GgufValueType.UInt32, Alignment);
        _headerWritten = true;
        var header = new HeaderBuffer();
        header.U32(GgufFile.Magic);
        header.U32(Version);
        header.U64((ulong)_tensors.Count);
        header.U64((ulong)_metadata.Count);
        foreach (var (key, value) in _metadata)
        {
            header.Str(key);
            header.U32((uint)value.Type);
            header.Value(value.Type, value.Value);
        }
        foreach (var t in _tensors)
        {
            header.Str(t.Name);
            header.U32((uint)t.Dims.Length);
            foreach (long d in t.Dims) header.U64((ulong)d);
            header.U32((uint)t.Type);
            header.U64((ulong)t.Offset);
        }
        long padded = AlignUp(header.Length, Alignment);
        header.Zeros((int)(padded - header.Length));
        Write(header.AsSpan());
        _currentTensor = 0;
        _currentWritten = 0;
    }

    /// <summary>Appends bytes of the current tensor; a tensor may arrive in any number of chunks, tensors in declaration order.</summary>
    public void WriteTensorData(ReadOnlySpan<byte> data)
    {
        if (!_headerWritten) throw new InvalidOperationException("WriteHeader must come before tensor data");
        while (data.Length > 0)
        {
            if (_currentTensor >= _tensors.Count)
                throw new InvalidOperationException($"{data.Length} bytes of tensor data past the last declared tensor");
            var t = _tensors[_currentTensor];
            long left = t.ByteSize - _currentWritten;
            int n = (int)Math.Min(left, data.Length);
            Write(data[..n]);
            _currentWritten += n;
            data = data[n..];
            if (_currentWritten == t.ByteSize)
            {
                long pad = AlignUp(t.ByteSize, Alignment) - t.ByteSize;
                if (pad > 0) Write(new byte[pad]);
                _currentTensor++;
                _currentWritten = 0;
            }
        }
    }

    /// <summary>Checks every tensor was written in full, flushes, and (for path-based writers) renames the temporary file into place.</summary>
    public void Commit()
    {
        if (!_headerWritten) throw new InvalidOperationException("WriteHeader was not called");
        if (_currentTensor < _tensors.Count)
        {
            var t = _tensors[_currentTensor];
            throw new InvalidOperationException(
                $"tensor '{t.Name}' has {_currentWritten} of its {t.ByteSize} bytes; {_tensors.Count - _currentTensor} tensor(s) incomplete");
        }
        var stream = _stream ?? throw new ObjectDisposedException(_path);
        try
        {
            stream.Flush();
            if (stream is FileStream fs) fs.Flush(flushToDisk: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Translate(e, _path, "cannot flush output");
        }
        if (!_ownsStream)
        {
            _committed = true;
            return;
        }
        stream.Dispose();
        _stream = null;
        try
        {
            File.Move(_tempPath!, _path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(_tempPath!);
            throw Translate(e, _path, "cannot rename the temporary file into place");
        }
        _committed = true;
    }

    public void Dispose()
    {
        if (_ownsStream)
        {
            try { _stream?.Dispose(); }
            catch (IOException) { /* the write already failed; the temp file is removed below */ }
            _stream = null;
            if (!_committed && _tempPath is not null) TryDelete(_tempPath);
        }
    }

    private void Write(ReadOnlySpan<byte> bytes)
    {
        var stream = _stream ?? throw new ObjectDisposedException(_path);
        try
        {
            stream.Write(bytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Translate(e, _path, "write failed");
        }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>True for the errors an OS reports when the disk or quota is full (ENOSPC, EDQUOT, ERROR_DISK_FULL, ERROR_HANDLE_DISK_FULL).</summary>
    public static bool IsDiskFull(Exception e)
    {
        if (e is not IOException io) return false;
        int h = io.HResult;
        return h is 28 or 122 || h == unchecked((int)0x80070070) || h == unchecked((int)0x80070027)
            || io.Message.Contains("No space left on device", StringComparison.OrdinalIgnoreCase)
            || io.Message.Contains("Disk quota exceeded", StringComparison.OrdinalIgnoreCase);
    }

    private static GgufWriteException Translate(Exception e, string path, string what) =>
        IsDiskFull(e)
            ? new GgufDiskFullException(path, e)
            : e is UnauthorizedAccessException
                ? new GgufWriteException(path, $"{what}: permission denied", e)
                : new GgufWriteException(path, $"{what}: {e.Message}", e);

    private static long AlignUp(long x, uint alignment) => (x + alignment - 1) / alignment * alignment;

    /// <summary>Little-endian header bytes built in memory (the header holds metadata only, so it stays small).</summary>
    private sealed class HeaderBuffer
    {
        private byte[] _buf = new byte[1 << 16];
        private int _len;

        public int Length => _len;

        public ReadOnlySpan<byte> AsSpan() => _buf.AsSpan(0, _len);

        private Span<byte> Grow(int n)
        {
            if (_len + n > _buf.Length)
            {
                long newSize = Math.Max((long)_buf.Length * 2, (long)_len + n);
                if (newSize > Array.MaxLength) throw new InvalidOperationException("GGUF header exceeds 2 GB");
                Array.Resize(ref _buf, (int)newSize);
            }
            var s = _buf.AsSpan(_len, n);
            _len += n;
            return s;
        }

        public void U8(byte v) => Grow(1)[0] = v;
        public void U16(ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(Grow(2), v);
        public void U32(uint v) => BinaryPrimitives.WriteUInt32LittleEndian(Grow(4), v);
        public void U64(ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(Grow(8), v);
        public void Zeros(int n) => Grow(n).Clear();

        public void Str(string s)
        {
            int n = Encoding.UTF8.GetByteCount(s);
            U64((ulong)n);
            Encoding.UTF8.GetBytes(s, Grow(n));
        }

        public void Value(GgufValueType type, object value)
        {
            switch (type)
            {
                case GgufValueType.UInt8: U8((byte)value); break;
                case GgufValueType.Int8: U8((byte)(sbyte)value); break;
                case GgufValueType.UInt16: U16((ushort)value); break;
                case GgufValueType.Int16: U16((ushort)(short)value); break;
                case GgufValueType.UInt32: U32((uint)value); break;
                case GgufValueType.Int32: U32((uint)(int)value); break;
                case GgufValueType.Float32: U32(BitConverter.SingleToUInt32Bits((float)value)); break;
                case GgufValueType.Bool: U8((bool)value ? (byte)1 : (byte)0); break;
                case GgufValueType.String: Str((string)value); break;
                case GgufValueType.UInt64: U64((ulong)value); break;
                case GgufValueType.Int64: U64((ulong)(long)value); break;
                case GgufValueType.Float64: U64(BitConverter.DoubleToUInt64Bits((double)value)); break;
                case GgufValueType.Array: WriteArray((GgufArray)value); break;
                default: throw new ArgumentException($"unknown GGUF value type {type}");
            }
        }

        private void WriteArray(GgufArray a)
        {
            U32((uint)a.ElementType);
            U64((ulong)a.Length);
            foreach (object item in a.Values) Value(a.ElementType, item);
        }
    }
}
