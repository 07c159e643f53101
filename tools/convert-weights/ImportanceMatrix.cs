using System.Buffers.Binary;
using System.Text;
using Infer.Runtime;
using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights;

/// <summary>
/// An importance matrix of llama.cpp's llama-imatrix, as llama-quantize --imatrix reads it (common_imatrix_load and load_imatrix):
/// per weight tensor one weight per input column (per expert for 3-D tensors), the mean squared activation.
/// <para>GGUF form (current llama-imatrix): per tensor <c>NAME.in_sum2</c> (F32, sums of squared activations, ne0 × experts) and
/// <c>NAME.counts</c> (F32, calls per expert); weights = in_sum2 / count, or 1 for an expert that never got a count. The keys
/// imatrix.datasets, imatrix.chunk_count and imatrix.chunk_size must be present.</para>
/// <para>Legacy <c>.dat</c>: int32 entry count; per entry int32 name length, name, int32 ncall, int32 nval, float[nval];
/// optionally int32 chunk count, int32 dataset name length, dataset name. Weights = sums / ncall (the sums when ncall ≤ 0).</para>
/// </summary>
public sealed class ImportanceMatrix
{
    /// <summary>Longest tensor or dataset name a legacy file may hold.</summary>
    public const int MaxNameBytes = 1 << 16;

    private readonly Dictionary<string, float[]> _weights;

    private ImportanceMatrix(Dictionary<string, float[]> weights, IReadOnlyList<string> datasets, int chunkCount)
    {
        _weights = weights;
        Datasets = datasets;
        ChunkCount = chunkCount;
    }

    /// <summary>The datasets the matrix was computed on (llama-quantize records the first).</summary>
    public IReadOnlyList<string> Datasets { get; }

    /// <summary>How many chunks of text the matrix was computed on (0: not recorded).</summary>
    public int ChunkCount { get; }

    /// <summary>How many weight tensors have an entry (llama-quantize's quantize.imatrix.entries_count).</summary>
    public int Count => _weights.Count;

    /// <summary>The weights of tensor <paramref name="name"/> (input columns × experts), or null when the matrix has no entry.</summary>
    public float[]? Find(string name) => _weights.GetValueOrDefault(name);

    /// <summary>Reads a GGUF or legacy imatrix file.</summary>
    /// <exception cref="ModelFormatException">The file is malformed, truncated or empty; the message names it and the problem.</exception>
    public static ImportanceMatrix Load(string path)
    {
        Span<byte> magic = stackalloc byte[4];
        using (var f = File.OpenRead(path))
            if (f.ReadAtLeast(magic, 4, throwOnEndOfStream: false) == 4 && BinaryPrimitives.ReadUInt32LittleEndian(magic) == GgufFile.Magic)
                return LoadGguf(path);
        return LoadLegacy(path);
    }

    private static ModelFormatException Error(string path, string message) => new(path, $"imatrix: {message}");

