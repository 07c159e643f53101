using System.IO.MemoryMappedFiles;
using System.Text.Json;
using Infer.Runtime;
using Infer.Runtime.Formats;

namespace Infer.ConvertWeights;

/// <summary>Element types of safetensors that the converter reads.</summary>
public enum SafetensorsDtype { F32, F16, BF16 }

/// <summary>
/// One tensor of a safetensors file: a view into its memory map. <see cref="Shape"/> is in PyTorch order (last dimension
/// contiguous).
/// </summary>
public sealed unsafe class SafetensorsTensor
{
    private readonly SafetensorsFile _file;

    internal SafetensorsTensor(SafetensorsFile file, string name, SafetensorsDtype dtype, long[] shape, long begin, long end)
    {
        _file = file;
        Name = name;
        Dtype = dtype;
        Shape = shape;
        Begin = begin;
        ByteSize = end - begin;
        long n = 1;
        foreach (long d in shape) n *= d;
        ElementCount = n;
    }

    public string Name { get; }
    public SafetensorsDtype Dtype { get; }
    public IReadOnlyList<long> Shape { get; }
    public long ElementCount { get; }
    public long ByteSize { get; }

    /// <summary>Offset from the start of the data section.</summary>
    public long Begin { get; }

    public string FilePath => _file.Path;

    public int ElementSize => Dtype == SafetensorsDtype.F32 ? 4 : 2;

    /// <summary>Pointer to the tensor's first byte (not necessarily aligned); valid while the file is open.</summary>
    public byte* Data => _file.DataPointer + Begin;

    /// <summary>Converts <paramref name="dst"/>.Length elements starting at element <paramref name="start"/> to float32.</summary>
    public void ReadFloats(long start, Span<float> dst)
    {
        if (start < 0 || start + dst.Length > ElementCount) throw new ArgumentOutOfRangeException(nameof(start));
        byte* p = Data + start * ElementSize;
        switch (Dtype)
        {
            case SafetensorsDtype.F32:
                new ReadOnlySpan<float>(p, dst.Length).CopyTo(dst);
                break;
            case SafetensorsDtype.F16:
                {
                    var h = new ReadOnlySpan<ushort>(p, dst.Length);
                    for (int i = 0; i < h.Length; i++) dst[i] = HalfBits.ToFloat(h[i]);
                    break;
                }
            case SafetensorsDtype.BF16:
                {
                    var b = new ReadOnlySpan<ushort>(p, dst.Length);
                    for (int i = 0; i < b.Length; i++) dst[i] = BFloat16Bits.ToFloat(b[i]);
                    break;
                }
        }
    }

    public string ShapeString => "[" + string.Join(", ", Shape) + "]";

    public override string ToString() => $"{Name} {Dtype} {ShapeString}";
}

/// <summary>
/// A safetensors file opened through a read-only memory map. The header (an 8-byte little-endian length, then JSON) is
/// validated before use: every tensor's offsets lie inside the data section, its byte size equals shape x dtype size,
/// no two tensors overlap, and its dtype is one we convert (F32, F16, BF16).
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    public const long MaxHeaderBytes = 100L << 20;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _base;
    private readonly List<SafetensorsTensor> _tensors = [];

    public string Path { get; }
    public long Length { get; }
    public long DataOffset { get; }

    /// <summary>Tensors in header order.</summary>
    public IReadOnlyList<SafetensorsTensor> Tensors => _tensors;

    internal byte* DataPointer => _base != null ? _base + DataOffset : throw new ObjectDisposedException(Path);

    private SafetensorsFile(string path)
    {
        Path = path;
        if (!File.Exists(path)) throw new ModelFormatException(path, "file not found");
        Length = new FileInfo(path).Length;
        if (Length < 8) throw Error($"file is {Length} bytes, too short for a safetensors header");
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
        try
        {
            ulong headerLen = *(ulong*)_base;
            if (headerLen < 2 || headerLen > (ulong)Math.Min(MaxHeaderBytes, Length - 8))
                throw Error($"corrupt header: header length {headerLen} does not fit the {Length}-byte file");
            DataOffset = 8 + (long)headerLen;
            ParseHeader(new ReadOnlySpan<byte>(_base + 8, (int)headerLen));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public static SafetensorsFile Open(string path) => new(path);

    private ModelFormatException Error(string message) => new(Path, message);

    private void ParseHeader(ReadOnlySpan<byte> json)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw Error($"corrupt header: not valid JSON ({e.Message})");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Error("corrupt header: the JSON header is not an object");
            long dataLen = Length - DataOffset;
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__") continue;
                _tensors.Add(ParseTensor(prop.Name, prop.Value, dataLen));
            }
        }
        var byOffset = _tensors.OrderBy(t => t.Begin).ToList();
        for (int i = 1; i < byOffset.Count; i++)
        {
            var a = byOffset[i - 1];
            var b = byOffset[i];
            if (b.Begin < a.Begin + a.ByteSize)
                throw Error($"corrupt header: tensors '{a.Name}' and '{b.Name}' overlap");
        }
    }

    private SafetensorsTensor ParseTensor(string name, JsonElement e, long dataLen)
    {
        if (e.ValueKind != JsonValueKind.Object) throw Error($"corrupt header: entry '{name}' is not an object");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw Error($"corrupt header: tensor '{name}' has no dtype");
        string dtype = dt.GetString()!;
        SafetensorsDtype type = dtype switch
        {
            "F32" => SafetensorsDtype.F32,
            "F16" => SafetensorsDtype.F16,
            "BF16" => SafetensorsDtype.BF16,
            _ => throw new UnsupportedModelException(Path, $"tensor '{name}' has dtype '{dtype}'; supported dtypes are F32, F16 and BF16"),
        };
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw Error($"corrupt header: tensor '{name}' has no shape");
        var shape = new long[sh.GetArrayLength()];
        if (shape.Length > 8) throw Error($"corrupt header: tensor '{name}' has {shape.Length} dimensions");
        long elements = 1;
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw Error($"corrupt header: tensor '{name}' has a bad dimension {d}");
            shape[i++] = v;
            if (v != 0 && elements > long.MaxValue / v) throw Error($"corrupt header: tensor '{name}' shape overflows");
            elements *= v;
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw Error($"corrupt header: tensor '{name}' has no data_offsets pair");
        if (!off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end))
            throw Error($"corrupt header: tensor '{name}' has non-integer data_offsets");
        if (begin < 0 || end < begin || end > dataLen)
            throw Error($"corrupt header: tensor '{name}' data_offsets [{begin}, {end}] lie outside the {dataLen}-byte data section");
        int elemSize = type == SafetensorsDtype.F32 ? 4 : 2;
        if (elements > long.MaxValue / elemSize || end - begin != elements * elemSize)
            throw Error($"corrupt header: tensor '{name}' holds {end - begin} bytes but shape [{string.Join(", ", shape)}] x {dtype} "
                + $"needs {elements * elemSize}");
        return new SafetensorsTensor(this, name, type, shape, begin, end);
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
}

