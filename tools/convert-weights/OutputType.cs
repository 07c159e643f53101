using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights;

/// <summary>A target file type: its command-line name, llama.cpp's <c>llama_ftype</c> (general.file_type) and the main tensor type.</summary>
public sealed record OutputType(string Name, int FileType, GgmlType BaseType)
{
    public static readonly OutputType F32 = new("f32", 0, GgmlType.F32);
    public static readonly OutputType F16 = new("f16", 1, GgmlType.F16);
    public static readonly OutputType BF16 = new("bf16", 32, GgmlType.BF16);
    public static readonly OutputType Q8_0 = new("q8_0", 7, GgmlType.Q8_0);
    public static readonly OutputType Q4_0 = new("q4_0", 2, GgmlType.Q4_0);
    public static readonly OutputType Q4_1 = new("q4_1", 3, GgmlType.Q4_1);
    public static readonly OutputType Q5_0 = new("q5_0", 8, GgmlType.Q5_0);
    public static readonly OutputType Q5_1 = new("q5_1", 9, GgmlType.Q5_1);
    public static readonly OutputType Q2_K = new("q2_k", 10, GgmlType.Q2_K);
    public static readonly OutputType Q3_K_S = new("q3_k_s", 11, GgmlType.Q3_K);
    public static readonly OutputType Q3_K_M = new("q3_k_m", 12, GgmlType.Q3_K);
    public static readonly OutputType Q3_K_L = new("q3_k_l", 13, GgmlType.Q3_K);
    public static readonly OutputType Q4_K_S = new("q4_k_s", 14, GgmlType.Q4_K);
    public static readonly OutputType Q4_K_M = new("q4_k_m", 15, GgmlType.Q4_K);
    public static readonly OutputType Q5_K_S = new("q5_k_s", 16, GgmlType.Q5_K);
    public static readonly OutputType Q5_K_M = new("q5_k_m", 17, GgmlType.Q5_K);
    public static readonly OutputType Q6_K = new("q6_k", 18, GgmlType.Q6_K);
    public static readonly OutputType IQ4_NL = new("iq4_nl", 25, GgmlType.IQ4_NL);
    public static readonly OutputType IQ4_XS = new("iq4_xs", 30, GgmlType.IQ4_XS);

    public static readonly IReadOnlyList<OutputType> All =
        [F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS];

    /// <summary>True for the float types, which llama.cpp's Python converter writes itself (rules of convert_hf_to_gguf.py).</summary>
    public bool IsFloat => BaseType is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16;

    /// <summary>Parses a type name; q3_k, q4_k and q5_k are llama-quantize's aliases of q3_k_m, q4_k_m and q5_k_m.</summary>
    public static OutputType Parse(string name)
    {
        string n = name.ToLowerInvariant() switch
        {
            "q3_k" => "q3_k_m",
            "q4_k" => "q4_k_m",
            "q5_k" => "q5_k_m",
            var x => x,
        };
        return All.FirstOrDefault(t => t.Name == n)
            ?? throw new UsageException(
                $"unknown type '{name}'; supported: {string.Join(", ", All.Select(t => t.Name))}, q3_k (= q3_k_m), q4_k (= q4_k_m), q5_k (= q5_k_m)");
    }
}
