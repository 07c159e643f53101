using Infer.Runtime;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights;

/// <summary>GGUF to GGUF quantization with llama-quantize's per-tensor rules; metadata and tokenizer are copied.</summary>
public static class Quantizer
{
    public static void Quantize(string inPath, string outPath, OutputType type, IProgress<WriteProgress>? progress = null)
    {
        if (Path.GetFullPath(inPath) == Path.GetFullPath(outPath))
            throw new UsageException("input and output are the same file");
        using var src = GgufFile.Open(inPath);
        string arch = src.GetString("general.architecture");
        int blockCount = src.TryGetInt32($"{arch}.block_count", 0, 1 << 16) ?? 0;
        int heads = src.TryGetInt32($"{arch}.attention.head_count", 1, 1 << 16) ?? 1;
        int kvHeads = src.TryGetInt32($"{arch}.attention.head_count_kv", 1, 1 << 16) ?? heads;
        var rules = new QuantRules(type, src.Tensors.Select(t => t.Name).ToList(), arch, blockCount, heads / kvHeads);
        var plan = new List<PlannedTensor>();
        foreach (var t in src.Tensors)
        {
            long[] dims = [.. t.Dims];
            GgmlType newType = rules.Choose(t.Name, dims, t.Type);
            object source = newType == t.Type ? new GgufRawSource(t) : new GgufSource(src, t);
            plan.Add(new PlannedTensor(t.Name, newType, dims, source));
        }
        var md = new MetadataList();
        foreach (var key in src.MetadataKeys) md.Add(key, src.Metadata[key].Type, src.Metadata[key].Value);
        SetOrAdd(md, "general.file_type", GgufValueType.UInt32, (uint)type.FileType);
        SetOrAdd(md, "general.quantization_version", GgufValueType.UInt32, Converter.QuantizationVersion);
        Converter.Write(outPath, md, plan, progress, src.Alignment);
    }

    /// <summary>Replaces a key's value where it stands, or appends the key.</summary>
    public static void SetOrAdd(MetadataList md, string key, GgufValueType type, object value)
    {
        int i = md.FindIndex(e => e.Key == key);
        if (i >= 0) md[i] = (key, type, value);
        else md.Add(key, type, value);
    }
}

/// <summary>A GGUF tensor copied byte for byte.</summary>
public sealed unsafe class GgufRawSource(GgufTensor tensor) : IRawTensorSource
{
    public byte* Data => tensor.Data;
}

/// <summary>Rows of a GGUF tensor decoded to float32.</summary>
public sealed unsafe class GgufSource : ITensorSource
{
    private readonly GgufTensor _tensor;
    private readonly long _rowBytes;

    public GgufSource(GgufFile file, GgufTensor tensor)
    {
        if (!RowCodec.IsSupported(tensor.Type))
            throw new UnsupportedModelException(file.Path,
                $"tensor '{tensor.Name}' has type {GgmlTypeInfo.Name(tensor.Type)}, which cannot be decoded for requantization");
        _tensor = tensor;
        _rowBytes = GgmlTypeInfo.RowBytes(tensor.Type, tensor.RowLength);
    }

    public void ReadRows(long firstRow, int count, int rowLength, Span<float> dst)
    {
        var bytes = new ReadOnlySpan<byte>(_tensor.Data + firstRow * _rowBytes, checked((int)(count * _rowBytes)));
        RowEncoder.Decode(_tensor.Type, bytes, dst[..(count * rowLength)]);
    }
}
