using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights.Tests;

/// <summary>Assertions that compare our GGUF output with one written by llama.cpp.</summary>
internal static class GgufCompare
{
    /// <summary>Descriptive keys whose values depend on the folder name or a model card, not on the weights.</summary>
    public static readonly HashSet<string> DescriptiveKeys =
    [
        "general.name", "general.size_label", "general.basename", "general.finetune", "general.version", "general.organization",
        "general.description", "general.license", "general.url", "general.repo_url", "general.source.url", "general.tags", "general.languages",
    ];

    /// <summary>
    /// Every key of <paramref name="expected"/> (except descriptive ones) is in <paramref name="actual"/> with the same type and
    /// value.
    /// </summary>
    public static void MetadataMatches(GgufFile expected, GgufFile actual)
    {
        foreach (var key in expected.MetadataKeys)
        {
            if (DescriptiveKeys.Contains(key)) continue;
            var e = expected.Metadata[key];
            Assert.True(actual.Metadata.TryGetValue(key, out var a), $"key '{key}' missing");
            Assert.True(e.Type == a!.Type, $"key '{key}': type {a.Type}, expected {e.Type}");
            Assert.True(ValueEquals(e.Value, a.Value), $"key '{key}': value {a} differs from {e}");
        }
    }

    public static bool ValueEquals(object x, object y)
    {
        if (x is GgufArray ax && y is GgufArray ay)
        {
            if (ax.ElementType != ay.ElementType || ax.Length != ay.Length) return false;
            for (int i = 0; i < ax.Length; i++)
                if (!ValueEquals(ax.Values.GetValue(i)!, ay.Values.GetValue(i)!)) return false;
            return true;
        }
        if (x is float fx && y is float fy) return BitConverter.SingleToInt32Bits(fx) == BitConverter.SingleToInt32Bits(fy);
        return x.Equals(y);
    }

    /// <summary>Same tensor names in the same order, same types, shapes and data bytes.</summary>
    public static void TensorsMatch(GgufFile expected, GgufFile actual)
    {
        Assert.Equal(expected.Tensors.Select(t => t.Name), actual.Tensors.Select(t => t.Name));
        foreach (var e in expected.Tensors)
        {
            var a = actual.GetTensor(e.Name);
            Assert.True(e.Type == a.Type, $"tensor '{e.Name}': type {a.Type}, expected {e.Type}");
            Assert.Equal(e.Dims, a.Dims);
            Assert.True(e.Span.SequenceEqual(a.Span), $"tensor '{e.Name}': data bytes differ");
        }
    }
}
