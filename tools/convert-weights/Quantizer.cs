using System.Text;
using Infer.Runtime;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights;

/// <summary>GGUF to GGUF quantization with llama-quantize's per-tensor rules; metadata and tokenizer are copied.</summary>
public static class Quantizer
{
    /// <summary>Longest string llama-quantize records for the imatrix file and dataset (its kv-override buffer, 127 bytes).</summary>
    private const int MaxRecordedBytes = 127;

    /// <summary>
    /// Quantizes <paramref name="inPath"/> to <paramref name="type"/>. With <paramref name="imatrixPath"/> (llama-quantize
    /// --imatrix) every quantized tensor with an entry gets its importance weights, and the file records the matrix as
    /// llama-quantize does (quantize.imatrix.*). Returns the tensors quantized without weights because the matrix has no entry.
    /// </summary>
    /// <exception cref="ModelFormatException">A file is malformed, or an entry does not fit its tensor.</exception>
    public static IReadOnlyList<string> Quantize(string inPath, string outPath, OutputType type, IProgress<WriteProgress>? progress = null,
        string? imatrixPath = null)
    {
        if (Path.GetFullPath(inPath) == Path.GetFullPath(outPath))
            throw new UsageException("input and output are the same file");
        ImportanceMatrix? imatrix = imatrixPath is null ? null : ImportanceMatrix.Load(imatrixPath);
        if (imatrix is { Count: 0 }) imatrix = null; // llama-quantize: no entries, no importance matrix
        using var src = GgufFile.Open(inPath);
        string arch = src.GetString("general.architecture");
        int blockCount = src.TryGetInt32($"{arch}.block_count", 0, 1 << 16) ?? 0;
        int heads = src.TryGetInt32($"{arch}.attention.head_count", 1, 1 << 16) ?? 1;
        int kvHeads = src.TryGetInt32($"{arch}.attention.head_count_kv", 1, 1 << 16) ?? heads;
        var rules = new QuantRules(type, src.Tensors.Select(t => t.Name).ToList(), arch, blockCount, heads / kvHeads, imatrix is not null);
        var plan = new List<PlannedTensor>();
        var withoutWeights = new List<string>();
        foreach (var t in src.Tensors)
        {
            long[] dims = [.. t.Dims];
            GgmlType newType = rules.Choose(t.Name, dims, t.Type);
            if (newType == t.Type)
            {
                plan.Add(new PlannedTensor(t.Name, newType, dims, new GgufRawSource(t)));
                continue;
            }
            float[]? importance = imatrix is null ? null : ImportanceFor(imatrix, imatrixPath!, t.Name, dims, withoutWeights);
            plan.Add(new PlannedTensor(t.Name, newType, dims, new GgufSource(src, t)) { Importance = importance });
        }
        var md = new MetadataList();
        foreach (var key in src.MetadataKeys) md.Add(key, src.Metadata[key].Type, src.Metadata[key].Value);
        // llama_model_quantize's order: gguf_set_val moves a key it sets to the end
        Set(md, "general.quantization_version", GgufValueType.UInt32, Converter.QuantizationVersion);
        Set(md, "general.file_type", GgufValueType.UInt32, (uint)type.FileType);
        if (imatrix is not null)
        {
            // llama-quantize's kv overrides, in its order
            Set(md, "quantize.imatrix.file", GgufValueType.String, Truncated(imatrixPath!));
            if (imatrix.Datasets.Count > 0) Set(md, "quantize.imatrix.dataset", GgufValueType.String, Truncated(imatrix.Datasets[0]));
            Set(md, "quantize.imatrix.entries_count", GgufValueType.UInt32, (uint)imatrix.Count);
            if (imatrix.ChunkCount > 0) Set(md, "quantize.imatrix.chunks_count", GgufValueType.UInt32, (uint)imatrix.ChunkCount);
        }
        Converter.Write(outPath, md, plan, progress, src.Alignment);
        return withoutWeights;
    }

    /// <summary>
    /// llama-quantize's choice of weights for a tensor it quantizes: the entry of the same name when it holds row length × experts
    /// values; none when there is no entry, or for a token embedding of another size; any other size is an error.
    /// </summary>
    public static float[]? ImportanceFor(ImportanceMatrix imatrix, string imatrixPath, string name, long[] dims, List<string> withoutWeights)
    {
        float[]? w = imatrix.Find(name);
        if (w is null)
        {
            withoutWeights.Add(name);
            return null;
        }
        long expected = dims[0] * (dims.Length > 2 ? dims[2] : 1);
        if (w.Length == expected) return w;
        if (name is "token_embd.weight" or "per_layer_token_embd.weight") return null;
        throw new ModelFormatException(imatrixPath,
            $"imatrix: '{name}' has {w.Length} weights, the tensor needs {expected} (row length {dims[0]}); a matrix for another model?");
    }

    /// <summary>The first 127 bytes of <paramref name="s"/> as UTF-8 (strncpy into llama-quantize's buffer), cut at a character.</summary>
    private static string Truncated(string s)
    {
        if (Encoding.UTF8.GetByteCount(s) <= MaxRecordedBytes) return s;
        int n = s.Length;
        while (Encoding.UTF8.GetByteCount(s.AsSpan(0, n)) > MaxRecordedBytes) n--;
        return s[..n];
    }

    /// <summary>ggml's gguf_set_val_*: the key, if present, is removed, and appended with its new value.</summary>
    public static void Set(MetadataList md, string key, GgufValueType type, object value)
    {
        md.RemoveAll(e => e.Key == key);
        md.Add(key, type, value);
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
