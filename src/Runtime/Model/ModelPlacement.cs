using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Model;

/// <summary>
/// One part of a model as <see cref="LlamaModel.LoadSplit"/> places it: layers [First, First + Count) on one backend, with the
/// token embedding (the first part) and the output norm and matrix (the last part).
/// </summary>
/// <param name="IsFirst">the part on the first backend (the GPU); false for the part on the CPU, and for the whole model with -ngl 0.</param>
/// <param name="First">its first layer.</param>
/// <param name="Count">its layers (0 when it holds only the embedding or the output).</param>
/// <param name="Embedding">it holds the token embedding.</param>
/// <param name="Output">it holds the output norm and matrix.</param>
/// <param name="Tensors">the tensors the part loads (the token embedding twice over the parts when it doubles as the output).</param>
/// <param name="KvCacheBytes">its layers' K and V for every position and sequence, in the part's cache types (float32 on the GPU).</param>
public sealed record PlacedPart(bool IsFirst, int First, int Count, bool Embedding, bool Output, IReadOnlyList<GgufTensor> Tensors,
    long KvCacheBytes)
{
    public long WeightBytes => Tensors.Sum(t => t.ByteSize);

    /// <summary>"token embedding, layers 0-19" / "layers 20-31, output".</summary>
    public string Describe()
    {
        var parts = new List<string>();
        if (Embedding) parts.Add("token embedding");
        if (Count > 0) parts.Add(Count == 1 ? $"layer {First}" : $"layers {First}-{First + Count - 1}");
        if (Output) parts.Add("output");
        return string.Join(", ", parts);
    }
}

/// <summary>
/// Where <c>-ngl N</c> puts each part of a model, from the file alone (no weight is read): the same split as
/// <see cref="LlamaModel.LoadSplit"/>, with the bytes each part loads and its KV cache, for <c>infer info</c>.
/// </summary>
public static class ModelPlacement
{
    /// <param name="file">the model; only its tensor table is read.</param>
    /// <param name="config">the model's hyperparameters.</param>
    /// <param name="firstLayers">layers on the first backend (the GPU); at least the layer count puts everything there, 0 nothing.</param>
    /// <param name="contextLength">KV positions per sequence; 0: the model's own, at most 4096 (as <see cref="LlamaModel"/>).</param>
    /// <param name="sequences">KV-cache sequences (the server's slots); the cache grows with each.</param>
    /// <param name="kType">how each part's cache stores keys.</param>
    /// <param name="vType">how each part's cache stores values.</param>
    public static IReadOnlyList<PlacedPart> Plan(GgufFile file, ModelConfig config, int firstLayers, int contextLength = 0, int sequences = 1,
        KvCacheType kType = KvCacheType.F32, KvCacheType vType = KvCacheType.F32)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(firstLayers);
        int layers = config.BlockCount;
        int n = Math.Min(firstLayers, layers);
        int ctx = contextLength > 0 ? contextLength : Math.Min(config.ContextLength, 4096);
        long kvPerLayer = new KvCacheConfig(1, Math.Max(1, sequences), ctx, config.HeadCountKv, config.HeadDim, kType, vType).Bytes;
        var embd = file.FindTensor("token_embd.weight") ?? throw new ModelFormatException(file.Path, "tensor 'token_embd.weight' not found");
        var outputs = new List<GgufTensor>();
        if (file.FindTensor("output_norm.weight") is { } norm) outputs.Add(norm);
        outputs.Add(file.FindTensor("output.weight") ?? embd);

        List<GgufTensor> Layers(int first, int count) =>
            [.. file.Tensors.Where(t => LayerOf(t.Name) is int l && l >= first && l < first + count)];

        PlacedPart Part(bool isFirst, int first, int count, bool embedding, bool output)
        {
            var tensors = new List<GgufTensor>();
            if (embedding) tensors.Add(embd);
            tensors.AddRange(Layers(first, count));
            // A tied output on the part that already holds the embedding shares it.
            if (output) tensors.AddRange(outputs.Where(t => !(embedding && ReferenceEquals(t, embd))));
            // the first part is the GPU's whenever there is one (firstLayers > 0)
            return new PlacedPart(isFirst, first, count, embedding, output, tensors, kvPerLayer * count);
        }

        if (n == 0) return [Part(false, 0, layers, true, true)];
        if (n == layers) return [Part(true, 0, layers, true, true)];
        return [Part(true, 0, n, true, false), Part(false, n, layers - n, false, true)];
    }

    /// <summary>The layer of a "blk.N." tensor, or null.</summary>
    private static int? LayerOf(string name)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return null;
        int dot = name.IndexOf('.', 4);
        return dot > 4 && int.TryParse(name.AsSpan(4, dot - 4), System.Globalization.NumberStyles.None,
            System.Globalization.CultureInfo.InvariantCulture, out int l) ? l : null;
    }
}
