using System.Text;
using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights.Tests;

/// <summary>Writes importance matrices in llama-imatrix's two formats, for the tests.</summary>
internal static class ImatrixFiles
{
    /// <summary>
    /// The GGUF form: per entry NAME.in_sum2 (F32, row length × experts) and NAME.counts (F32, one per expert), with llama-imatrix's
    /// three metadata keys unless <paramref name="metadata"/> is false.
    /// </summary>
    public static void WriteGguf(string path, IEnumerable<(string Name, float[] Sums, float[] Counts)> entries, bool metadata = true,
        string[]? datasets = null, uint chunks = 10)
    {
        var md = new MetadataList();
        md.Add("general.type", GgufValueType.String, "imatrix");
        if (metadata)
        {
            md.Add("imatrix.datasets", GgufValueType.Array, new GgufArray(GgufValueType.String, datasets ?? ["calibration.txt"]));
            md.Add("imatrix.chunk_count", GgufValueType.UInt32, chunks);
            md.Add("imatrix.chunk_size", GgufValueType.UInt32, 512u);
        }
        var plan = new List<PlannedTensor>();
        foreach (var (name, sums, counts) in entries)
        {
            plan.Add(new PlannedTensor(name + ".in_sum2", GgmlType.F32, [sums.Length / counts.Length, counts.Length], new ArraySource(sums)));
            plan.Add(new PlannedTensor(name + ".counts", GgmlType.F32, [1, counts.Length], new ArraySource(counts)));
        }
        Converter.Write(path, md, plan, null);
    }

    /// <summary>The legacy .dat form; <paramref name="chunks"/> and <paramref name="dataset"/> make the optional trailer.</summary>
    public static void WriteLegacy(string path, IEnumerable<(string Name, int Calls, float[] Sums)> entries, int? chunks = null,
        string? dataset = null)
    {
        var list = entries.ToList();
        using var w = new BinaryWriter(File.Create(path));
        w.Write(list.Count);
        foreach (var (name, calls, sums) in list)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(name);
            w.Write(bytes.Length);
            w.Write(bytes);
            w.Write(calls);
            w.Write(sums.Length);
            foreach (float s in sums) w.Write(s);
        }
        if (chunks is null) return;
        w.Write(chunks.Value);
        byte[] ds = Encoding.UTF8.GetBytes(dataset ?? "");
        w.Write(ds.Length);
        w.Write(ds);
    }
}
