using System.Text;
using Infer.Runtime;

namespace Infer.ConvertWeights.Tests;

/// <summary>Reading llama-imatrix's files as llama-quantize --imatrix does, and refusing bad ones with one clear error.</summary>
public class ImatrixFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("imatrix-files-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>
    /// What <c>infer imatrix</c> writes (Runtime's ImatrixFile, in both forms; 130 rows in chunks of 64: ncall 3) reads back as
    /// the mean squared input of each column.
    /// </summary>
    [Theory]
    [InlineData("ours.gguf")]
    [InlineData("ours.dat")]
    public void InferImatrixFilesReadBackAsMeanSquares(string name)
    {
        string path = PathOf(name);
        var q = new Infer.Runtime.Imatrix.ImatrixEntry(3) { Count = 130 };
        var v = new Infer.Runtime.Imatrix.ImatrixEntry(2) { Count = 130 };
        float[] sq = [13f, 0.5f, 2600f], sv = [1.3f, 7f];
        sq.CopyTo(q.Sum2, 0);
        sv.CopyTo(v.Sum2, 0);
        var entries = new Dictionary<string, Infer.Runtime.Imatrix.ImatrixEntry> { ["blk.0.attn_q.weight"] = q, ["blk.1.attn_v.weight"] = v };
        if (name.EndsWith(".gguf")) Infer.Runtime.Imatrix.ImatrixFile.WriteGguf(path, entries, "calibration.txt", 2, 64);
        else Infer.Runtime.Imatrix.ImatrixFile.WriteDat(path, entries, "calibration.txt", 2, 64);
        var m = ImportanceMatrix.Load(path);
        Assert.Equal(2, m.Count);
        Assert.Equal(["calibration.txt"], m.Datasets);
        Assert.Equal(2, m.ChunkCount);
        foreach (var (tensor, sums) in new[] { ("blk.0.attn_q.weight", sq), ("blk.1.attn_v.weight", sv) })
        {
            float[] w = m.Find(tensor)!;
            Assert.Equal(sums.Length, w.Length);
            for (int j = 0; j < w.Length; j++) Assert.Equal(sums[j] / 130, w[j], 1e-6 * sums[j] / 130);
        }
    }

    [Fact]
    public void GgufWeightsAreSumsOverCountsPerExpert()
    {
        string path = PathOf("m.gguf");
        ImatrixFiles.WriteGguf(path,
        [
            ("blk.0.attn_q.weight", [2, 4, 6, 8], [2]),
            ("blk.0.ffn_up_exps.weight", [3, 6, 9, 1, 2, 3], [3, 0]), // the second expert never ran: weights 1
            ("blk.0.ffn_down.weight", [5, 5], [2.5f]),               // a count rounds as lround: 3
        ], datasets: ["wiki.train.raw", "code.txt"], chunks: 125);
        var m = ImportanceMatrix.Load(path);
        Assert.Equal(3, m.Count);
        Assert.Equal([1, 2, 3, 4], m.Find("blk.0.attn_q.weight")!);
        Assert.Equal([1, 2, 3, 1, 1, 1], m.Find("blk.0.ffn_up_exps.weight")!);
        Assert.Equal([5 / 3f, 5 / 3f], m.Find("blk.0.ffn_down.weight")!);
        Assert.Null(m.Find("blk.0.attn_k.weight"));
        Assert.Equal(["wiki.train.raw", "code.txt"], m.Datasets);
        Assert.Equal(125, m.ChunkCount);
    }

    [Fact]
    public void LegacyWeightsAreSumsOverCalls()
    {
        string path = PathOf("m.dat");
        ImatrixFiles.WriteLegacy(path, [("blk.0.attn_q.weight", 4, [4, 8, 12]), ("output.weight", 0, [1.5f, 2.5f])], 57, "wiki.txt");
        var m = ImportanceMatrix.Load(path);
        Assert.Equal(2, m.Count);
        Assert.Equal([1, 2, 3], m.Find("blk.0.attn_q.weight")!);
        Assert.Equal([1.5f, 2.5f], m.Find("output.weight")!); // no calls: the sums as they are
        Assert.Equal(["wiki.txt"], m.Datasets);
        Assert.Equal(57, m.ChunkCount);
    }

    [Fact]
    public void LegacyWithoutTrailerHasNoDatasetOrChunks()
    {
        string path = PathOf("m.dat");
        ImatrixFiles.WriteLegacy(path, [("a.weight", 1, [1])]);
        var m = ImportanceMatrix.Load(path);
        Assert.Empty(m.Datasets);
        Assert.Equal(0, m.ChunkCount);
    }

    private static byte[] Ints(params int[] v) => [.. v.SelectMany(BitConverter.GetBytes)];

    public static TheoryData<string, byte[], string> BadLegacyFiles => new()
    {
        { "empty", [], "truncated" },
        { "no entries", Ints(0), "no data" },
        { "negative name length", Ints(1, -5), "-5 bytes long" },
        { "name past the end", Ints(1, 1000), "truncated" },
        { "huge name", Ints(1, int.MaxValue), "bytes long" },
        { "no values", [.. Ints(1, 1), (byte)'a', .. Ints(1, 0)], "has 0 values" },
        { "values past the end", [.. Ints(1, 1), (byte)'a', .. Ints(1, 1 << 30), .. Ints(0)], "truncated" },
        { "infinite sum", [.. Ints(1, 1), (byte)'a', .. Ints(1, 1), .. BitConverter.GetBytes(float.PositiveInfinity)], "non-finite" },
        { "cut dataset name", [.. Ints(1, 1), (byte)'a', .. Ints(1, 1), .. BitConverter.GetBytes(1f), .. Ints(3, 50)], "truncated" },
    };

    [Theory]
    [MemberData(nameof(BadLegacyFiles))]
    public void BadLegacyFilesAreOneErrorNamingTheFile(string what, byte[] bytes, string fragment)
    {
        string path = PathOf("bad.dat");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<ModelFormatException>(() => ImportanceMatrix.Load(path));
        Assert.Contains(path, e.Message);
        Assert.True(e.Message.Contains(fragment, StringComparison.Ordinal), $"{what}: {e.Message}");
    }

    [Fact]
    public void GgufWithoutImatrixMetadataIsRefused()
    {
        string path = PathOf("m.gguf");
        ImatrixFiles.WriteGguf(path, [("a.weight", [1], [1])], metadata: false);
        var e = Assert.Throws<ModelFormatException>(() => ImportanceMatrix.Load(path));
        Assert.Contains("imatrix.datasets", e.Message);
    }

    [Fact]
    public void GgufSumsWithoutCountsAreRefused()
    {
        string path = PathOf("m.gguf");
        ImatrixFiles.WriteGguf(path, [("a.weight", [1, 2], [1])]);
        string renamed = PathOf("renamed.gguf");
        // rename a.weight.counts to b.weight.counts in place (same length): a has sums only, b counts only
        byte[] bytes = File.ReadAllBytes(path);
        byte[] from = Encoding.ASCII.GetBytes("a.weight.counts"), to = Encoding.ASCII.GetBytes("b.weight.counts");
        int at = bytes.AsSpan().IndexOf(from);
        Assert.True(at > 0);
        to.CopyTo(bytes, at);
        File.WriteAllBytes(renamed, bytes);
        var e = Assert.Throws<ModelFormatException>(() => ImportanceMatrix.Load(renamed));
        Assert.Contains("mismatched sums and counts", e.Message);
    }

    [Fact]
    public void GgufWithNaNSumsIsRefused()
    {
        string path = PathOf("m.gguf");
        ImatrixFiles.WriteGguf(path, [("a.weight", [1, float.NaN], [1])]);
        var e = Assert.Throws<ModelFormatException>(() => ImportanceMatrix.Load(path));
        Assert.Contains("non-finite", e.Message);
    }

    [Fact]
    public void TheCliReportsABadImatrixInOneLine()
    {
        string bad = PathOf("bad.dat");
        File.WriteAllBytes(bad, Ints(0));
        string output = PathOf("out.gguf");
        var err = new StringWriter();
        string input = Infer.Tests.Fixtures.Model("llama3", "bf16");
        int rc = Program.Run(["quantize", input, output, "q4_k_m", "--imatrix", bad], err, showProgress: false);
        string text = err.ToString().TrimEnd();
        Assert.Equal(1, rc);
        Assert.DoesNotContain('\n', text);
        Assert.Contains(bad, text);
        Assert.False(File.Exists(output));
    }
}