    private static unsafe ImportanceMatrix LoadGguf(string path)
    {
        using var file = GgufFile.Open(path);
        if (file.Tensors.Count < 1) throw Error(path, "no data (no tensors)");
        foreach (var key in new[] { "imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size" })
            if (!file.ContainsKey(key)) throw Error(path, $"missing metadata key '{key}' (not an importance matrix of llama-imatrix?)");
        string[] datasets = file.Find("imatrix.datasets")!.Value is GgufArray { Values: string[] names } ? names : [];
        int chunkCount = file.GetInt32("imatrix.chunk_count", 0, int.MaxValue);
        var sums = new Dictionary<string, GgufTensor>(StringComparer.Ordinal);
        var counts = new Dictionary<string, GgufTensor>(StringComparer.Ordinal);
        foreach (var t in file.Tensors)
        {
            if (t.Name.EndsWith(".in_sum2", StringComparison.Ordinal)) sums[t.Name[..^".in_sum2".Length]] = t;
            else if (t.Name.EndsWith(".counts", StringComparison.Ordinal)) counts[t.Name[..^".counts".Length]] = t;
        }
        var weights = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var name in sums.Keys.Union(counts.Keys))
        {
            if (!sums.TryGetValue(name, out var s) || !counts.TryGetValue(name, out var c))
                throw Error(path, $"mismatched sums and counts for '{name}' (one of {name}.in_sum2 and {name}.counts is missing)");
            if (s.Type != GgmlType.F32 || c.Type != GgmlType.F32)
                throw Error(path, $"'{name}': in_sum2 and counts must be F32, not {GgmlTypeInfo.Name(s.Type)} and {GgmlTypeInfo.Name(c.Type)}");
            long nCounts = c.ElementCount, nSums = s.ElementCount;
            if (nCounts == 0 || nSums == 0) continue; // llama-quantize skips an entry without counts or sums
            if (nSums % nCounts != 0 || nSums > int.MaxValue)
                throw Error(path, $"'{name}': {nSums} sums do not split into {nCounts} experts");
            var sumValues = new ReadOnlySpan<float>(s.Data, (int)nSums);
            var countValues = new ReadOnlySpan<float>(c.Data, checked((int)nCounts));
            int ne0 = (int)(nSums / nCounts);
            var w = new float[nSums];
            for (int j = 0; j < nCounts; j++)
            {
                float count = MathF.Round(countValues[j], MidpointRounding.AwayFromZero); // C's lround, then back to float
                for (int i = 0; i < ne0; i++) w[j * ne0 + i] = count > 0 ? sumValues[j * ne0 + i] / count : 1;
            }
            weights[name] = Checked(path, name, w);
        }
        return new ImportanceMatrix(weights, datasets, chunkCount);
    }

    private static ImportanceMatrix LoadLegacy(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        var reader = new LegacyReader(path, bytes);
        int entries = reader.ReadInt32("the entry count");
        if (entries < 1) throw Error(path, $"no data (entry count {entries}; not an imatrix .dat or GGUF file?)");
        var weights = new Dictionary<string, float[]>(StringComparer.Ordinal);
        for (int e = 0; e < entries; e++)
        {
            string name = reader.Name($"the name of entry {e + 1}");
            int ncall = reader.ReadInt32($"the call count of '{name}'");
            int nval = reader.ReadInt32($"the value count of '{name}'");
            if (nval < 1) throw Error(path, $"entry '{name}' has {nval} values");
            float[] w = reader.Floats(nval, $"the {nval} values of '{name}'");
            if (ncall > 0)
                for (int i = 0; i < w.Length; i++) w[i] /= ncall;
            weights[name] = Checked(path, name, w);
        }
        int chunkCount = 0;
        var datasets = new List<string>();
        if (!reader.AtEnd && reader.TryInt32(out chunkCount) && reader.TryInt32(out int len) && len > 0)
        {
            string dataset = reader.Name("the dataset name", len);
            datasets.Add(dataset);
        }
        return new ImportanceMatrix(weights, datasets, chunkCount);
    }

    /// <summary>llama_model_quantize refuses an importance matrix with a value that is not finite.</summary>
    private static float[] Checked(string path, string name, float[] w)
    {
        foreach (float v in w)
            if (!float.IsFinite(v)) throw Error(path, $"'{name}' has a non-finite weight ({v})");
        return w;
    }

    /// <summary>Little-endian reads that check every length against the bytes left before allocating.</summary>
    private sealed class LegacyReader(string path, byte[] bytes)
    {
        private int _pos;

        public bool AtEnd => _pos >= bytes.Length;

        public bool TryInt32(out int value)
        {
            value = 0;
            if (bytes.Length - _pos < 4) return false;
            value = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(_pos));
            _pos += 4;
            return true;
        }

        public int ReadInt32(string what) => TryInt32(out int v) ? v : throw Error(path, $"truncated at byte {_pos} reading {what}");

        public string Name(string what) => Name(what, ReadInt32($"the length of {what}"));

        public string Name(string what, int len)
        {
            if (len < 0 || len > MaxNameBytes) throw Error(path, $"{what} is {len} bytes long (at most {MaxNameBytes})");
            if (bytes.Length - _pos < len) throw Error(path, $"truncated at byte {_pos} reading {what} ({len} bytes)");
            var raw = bytes.AsSpan(_pos, len);
            int nul = raw.IndexOf((byte)0);
            _pos += len;
            return Encoding.UTF8.GetString(nul >= 0 ? raw[..nul] : raw); // a C string ends at its first NUL
        }

        public float[] Floats(int n, string what)
        {
            if ((bytes.Length - _pos) / 4 < n) throw Error(path, $"truncated at byte {_pos} reading {what}");
            var v = new float[n];
            for (int i = 0; i < n; i++) v[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(_pos + 4 * i));
            _pos += 4 * n;
            return v;
        }
    }
}
