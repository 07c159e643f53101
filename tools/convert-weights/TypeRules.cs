using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights;

/// <summary>Which GGML type each tensor gets.</summary>
public static class TypeRules
{
    /// <summary>
    /// convert_hf_to_gguf.py's rules: 1-D tensors, norms and anything not named *.weight stay F32; the rest take the output
    /// type, and a quantized type falls back to F16 when the row length is not a multiple of its block size (gguf-py's
    /// QuantError fallback, e.g. ffn_down rows of 176 in Q8_0). Types the Python converter does not write (q4_0, K-quants...)
    /// follow llama-quantize's rules instead.
    /// </summary>
    public static GgmlType ForConvert(string name, long[] dims, OutputType type, int blockCount)
    {
        if (dims.Length <= 1 || name.EndsWith("_norm.weight", StringComparison.Ordinal) || !name.EndsWith(".weight", StringComparison.Ordinal))
            return GgmlType.F32;
        if (type.IsFloat) return type.BaseType;
        if (type.BaseType == GgmlType.Q8_0)
            return dims[0] % GgmlTypeInfo.BlockSize(GgmlType.Q8_0) == 0 ? GgmlType.Q8_0 : GgmlType.F16;
        throw new ArgumentException($"{type.Name} is not a type of the Python converter", nameof(type));
    }
}
