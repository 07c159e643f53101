using System.Globalization;
using System.IO.MemoryMappedFiles;
using System.Text;

namespace Infer.Runtime.Gguf;

/// <summary>
/// A GGUF file (versions 2 and 3) opened through a read-only memory map. Every count, length, dimension, type id,
/// size and offset is checked against the file before it is used; a malformed file throws <see cref="ModelFormatException"/>
/// naming the file and the key or tensor. Tensors are views into the mapping.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian
    public const uint DefaultAlignment = 32;

    // Caps that stop a hostile file from making us allocate far more than its own size.
    public const int MaxStringBytes = 64 << 20;
    public const long MaxArrayLength = 1L << 26;
    public const long MaxTensorCount = 1L << 20;
    public const long MaxMetadataCount = 1L << 20;
    public const int MaxArrayDepth = 4;
    public const int MaxDims = 4;
    public const long MaxTotalMetadataElements = 1L << 27;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _base;
    private readonly Dictionary<string, GgufMetadataValue> _metadata;
    private readonly List<string> _metadataOrder;
    private readonly Dictionary<string, GgufTensor> _tensorsByName;
    private readonly List<GgufTensor> _tensors;

    public string Path { get; }
    public long Length { get; }
    public uint Version { get; }
    public uint Alignment { get; }

    /// <summary>Offset of the tensor data section from the start of the file.</summary>
    public long DataOffset { get; }

    public IReadOnlyList<GgufTensor> Tensors => _tensors;

    /// <summary>Metadata keys in file order.</summary>
    public IReadOnlyList<string> MetadataKeys => _metadataOrder;

    public IReadOnlyDictionary<string, GgufMetadataValue> Metadata => _metadata;

    internal byte* BasePointer => _base != null ? _base : throw new ObjectDisposedException(Path);

    private GgufFile(string path)
    {
        Path = path;
        Length = GgufPath.ResolveLength(path);
        if (Length < 24)
            throw new ModelFormatException(path, $"file is {Length} bytes, too short for a GGUF header (24 bytes)");
        try
        {
            _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _base);
            _base += _view.PointerOffset;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Dispose();
            throw new ModelFormatException(path, $"cannot map file: {e.Message}", e);
        }

        _metadata = new Dictionary<string, GgufMetadataValue>(StringComparer.Ordinal);
        _metadataOrder = [];
        _tensorsByName = new Dictionary<string, GgufTensor>(StringComparer.Ordinal);
        _tensors = [];
        try
        {
            var r = new Reader(this);
            uint magic = r.U32("magic");
            if (magic != Magic)
                throw Error($"bad magic 0x{magic:X8} (expected \"GGUF\"): not a GGUF file");
            Version = r.U32("version");
            if (Version is not (2 or 3))
                throw Error(Version == 1 ? "GGUF version 1 is not supported (versions 2 and 3 are)"
                    : $"unsupported GGUF version {Version} (versions 2 and 3 are supported)");
            long tensorCount = r.Count("tensor count", MaxTensorCount, minBytesEach: 8 + 4 + 8 + 4 + 8);
            long kvCount = r.Count("metadata count", MaxMetadataCount, minBytesEach: 8 + 4 + 1);

            long totalElements = 0;
            for (long i = 0; i < kvCount; i++)
            {
                string key = r.String($"metadata key #{i}");
                if (key.Length == 0) throw Error($"metadata key #{i} is empty");
                var type = (GgufValueType)r.U32($"type of metadata key '{key}'");
                object value = r.Value(key, type, depth: 0, ref totalElements);
                if (!_metadata.TryAdd(key, new GgufMetadataValue(type, value)))
                    throw Error($"duplicate metadata key '{key}'");
                _metadataOrder.Add(key);
            }

            Alignment = DefaultAlignment;
            if (_metadata.TryGetValue("general.alignment", out var alignValue))
            {
                if (alignValue.Type != GgufValueType.UInt32)
                    throw Error($"metadata key 'general.alignment' has type {alignValue.Type}, expected UInt32");
                uint a = (uint)alignValue.Value;
                if (a == 0 || (a & (a - 1)) != 0)
                    throw Error($"metadata key 'general.alignment' is {a}, not a power of two");
                Alignment = a;
            }

            var infos = new (string Name, GgmlType Type, long[] Dims, ulong Offset)[tensorCount];
            for (long i = 0; i < tensorCount; i++)
            {
                string name = r.String($"tensor #{i} name");
                uint nDims = r.U32($"tensor '{name}' dimension count");
                if (nDims == 0 || nDims > MaxDims)
                    throw Error($"tensor '{name}' has {nDims} dimensions (1 to {MaxDims} allowed)");
                var dims = new long[nDims];
                for (int d = 0; d < nDims; d++)
                {
                    ulong ne = r.U64($"tensor '{name}' dimension {d}");
                    if (ne == 0 || ne > int.MaxValue * 64UL)
                        throw Error($"tensor '{name}' dimension {d} is {ne}, out of range");
                    dims[d] = (long)ne;
                }
                var type = (GgmlType)r.U32($"tensor '{name}' type");
                ulong offset = r.U64($"tensor '{name}' offset");
                infos[i] = (name, type, dims, offset);
            }

            long afterInfos = r.Position;
            DataOffset = AlignUp(afterInfos, Alignment);
            // a file without tensors (a vocabulary-only GGUF) may end before the alignment padding, as llama.cpp accepts
            if (DataOffset > Length && infos.Length > 0)
                throw Error($"data section would start at byte {DataOffset}, past the end of the {Length}-byte file");
            long dataBytes = Math.Max(0, Length - DataOffset);

            foreach (var (name, type, dims, offset) in infos)
            {
                if (!GgmlTypeInfo.TryGetLayout(type, out int blockSize, out int typeSize))
                    throw Error($"tensor '{name}' has unknown type id {(uint)type}");
                long elements = 1;
                foreach (long d in dims)
                {
                    if (elements > long.MaxValue / d)
                        throw Error($"tensor '{name}' shape [{string.Join(", ", dims)}] overflows");
                    elements *= d;
                }
                if (dims[0] % blockSize != 0)
                    throw Error($"tensor '{name}' row length {dims[0]} is not a multiple of the {GgmlTypeInfo.Name(type)} block size {blockSize}");
                long blocks = elements / blockSize;
                if (blocks > long.MaxValue / typeSize)
                    throw Error($"tensor '{name}' size overflows");
                long size = blocks * typeSize;
                if (offset % Alignment != 0)
                    throw Error($"tensor '{name}' offset {offset} is not a multiple of the alignment {Alignment}");
                if (offset > (ulong)dataBytes || size > dataBytes - (long)offset)
                    throw Error($"tensor '{name}' ({size} bytes at data offset {offset}) extends past the end of the file "
                        + $"(data section is {dataBytes} bytes)");
                var tensor = new GgufTensor(this, name, type, dims, (long)offset, DataOffset + (long)offset, size);
                if (!_tensorsByName.TryAdd(name, tensor))
                    throw Error($"duplicate tensor name '{name}'");
                _tensors.Add(tensor);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Opens and validates a GGUF file. Throws <see cref="ModelFormatException"/> on any problem.</summary>
    public static GgufFile Open(string path) => new(path);

    private ModelFormatException Error(string message) => new(Path, message);

    private static long AlignUp(long x, uint alignment) => (x + alignment - 1) / alignment * alignment;

    // ---- tensors ----

    public bool TryGetTensor(string name, out GgufTensor tensor) => _tensorsByName.TryGetValue(name, out tensor!);

    public GgufTensor? FindTensor(string name) => _tensorsByName.GetValueOrDefault(name);

    public GgufTensor GetTensor(string name) =>
        _tensorsByName.TryGetValue(name, out var t) ? t : throw Error($"tensor '{name}' not found");

    // ---- metadata accessors ----

    public bool ContainsKey(string key) => _metadata.ContainsKey(key);

    public GgufMetadataValue? Find(string key) => _metadata.GetValueOrDefault(key);

    public string GetString(string key) => TryGetString(key) ?? throw Error($"metadata key '{key}' not found");

    public string? TryGetString(string key)
    {
        if (!_metadata.TryGetValue(key, out var v)) return null;
        return v.Value as string ?? throw Error($"metadata key '{key}' has type {v.Type}, expected String");
    }

    /// <summary>An integer value of any integer type, range-checked to fit a long.</summary>
    public long GetInt(string key) => TryGetInt(key) ?? throw Error($"metadata key '{key}' not found");

    public long? TryGetInt(string key)
    {
        if (!_metadata.TryGetValue(key, out var v)) return null;
        return v.Value switch
        {
            byte b => b,
            sbyte sb => sb,
            ushort us => us,
            short s => s,
            uint ui => ui,
            int i => i,
            ulong ul when ul <= long.MaxValue => (long)ul,
            long l => l,
            bool b => b ? 1 : 0,
            _ => throw Error($"metadata key '{key}' has type {v.Type}, expected an integer"),
        };
    }

    /// <summary>An integer value that must lie in [min, max].</summary>
    public int GetInt32(string key, int min = int.MinValue, int max = int.MaxValue)
    {
        long v = GetInt(key);
        if (v < min || v > max) throw Error($"metadata key '{key}' is {v}, outside [{min}, {max}]");
        return (int)v;
    }

    public int? TryGetInt32(string key, int min = int.MinValue, int max = int.MaxValue)
    {
        if (!ContainsKey(key)) return null;
        return GetInt32(key, min, max);
    }

    public double? TryGetFloat(string key)
    {
        if (!_metadata.TryGetValue(key, out var v)) return null;
        return v.Value switch
        {
            float f => f,
            double d => d,
            byte or sbyte or ushort or short or uint or int or long or ulong => Convert.ToDouble(v.Value, CultureInfo.InvariantCulture),
            _ => throw Error($"metadata key '{key}' has type {v.Type}, expected a number"),
        };
    }

    public bool? TryGetBool(string key)
    {
        if (!_metadata.TryGetValue(key, out var v)) return null;
        return v.Value switch
        {
            bool b => b,
            byte or sbyte or ushort or short or uint or int or long or ulong => Convert.ToInt64(v.Value, CultureInfo.InvariantCulture) != 0,
            _ => throw Error($"metadata key '{key}' has type {v.Type}, expected Bool"),
        };
    }

    public GgufArray? TryGetArray(string key)
    {
        if (!_metadata.TryGetValue(key, out var v)) return null;
        return v.Value as GgufArray ?? throw Error($"metadata key '{key}' has type {v.Type}, expected Array");
    }

    public string[]? TryGetStringArray(string key)
    {
        var a = TryGetArray(key);
        if (a is null) return null;
        return a.Values as string[] ?? throw Error($"metadata key '{key}' is an array of {a.ElementType}, expected String");
    }

    public float[]? TryGetFloatArray(string key)
    {
        var a = TryGetArray(key);
        if (a is null) return null;
        return a.Values switch
        {
            float[] f => f,
            double[] d => Array.ConvertAll(d, x => (float)x),
            _ => throw Error($"metadata key '{key}' is an array of {a.ElementType}, expected Float32"),
        };
    }

    /// <summary>An integer array of any integer element type, converted to int (values must fit).</summary>
    public int[]? TryGetInt32Array(string key)
    {
        var a = TryGetArray(key);
        if (a is null) return null;
        var result = new int[a.Length];
        for (int i = 0; i < result.Length; i++)
        {
            object o = a.Values.GetValue(i)!;
            long v = o switch
            {
                byte b => b,
                sbyte sb => sb,
                ushort us => us,
                short s => s,
                uint ui => ui,
                int n => n,
                long l => l,
                ulong ul when ul <= long.MaxValue => (long)ul,
                bool b => b ? 1 : 0,
                _ => throw Error($"metadata key '{key}' is an array of {a.ElementType}, expected integers"),
            };
            if (v < int.MinValue || v > int.MaxValue) throw Error($"metadata key '{key}' element {i} is {v}, out of range");
            result[i] = (int)v;
        }
        return result;
    }

    public void Dispose()
    {
        if (_base != null && _view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _base = null;
        }
        _view?.Dispose();
        _map?.Dispose();
    }

    /// <summary>A bounds-checked cursor over the mapped header.</summary>
    private ref struct Reader(GgufFile file)
    {
        private long _pos;
        private readonly long _len = file.Length;
        private readonly byte* _p = file._base;

        public readonly long Position => _pos;

        private readonly long Remaining => _len - _pos;

        private void Need(long bytes, string what)
        {
            if (bytes < 0 || bytes > Remaining)
                throw file.Error($"truncated: reading {what} needs {bytes} bytes at offset {_pos}, but the file ends at {_len}");
        }

        public uint U32(string what)
        {
            Need(4, what);
            uint v = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(_p + _pos, 4));
            _pos += 4;
            return v;
        }

        public ulong U64(string what)
        {
            Need(8, what);
            ulong v = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(_p + _pos, 8));
            _pos += 8;
            return v;
        }

        /// <summary>A count that must be plausible: under the cap and small enough that each item could still fit in the file.</summary>
        public long Count(string what, long cap, int minBytesEach)
        {
            ulong n = U64(what);
            if (n > (ulong)cap)
                throw file.Error($"{what} is {n}, over the limit of {cap}");
            if ((long)n * minBytesEach > Remaining)
                throw file.Error($"{what} is {n}, but only {Remaining} bytes remain in the file");
            return (long)n;
        }

        public string String(string what) => String(what, null, -1);

        /// <summary>
        /// A length-prefixed UTF-8 string. Its description is <paramref name="what"/>, or, with a <paramref name="key"/>, element
        /// <paramref name="index"/> of that key's array: formatted only for an error (a 128k vocabulary has 400k strings).
        /// </summary>
        private string String(string what, string? key, int index)
        {
            if (Remaining < 8) Need(8, $"length of {Describe(what, key, index)}");
            ulong n = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(_p + _pos, 8));
            _pos += 8;
            if (n > MaxStringBytes)
                throw file.Error($"length of {Describe(what, key, index)} is {n} bytes, over the limit of {MaxStringBytes}");
            if ((long)n > Remaining) Need((long)n, Describe(what, key, index));
            var span = new ReadOnlySpan<byte>(_p + _pos, (int)n);
            string s;
            try
            {
                s = Utf8Strict.GetString(span);
            }
            catch (DecoderFallbackException)
            {
                throw file.Error($"{Describe(what, key, index)} at offset {_pos} is not valid UTF-8");
            }
            _pos += (long)n;
            return s;
        }

        private static string Describe(string what, string? key, int index) =>
            key is null ? what : $"element {index} of metadata key '{key}'";

        public object Value(string key, GgufValueType type, int depth, ref long totalElements)
        {
            string what = $"value of metadata key '{key}'";
            switch (type)
            {
                case GgufValueType.UInt8: Need(1, what); return _p[_pos++];
                case GgufValueType.Int8: Need(1, what); return (sbyte)_p[_pos++];
                case GgufValueType.UInt16: { Need(2, what); ushort v = *(ushort*)(_p + _pos); _pos += 2; return v; }
                case GgufValueType.Int16: { Need(2, what); short v = *(short*)(_p + _pos); _pos += 2; return v; }
                case GgufValueType.UInt32: return U32(what);
                case GgufValueType.Int32: return (int)U32(what);
                case GgufValueType.Float32: return BitConverter.UInt32BitsToSingle(U32(what));
                case GgufValueType.Bool:
                    {
                        Need(1, what);
                        byte b = _p[_pos++];
                        if (b > 1) throw file.Error($"metadata key '{key}' is a bool with byte value {b}");
                        return b == 1;
                    }
                case GgufValueType.String: return String(what);
                case GgufValueType.UInt64: return U64(what);
                case GgufValueType.Int64: return (long)U64(what);
                case GgufValueType.Float64: return BitConverter.UInt64BitsToDouble(U64(what));
                case GgufValueType.Array: return Array(key, depth, ref totalElements);
                default:
                    throw file.Error($"metadata key '{key}' has unknown value type id {(uint)type}");
            }
        }

        private GgufArray Array(string key, int depth, ref long totalElements)
        {
            if (depth >= MaxArrayDepth)
                throw file.Error($"metadata key '{key}' nests arrays deeper than {MaxArrayDepth}");
            var elemType = (GgufValueType)U32($"element type of metadata key '{key}'");
            int elemSize = elemType switch
            {
                GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
                GgufValueType.UInt16 or GgufValueType.Int16 => 2,
                GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
                GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
                GgufValueType.String => 8, // minimum: the length prefix
                GgufValueType.Array => 12, // minimum: element type + count
                _ => throw file.Error($"metadata key '{key}' is an array of unknown value type id {(uint)elemType}"),
            };
            long n = Count($"array length of metadata key '{key}'", MaxArrayLength, elemSize);
            totalElements += n;
            if (totalElements > MaxTotalMetadataElements)
                throw file.Error($"metadata holds more than {MaxTotalMetadataElements} array elements in all (at key '{key}')");
            int count = (int)n;
            switch (elemType)
            {
                case GgufValueType.UInt8: return new GgufArray(elemType, Copy<byte>(count));
                case GgufValueType.Int8: return new GgufArray(elemType, Copy<sbyte>(count));
                case GgufValueType.UInt16: return new GgufArray(elemType, Copy<ushort>(count));
                case GgufValueType.Int16: return new GgufArray(elemType, Copy<short>(count));
                case GgufValueType.UInt32: return new GgufArray(elemType, Copy<uint>(count));
                case GgufValueType.Int32: return new GgufArray(elemType, Copy<int>(count));
                case GgufValueType.Float32: return new GgufArray(elemType, Copy<float>(count));
                case GgufValueType.UInt64: return new GgufArray(elemType, Copy<ulong>(count));
                case GgufValueType.Int64: return new GgufArray(elemType, Copy<long>(count));
                case GgufValueType.Float64: return new GgufArray(elemType, Copy<double>(count));
                case GgufValueType.Bool:
                    {
                        var raw = Copy<byte>(count);
                        var result = new bool[count];
                        for (int i = 0; i < count; i++)
                        {
                            if (raw[i] > 1) throw file.Error($"metadata key '{key}' element {i} is a bool with byte value {raw[i]}");
                            result[i] = raw[i] == 1;
                        }
                        return new GgufArray(elemType, result);
                    }
                case GgufValueType.String:
                    {
                        var result = new string[count];
                        for (int i = 0; i < count; i++) result[i] = String("", key, i);
                        return new GgufArray(elemType, result);
                    }
                default:
                    {
                        var result = new GgufArray[count];
                        // Nested arrays carry no per-element type tag: each element is (element type, count, items).
                        for (int i = 0; i < count; i++) result[i] = Array(key, depth + 1, ref totalElements);
                        return new GgufArray(elemType, result);
                    }
            }
        }

        private T[] Copy<T>(int count) where T : unmanaged
        {
            long bytes = (long)count * sizeof(T);
            Need(bytes, "array data");
            var result = new T[count];
            new ReadOnlySpan<T>(_p + _pos, count).CopyTo(result);
            _pos += bytes;
            return result;
        }
    }

    private static readonly UTF8Encoding Utf8Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
}
