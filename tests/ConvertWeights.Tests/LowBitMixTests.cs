using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights.Tests;

/// <summary>
/// The Q2_K and Q3_K_S/M/L mixes against llama.cpp's own choice. The tables are what <c>llama_model_quantize</c> (libllama of
/// node-llama-cpp 3.22.1, the prebuilt libraries of benchmarks/llama-cpp-avx2) wrote for a 16-layer synthetic llama (hidden 512,
/// FFN 1536, 8 heads, 2 KV heads: GQA 4) from BF16; our quantize of the same file gave every tensor the same type and the same
/// bytes (checked when these types were added, 147 tensors per file type).
/// </summary>
public class LowBitMixTests
{
    private const int Layers = 16;

    // per tensor kind: the type of layers 0..15 (a single entry: every layer)
    public static TheoryData<string, string, string, string, string, string> LlamaCpp => new()
    {
        // type, attn_q/k and ffn_gate/up, attn_v, attn_output, ffn_down, token_embd
        { "q2_k", "Q2_K", "Q4_K", "Q3_K", "Q3_K", "Q2_K" },
        { "q3_k_s", "Q3_K", "Q3_K", "Q3_K", "Q3_K", "Q3_K" },
        { "q3_k_m", "Q3_K", "Q5_K Q5_K Q4_K", "Q4_K", "Q5_K Q4_K", "Q3_K" },
        { "q3_k_l", "Q3_K", "Q5_K", "Q5_K", "Q5_K", "Q3_K" },
        { "iq4_nl", "IQ4_NL", "Q5_K", "IQ4_NL", "Q5_K Q5_K IQ4_NL", "IQ4_NL" },
        { "iq4_xs", "IQ4_XS", "Q5_K", "IQ4_XS", "Q5_K Q5_K IQ4_XS", "IQ4_XS" },
    };

    [Theory]
    [MemberData(nameof(LlamaCpp))]
    public void MixMatchesLlamaQuantize(string type, string main, string attnV, string attnOutput, string ffnDown, string tokenEmbd)
    {
        var names = new List<(string Name, long[] Dims)> { ("output.weight", [512, 128256]), ("token_embd.weight", [512, 128256]) };
        for (int i = 0; i < Layers; i++)
        {
            names.Add(($"blk.{i}.attn_norm.weight", [512]));
            names.Add(($"blk.{i}.ffn_down.weight", [1536, 512]));
            names.Add(($"blk.{i}.ffn_gate.weight", [512, 1536]));
            names.Add(($"blk.{i}.ffn_up.weight", [512, 1536]));
            names.Add(($"blk.{i}.attn_k.weight", [512, 128]));
            names.Add(($"blk.{i}.attn_output.weight", [512, 512]));
            names.Add(($"blk.{i}.attn_q.weight", [512, 512]));
            names.Add(($"blk.{i}.attn_v.weight", [512, 128]));
        }
        var rules = new QuantRules(OutputType.Parse(type), names.Select(n => n.Name).ToList(), "llama", Layers, gqa: 4);
        var chosen = names.ToDictionary(n => n.Name, n => rules.Choose(n.Name, n.Dims, GgmlType.BF16));
        Assert.Equal(GgmlType.Q6_K, chosen["output.weight"]);
        Assert.Equal(tokenEmbd, chosen["token_embd.weight"].ToString());
        for (int i = 0; i < Layers; i++)
        {
            Assert.Equal(GgmlType.BF16, chosen[$"blk.{i}.attn_norm.weight"]);
            foreach (var kind in new[] { "attn_q", "attn_k", "ffn_gate", "ffn_up" })
                Assert.Equal(main, chosen[$"blk.{i}.{kind}.weight"].ToString());
            Assert.Equal(Layer(attnV, i), chosen[$"blk.{i}.attn_v.weight"].ToString());
            Assert.Equal(Layer(attnOutput, i), chosen[$"blk.{i}.attn_output.weight"].ToString());
            Assert.Equal(Layer(ffnDown, i), chosen[$"blk.{i}.ffn_down.weight"].ToString());
        }
    }

    /// <summary>Layer i's entry of a table row; the last entry stands for every later layer.</summary>
    private static string Layer(string row, int i)
    {
        string[] types = row.Split(' ');
        return types[Math.Min(i, types.Length - 1)];
    }

    [Theory]
    [InlineData(4, GgmlType.Q4_K)]
    [InlineData(2, GgmlType.Q3_K)]
    [InlineData(1, GgmlType.Q3_K)]
    public void Q2_KAttnVDependsOnGroupedQueryAttention(int gqa, GgmlType expected)
    {
        var rules = new QuantRules(OutputType.Parse("q2_k"), ["blk.0.attn_v.weight"], "llama", 1, gqa);
        Assert.Equal(expected, rules.Choose("blk.0.attn_v.weight", [512, 512], GgmlType.F32));
    }
}
