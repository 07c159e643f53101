using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights;

/// <summary>
/// llama-quantize's per-tensor type choice (llama_tensor_get_type in llama.cpp's src/llama-quant.cpp) for the file types we
/// write. Create one per file, and ask for the tensors in file order: the mixes count attn_v and ffn_down tensors as they go.
/// </summary>
public sealed class QuantRules
{
    private readonly OutputType _type;
    private readonly bool _tiedEmbeddings;
    private readonly int _nAttentionV;
    private readonly int _nFfnDown;
    private readonly bool _is70B;
    private readonly int _gqa;
    private readonly bool _hasImatrix;
    private int _iAttentionV;
    private int _iFfnDown;

    /// <param name="type">The target file type.</param>
    /// <param name="tensorNames">Every tensor name of the file (to count layers and find output.weight).</param>
    /// <param name="arch">general.architecture.</param>
    /// <param name="blockCount">{arch}.block_count.</param>
    /// <param name="gqa">query heads per key/value head ({arch}.attention.head_count / head_count_kv; Q2_K's attn_v rule).</param>
    /// <param name="hasImatrix">an importance matrix is given (llama.cpp's has_imatrix: two ffn_down rules depend on it).</param>
    public QuantRules(OutputType type, IReadOnlyCollection<string> tensorNames, string arch, int blockCount, int gqa = 1,
        bool hasImatrix = false)
    {
        _gqa = gqa;
        _hasImatrix = hasImatrix;
        _type = type;
        _tiedEmbeddings = !tensorNames.Contains("output.weight");
        _nAttentionV = tensorNames.Count(n =>
            n.Contains("attn_v.weight", StringComparison.Ordinal) || n.Contains("attn_qkv.weight", StringComparison.Ordinal));
        _nFfnDown = tensorNames.Count(n => n.Contains("ffn_down", StringComparison.Ordinal));
        _is70B = arch == "llama" && blockCount == 80; // LLM_TYPE_70B: 8 heads share attn_v
    }

    /// <summary>tensor_allows_quantization: 2-D+ tensors named *weight, except norms (and a few families our architectures lack).</summary>
    public static bool AllowsQuantization(string name, int nDims) =>
        nDims >= 2
        && name.EndsWith("weight", StringComparison.Ordinal)
        && !name.Contains("_norm.weight", StringComparison.Ordinal)
        && !name.Contains("ffn_gate_inp.weight", StringComparison.Ordinal)
        && name != "position_embd.weight" && name != "token_types.weight";

    /// <summary>use_more_bits: the first and last eighth of the layers, and every third one between.</summary>
    public static bool UseMoreBits(int iLayer, int nLayers) =>
        iLayer < nLayers / 8 || iLayer >= 7 * nLayers / 8 || (iLayer - nLayers / 8) % 3 == 2;

    /// <summary>The type of the next tensor. <paramref name="currentType"/> is kept for tensors that are not quantized.</summary>
    public GgmlType Choose(string name, long[] dims, GgmlType currentType)
    {
        if (!AllowsQuantization(name, dims.Length)) return currentType;
        GgmlType t = _type.BaseType;
        if (_type.IsFloat) return t;
        t = Mix(name, dims, t);
        return Fallback(dims[0], t);
    }

