using System.Text.RegularExpressions;

namespace Infer.ConvertWeights;

/// <summary>
/// The one table from Hugging Face tensor names to llama.cpp's GGUF names (the subset of gguf-py's tensor_mapping.py that
/// llama, mistral, qwen2 and qwen3 use). <c>{bid}</c> stands for the block number.
/// </summary>
public static partial class TensorNames
{
    public static readonly IReadOnlyList<(string Hf, string Gguf)> Table =
    [
        ("model.embed_tokens", "token_embd"),
        ("model.norm", "output_norm"),
        ("lm_head", "output"),
        ("model.layers.{bid}.input_layernorm", "blk.{bid}.attn_norm"),
        ("model.layers.{bid}.self_attn.q_proj", "blk.{bid}.attn_q"),
        ("model.layers.{bid}.self_attn.k_proj", "blk.{bid}.attn_k"),
        ("model.layers.{bid}.self_attn.v_proj", "blk.{bid}.attn_v"),
        ("model.layers.{bid}.self_attn.o_proj", "blk.{bid}.attn_output"),
        ("model.layers.{bid}.self_attn.q_norm", "blk.{bid}.attn_q_norm"),
        ("model.layers.{bid}.self_attn.k_norm", "blk.{bid}.attn_k_norm"),
        ("model.layers.{bid}.post_attention_layernorm", "blk.{bid}.ffn_norm"),
        ("model.layers.{bid}.mlp.gate_proj", "blk.{bid}.ffn_gate"),
        ("model.layers.{bid}.mlp.up_proj", "blk.{bid}.ffn_up"),
        ("model.layers.{bid}.mlp.down_proj", "blk.{bid}.ffn_down"),
    ];

    /// <summary>Checkpoint tensors llama.cpp drops (precomputed RoPE tables).</summary>
    public static bool IsIgnored(string hfName) =>
        hfName.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)
        || hfName.EndsWith(".attention.masked_bias", StringComparison.Ordinal)
        || hfName.EndsWith(".attention.bias", StringComparison.Ordinal);

    [GeneratedRegex(@"^(.*?)\.(\d+)\.(.*)$")]
    private static partial Regex BlockNumber();

    /// <summary>Maps a full Hugging Face name (with its .weight / .bias suffix) to the GGUF name, or null if the table has no entry.</summary>
    public static string? ToGguf(string hfName, int blockCount)
    {
        string suffix;
        string stem;
        if (hfName.EndsWith(".weight", StringComparison.Ordinal)) { suffix = ".weight"; stem = hfName[..^7]; }
        else if (hfName.EndsWith(".bias", StringComparison.Ordinal)) { suffix = ".bias"; stem = hfName[..^5]; }
        else return null;

        string key = stem;
        string? bid = null;
        var m = BlockNumber().Match(stem);
        if (m.Success)
        {
            bid = m.Groups[2].Value;
            if (!int.TryParse(bid, out int b) || b < 0 || b >= blockCount) return null;
            key = $"{m.Groups[1].Value}.{{bid}}.{m.Groups[3].Value}";
        }
        foreach (var (hf, gguf) in Table)
            if (hf == key) return (bid is null ? gguf : gguf.Replace("{bid}", bid)) + suffix;
        return null;
    }

    /// <summary>The block number of a GGUF tensor name (blk.N.*), or -1.</summary>
    public static int BlockOf(string ggufName)
    {
        if (!ggufName.StartsWith("blk.", StringComparison.Ordinal)) return -1;
        int dot = ggufName.IndexOf('.', 4);
        return dot > 4 && int.TryParse(ggufName.AsSpan(4, dot - 4), out int b) ? b : -1;
    }
}

/// <summary>
/// Hugging Face's llama checkpoints store Q and K rows in the "rotate half" RoPE layout; llama.cpp's graph expects
/// interleaved pairs.
/// </summary>
public static class QkPermutation
{
    /// <summary>
    /// The source row for output row <paramref name="row"/> of a Q or K projection with <paramref name="heads"/> heads
    /// (n_head for Q, n_head_kv for K) and <paramref name="rows"/> rows in all. This is gguf's
    /// <c>w.reshape(heads, 2, rows/heads/2, cols).swapaxes(1, 2).reshape(w.shape)</c>: within each head, output row 2i+j
    /// comes from input row j*(headDim/2)+i.
    /// </summary>
    public static long SourceRow(long row, int heads, long rows)
    {
        long headDim = rows / heads;
        long half = headDim / 2;
        long h = row / headDim;
        long r = row % headDim;
        long i = r / 2;
        long j = r % 2;
        return h * headDim + j * half + i;
    }

    /// <summary>Applies the permutation to a whole row-major matrix (rows x cols); used by tests and small tensors.</summary>
    public static float[] Permute(ReadOnlySpan<float> w, int heads, int rows, int cols)
    {
        if (rows % heads != 0 || (rows / heads) % 2 != 0)
            throw new ArgumentException($"{rows} rows do not split into {heads} heads of even size");
        var result = new float[w.Length];
        for (int r = 0; r < rows; r++)
            w.Slice((int)SourceRow(r, heads, rows) * cols, cols).CopyTo(result.AsSpan(r * cols, cols));
        return result;
    }
}

/// <summary>llama.cpp's <c>rope_freqs.weight</c> for rope_type llama3: per-frequency divisors of the RoPE angle.</summary>
public static class Llama3RopeFactors
{
    /// <summary>
    /// Computes the headDim/2 factors in float32 the way convert_hf_to_gguf.py does with torch: wavelengths shorter than
    /// original_context/high_freq_factor keep factor 1, longer than original_context/low_freq_factor get
    /// <paramref name="factor"/>, and the band between is interpolated smoothly.
    /// </summary>
    public static float[] Compute(double ropeTheta, int headDim, double factor, double lowFreqFactor, double highFreqFactor, int originalContext)
    {
        var result = new float[headDim / 2];
        float baseF = (float)ropeTheta;
        float lowWavelen = (float)(originalContext / lowFreqFactor);
        float highWavelen = (float)(originalContext / highFreqFactor);
        for (int k = 0; k < result.Length; k++)
        {
            float exponent = (float)(2 * k) / headDim;
            float freq = 1.0f / MathF.Pow(baseF, exponent);
            float wavelen = (float)(2 * Math.PI) / freq;
            if (wavelen < highWavelen) result[k] = 1f;
            else if (wavelen > lowWavelen) result[k] = (float)factor;
            else
            {
                float smooth = (originalContext / wavelen - (float)lowFreqFactor) / (float)(highFreqFactor - lowFreqFactor);
                result[k] = 1f / ((1f - smooth) / (float)factor + smooth);
            }
        }
        return result;
    }
}
