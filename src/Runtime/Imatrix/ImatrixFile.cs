using System.Runtime.InteropServices;
using System.Text;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Imatrix;

/// <summary>
/// Writes collected statistics (<see cref="ImatrixBackend.Entries"/>) as llama.cpp's importance-matrix files, which
/// llama-quantize <c>--imatrix</c> (and <c>convert-weights quantize --imatrix</c>) read: the GGUF form llama-imatrix writes
/// today, or the legacy <c>.dat</c> form. Entries are in name order, as llama-imatrix sorts them.
/// </summary>
public static class ImatrixFile
{
    public const string DatasetsKey = "imatrix.datasets", ChunkCountKey = "imatrix.chunk_count", ChunkSizeKey = "imatrix.chunk_size";

    /// <summary>
    /// GGUF: <c>general.type</c> "imatrix", the datasets, chunk count and size; per weight <c>NAME.in_sum2</c> (Σx², [cols, 1]),
    /// <c>NAME.counts</c> (rows, [1, 1]) and <c>NAME.in_sum</c> (Σx, [cols, 1]), float32.
    /// </summary>
    /// <exception cref="GgufWriteException">the file cannot be written.</exception>
    public static void WriteGguf(string path, IReadOnlyDictionary<string, ImatrixEntry> entries, string dataset, int chunks, int chunkSize)
    {
        var names = Sorted(entries);
        using var w = new GgufWriter(path);
        w.AddString("general.type", "imatrix");
        w.AddStringArray(DatasetsKey, [dataset]);
        w.AddUInt32(ChunkCountKey, (uint)chunks);
        w.AddUInt32(ChunkSizeKey, (uint)chunkSize);
        foreach (string name in names)
        {
            long cols = entries[name].Sum2.Length;
            w.AddTensor(name + ".in_sum2", GgmlType.F32, [cols, 1]);
            w.AddTensor(name + ".counts", GgmlType.F32, [1, 1]);
            w.AddTensor(name + ".in_sum", GgmlType.F32, [cols, 1]);
        }
        w.WriteHeader();
        foreach (string name in names)
        {
            var e = entries[name];
            w.WriteTensorData(MemoryMarshal.AsBytes(e.Sum2.AsSpan()));
            float count = e.Count;
            w.WriteTensorData(MemoryMarshal.AsBytes(new ReadOnlySpan<float>(ref count)));
            w.WriteTensorData(MemoryMarshal.AsBytes(e.Sum.AsSpan()));
        }
        w.Commit();
    }

    /// <summary>
    /// The legacy form: int32 entry count; per entry int32 name length, the name, int32 ncall (chunks, rounded up), int32 value count
    /// and the values Σx²/rows·ncall; then int32 chunk count, int32 dataset name length and the name. Little-endian.
    /// </summary>
    /// <exception cref="IOException">the file cannot be written.</exception>
    public static void WriteDat(string path, IReadOnlyDictionary<string, ImatrixEntry> entries, string dataset, int chunks, int chunkSize)
    {
        var names = Sorted(entries);
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        using var o = new BinaryWriter(stream, Encoding.UTF8);
        o.Write(names.Count);
        foreach (string name in names)
        {
            var e = entries[name];
            byte[] bytes = Encoding.UTF8.GetBytes(name);
            o.Write(bytes.Length);
            o.Write(bytes);
            int ncall = (int)((e.Count + chunkSize - 1) / chunkSize);
            o.Write(ncall);
            o.Write(e.Sum2.Length);
            foreach (float v in e.Sum2) o.Write(v / e.Count * ncall);
        }
        o.Write(chunks);
        byte[] set = Encoding.UTF8.GetBytes(dataset);
        o.Write(set.Length);
        o.Write(set);
    }

    /// <summary>The entries with rows, in ordinal name order.</summary>
    private static List<string> Sorted(IReadOnlyDictionary<string, ImatrixEntry> entries)
    {
        var names = entries.Where(kv => kv.Value.Count > 0).Select(kv => kv.Key).ToList();
        names.Sort(StringComparer.Ordinal);
        return names;
    }
}