    private GgmlType Mix(string name, long[] dims, GgmlType t)
    {
        int ft = _type.FileType;
        bool isOutput = name == "output.weight";
        bool isTokenEmbd = name == "token_embd.weight";
        if (isOutput || (_tiedEmbeddings && isTokenEmbd))
        {
            // the output matrix (or the token embedding that doubles as it) gets Q6_K, or Q8_0 when rows do not fit the blocks
            if (dims[0] % GgmlTypeInfo.BlockSize(t) != 0) return GgmlType.Q8_0;
            return t != GgmlType.Q8_0 ? GgmlType.Q6_K : t;
        }
        if (isTokenEmbd) return t;
        if (name.Contains("attn_v.weight", StringComparison.Ordinal) || name.Contains("attn_qkv.weight", StringComparison.Ordinal))
        {
            if (ft == OutputType.Q2_K.FileType) t = _gqa >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
            else if (ft == OutputType.Q3_K_M.FileType) t = _iAttentionV < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
            else if (ft == OutputType.Q3_K_L.FileType) t = GgmlType.Q5_K;
            else if ((ft == OutputType.IQ4_NL.FileType || ft == OutputType.IQ4_XS.FileType) && _gqa >= 4) t = GgmlType.Q5_K;
            else if ((ft == OutputType.Q4_K_M.FileType || ft == OutputType.Q5_K_M.FileType) && UseMoreBits(_iAttentionV, _nAttentionV))
                t = GgmlType.Q6_K;
            else if (ft == OutputType.Q4_K_S.FileType && _iAttentionV < 4) t = GgmlType.Q5_K;
            if (_is70B && t is GgmlType.Q3_K or GgmlType.Q4_K) t = GgmlType.Q5_K;
            _iAttentionV++;
            return t;
        }
        if (name.Contains("ffn_down", StringComparison.Ordinal))
        {
            int i = _iFfnDown, n = _nFfnDown;
            if (ft == OutputType.Q2_K.FileType) t = GgmlType.Q3_K;
            // Q3_K_M: llama.cpp's Q3_K is only for Falcon's ffn_down between the bits use_more_bits keeps
            else if (ft == OutputType.Q3_K_M.FileType) t = i < n / 16 ? GgmlType.Q5_K : GgmlType.Q4_K;
            else if (ft == OutputType.Q3_K_L.FileType) t = GgmlType.Q5_K;
            else if (ft == OutputType.Q4_K_M.FileType) { if (UseMoreBits(i, n)) t = GgmlType.Q6_K; }
            else if ((ft == OutputType.IQ4_NL.FileType || ft == OutputType.IQ4_XS.FileType) && i < n / 8 && !_hasImatrix) t = GgmlType.Q5_K;
            else if (ft == OutputType.Q5_K_M.FileType && UseMoreBits(i, n)) t = GgmlType.Q6_K;
            else if (ft == OutputType.Q4_K_S.FileType && i < n / 8) t = GgmlType.Q5_K;
            // with an importance matrix llama.cpp guards the first eighth of Q4_0 / Q5_0 ffn_down with Q4_1 / Q5_1
            else if ((ft == OutputType.Q4_0.FileType || ft == OutputType.Q5_0.FileType) && _hasImatrix && i < n / 8)
                t = ft == OutputType.Q4_0.FileType ? GgmlType.Q4_1 : GgmlType.Q5_1;
            _iFfnDown++;
            return t;
        }
        if (name.Contains("attn_output.weight", StringComparison.Ordinal))
        {
            if (ft == OutputType.Q2_K.FileType) return GgmlType.Q3_K;
            if (ft == OutputType.Q3_K_M.FileType) return GgmlType.Q4_K;
            if (ft == OutputType.Q3_K_L.FileType) return GgmlType.Q5_K;
        }
        return t;
    }

    /// <summary>
    /// tensor_type_fallback: a row length that does not fit the block size moves K-quants to the 32-element type llama.cpp
    /// names (Q4_K→Q5_0, Q5_K→Q5_1, Q6_K→Q8_0, Q2_K and Q3_K→Q4_0, IQ4_XS→IQ4_NL), and anything still not fitting to F16. llama.cpp
    /// refuses (throws) for the 32-element types; we fall back to F16 as its Python converter does for Q8_0.
    /// </summary>
    public static GgmlType Fallback(long rowLength, GgmlType t)
    {
        if (rowLength % GgmlTypeInfo.BlockSize(t) == 0) return t;
        GgmlType r = t switch
        {
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            GgmlType.Q2_K or GgmlType.Q3_K => GgmlType.Q4_0, // as llama-quantize of node-llama-cpp 3.22.1 does (older: IQ4_NL)
            GgmlType.IQ4_XS => GgmlType.IQ4_NL,
            _ => GgmlType.F16,
        };
        return rowLength % GgmlTypeInfo.BlockSize(r) == 0 ? r : GgmlType.F16;
    }
}