/// <summary>
/// All tensors of a checkpoint folder: <c>model.safetensors</c>, or the shards listed by <c>model.safetensors.index.json</c>
/// (parts in file-name order, tensors in header order, as llama.cpp's converter reads them).
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    private readonly List<SafetensorsFile> _files = [];
    private readonly Dictionary<string, SafetensorsTensor> _byName = new(StringComparer.Ordinal);
    private readonly List<SafetensorsTensor> _ordered = [];

    public IReadOnlyList<SafetensorsTensor> Tensors => _ordered;

    public IReadOnlyList<SafetensorsFile> Files => _files;

    public SafetensorsTensor? Find(string name) => _byName.GetValueOrDefault(name);

    public static SafetensorsCheckpoint Open(string dir)
    {
        var cp = new SafetensorsCheckpoint();
        try
        {
            string index = System.IO.Path.Combine(dir, "model.safetensors.index.json");
            string single = System.IO.Path.Combine(dir, "model.safetensors");
            List<string> parts;
            HashSet<string>? expected = null;
            if (File.Exists(index))
            {
                (parts, expected) = ReadIndex(index);
            }
            else if (File.Exists(single))
            {
                parts = ["model.safetensors"];
            }
            else
            {
                parts = Directory.Exists(dir)
                    ? Directory.GetFiles(dir, "model*.safetensors").Select(System.IO.Path.GetFileName).OfType<string>()
                        .Order(StringComparer.Ordinal).ToList()
                    : [];
                if (parts.Count == 0)
                    throw new ModelFormatException(single,
                        "file not found (no model.safetensors, model.safetensors.index.json or model-*.safetensors shards)");
            }
            foreach (var part in parts)
            {
                var f = SafetensorsFile.Open(System.IO.Path.Combine(dir, part));
                cp._files.Add(f);
                foreach (var t in f.Tensors)
                {
                    if (!cp._byName.TryAdd(t.Name, t))
                        throw new ModelFormatException(f.Path, $"tensor '{t.Name}' also appears in {cp._byName[t.Name].FilePath}");
                    cp._ordered.Add(t);
                }
            }
            if (expected is not null)
            {
                var missing = expected.Where(n => !cp._byName.ContainsKey(n)).Order(StringComparer.Ordinal).ToList();
                if (missing.Count > 0)
                    throw new ModelFormatException(index,
                        $"{missing.Count} tensor(s) listed in the index are missing from the shards, first '{missing[0]}'");
            }
            return cp;
        }
        catch
        {
            cp.Dispose();
            throw;
        }
    }

    private static (List<string> Parts, HashSet<string> Names) ReadIndex(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(path, "no 'weight_map' object");
            var parts = new SortedSet<string>(StringComparer.Ordinal);
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                string? file = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString() : null;
                if (string.IsNullOrEmpty(file) || file.Contains('/') || file.Contains('\\') || file.Contains(".."))
                    throw new ModelFormatException(path, $"weight_map entry '{p.Name}' names a bad file '{file}'");
                parts.Add(file);
                names.Add(p.Name);
            }
            return ([.. parts], names);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"not valid JSON ({e.Message})");
        }
    }

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
