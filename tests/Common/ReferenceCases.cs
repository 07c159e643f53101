using System.Runtime.InteropServices;
using System.Text.Json;

namespace Infer.Tests;

/// <summary>A case of a fixture's reference/reference.json (computed by transformers) and llama.cpp's q8_0 result for it.</summary>
public sealed record ReferenceCase(string Model, string Id, int[] InputIds, int[] GreedyNewIds, string LogitsFile, double Top1Top2Gap, string? Prompt)
{
    public float[] LoadLogits() =>
        MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(Path.Combine(Fixtures.ModelDir(Model), "reference", LogitsFile))).ToArray();

    public override string ToString() => $"{Model}/{Id}";

    /// <summary>The case <paramref name="id"/> of a fixture model's reference.json.</summary>
    public static ReferenceCase Find(string model, string id) =>
        Load(model).SingleOrDefault(c => c.Id == id) ?? throw new InvalidOperationException($"case '{id}' not in {model}'s reference.json");

    public static IReadOnlyList<ReferenceCase> Load(string model)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.ModelDir(model), "reference", "reference.json")));
        var list = new List<ReferenceCase>();
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            list.Add(new ReferenceCase(model, c.GetProperty("id").GetString()!,
                c.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                c.GetProperty("greedy_new_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                c.GetProperty("last_logits_file").GetString()!,
                c.GetProperty("top1_top2_gap_last").GetDouble(),
                c.TryGetProperty("prompt", out var prompt) ? prompt.GetString() : null));
        }
        return list;
    }

    /// <summary>llama.cpp's max |logit difference| from transformers on the q8_0 GGUF, per case id.</summary>
    public static IReadOnlyDictionary<string, double> LlamaCppQ8Differences(string model)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.ModelDir(model), "reference", "llamacpp_q8_0.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray()
            .ToDictionary(c => c.GetProperty("id").GetString()!, c => c.GetProperty("max_abs_diff_vs_transformers_bf16").GetDouble());
    }
}
