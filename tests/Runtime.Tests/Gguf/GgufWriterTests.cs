using Infer.Runtime.Gguf;
using Infer.Tests;

namespace Infer.Runtime.Tests.Gguf;

public class GgufWriterTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("gguf-writer-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static void AddEveryType(GgufWriter w)
    {
        w.Add("t.u8", GgufValueType.UInt8, (byte)200);
        w.Add("t.i8", GgufValueType.Int8, (sbyte)-100);
        w.Add("t.u16", GgufValueType.UInt16, (ushort)60000);
        w.Add("t.i16", GgufValueType.Int16, (short)-30000);
        w.AddUInt32("t.u32", 4000000000u);
        w.AddInt32("t.i32", -2000000000);
        w.AddFloat32("t.f32", 1e-5f);
        w.AddBool("t.bool", true);
        w.AddString("t.str", "héllo ✓ 🦙");
        w.AddUInt64("t.u64", ulong.MaxValue - 1);
        w.Add("t.i64", GgufValueType.Int64, long.MinValue + 1);
        w.Add("t.f64", GgufValueType.Float64, Math.PI);
        w.AddStringArray("t.arr.str", ["a", "", "Ġ Ġ", "<|end|>"]);
        w.AddFloat32Array("t.arr.f32", [-1000f, 0f, 3.5f]);
        w.AddInt32Array("t.arr.i32", [1, 2, 3, -4]);
        w.Add("t.arr.bool", GgufValueType.Array, new GgufArray(GgufValueType.Bool, new[] { true, false, true }));
        w.Add("t.arr.u8", GgufValueType.Array, new GgufArray(GgufValueType.UInt8, new byte[] { 1, 255 }));
        w.Add("t.arr.i64", GgufValueType.Array, new GgufArray(GgufValueType.Int64, new long[] { -1, long.MaxValue }));
        w.Add("t.arr.f64", GgufValueType.Array, new GgufArray(GgufValueType.Float64, new[] { 0.25, -2.0 }));
        w.Add("t.arr.nested", GgufValueType.Array, new GgufArray(GgufValueType.Array, new[]
        {
            new GgufArray(GgufValueType.Int32, new[] { 7, 8 }),
            new GgufArray(GgufValueType.String, new[] { "x" }),
        }));
        w.Add("t.arr.empty", GgufValueType.Array, new GgufArray(GgufValueType.UInt32, Array.Empty<uint>()));
    }

    [Theory]
    [InlineData(32u)]
    [InlineData(64u)]
    public void RoundTripsEveryMetadataTypeAndTensorBytes(uint alignment)
    {
        string path = Path.Combine(_dir, "m.gguf");
        var rng = new Random(5);
        var a = new byte[4 * 3 * 5];
        var b = new byte[34 * 2 * 7]; // Q8_0: rows of 64 (2 blocks) x 7 rows
        var c = new byte[2 * 33]; // F16 [33]: odd size, padded after
        rng.NextBytes(a);
        rng.NextBytes(b);
        rng.NextBytes(c);
        using (var w = new GgufWriter(path, alignment))
        {
            AddEveryType(w);
            w.AddTensor("a", GgmlType.F32, [3, 5]);
            w.AddTensor("b", GgmlType.Q8_0, [64, 7]);
            w.AddTensor("c.weight", GgmlType.F16, [33]);
            w.WriteHeader();
            w.WriteTensorData(a);
            // b arrives in uneven chunks together with the start of c
            w.WriteTensorData(b.AsSpan(0, 100));
            w.WriteTensorData([.. b.AsSpan(100), .. c.AsSpan(0, 10)]);
            w.WriteTensorData(c.AsSpan(10));
            w.Commit();
        }
        Assert.False(File.Exists(path + ".tmp"));

        using var f = GgufFile.Open(path);
        Assert.Equal(3u, f.Version);
        Assert.Equal(alignment, f.Alignment);
        Assert.Equal((byte)200, f.Metadata["t.u8"].Value);
        Assert.Equal((sbyte)-100, f.Metadata["t.i8"].Value);
        Assert.Equal((ushort)60000, f.Metadata["t.u16"].Value);
        Assert.Equal((short)-30000, f.Metadata["t.i16"].Value);
        Assert.Equal(4000000000u, f.Metadata["t.u32"].Value);
        Assert.Equal(-2000000000, f.Metadata["t.i32"].Value);
        Assert.Equal(1e-5f, f.Metadata["t.f32"].Value);
        Assert.Equal(true, f.TryGetBool("t.bool"));
        Assert.Equal("héllo ✓ 🦙", f.GetString("t.str"));
        Assert.Equal(ulong.MaxValue - 1, f.Metadata["t.u64"].Value);
        Assert.Equal(long.MinValue + 1, f.Metadata["t.i64"].Value);
        Assert.Equal(Math.PI, f.Metadata["t.f64"].Value);
        Assert.Equal(["a", "", "Ġ Ġ", "<|end|>"], f.TryGetStringArray("t.arr.str")!);
        Assert.Equal([-1000f, 0f, 3.5f], f.TryGetFloatArray("t.arr.f32")!);
        Assert.Equal([1, 2, 3, -4], f.TryGetInt32Array("t.arr.i32")!);
        Assert.Equal(new[] { true, false, true }, (bool[])f.TryGetArray("t.arr.bool")!.Values);
        Assert.Equal(new byte[] { 1, 255 }, (byte[])f.TryGetArray("t.arr.u8")!.Values);
        Assert.Equal(new long[] { -1, long.MaxValue }, (long[])f.TryGetArray("t.arr.i64")!.Values);
        Assert.Equal(new[] { 0.25, -2.0 }, (double[])f.TryGetArray("t.arr.f64")!.Values);
        var nested = (GgufArray[])f.TryGetArray("t.arr.nested")!.Values;
        Assert.Equal(new[] { 7, 8 }, (int[])nested[0].Values);
        Assert.Equal(new[] { "x" }, (string[])nested[1].Values);
        Assert.Empty(f.TryGetArray("t.arr.empty")!.Values);

        Assert.Equal(["a", "b", "c.weight"], f.Tensors.Select(t => t.Name));
        Assert.Equal(GgmlType.Q8_0, f.GetTensor("b").Type);
        Assert.Equal([64L, 7L], f.GetTensor("b").Dims);
        Assert.Equal(a, f.GetTensor("a").Span.ToArray());
        Assert.Equal(b, f.GetTensor("b").Span.ToArray());
        Assert.Equal(c, f.GetTensor("c.weight").Span.ToArray());
        foreach (var t in f.Tensors) Assert.Equal(0, t.FileOffset % alignment);
        Assert.Equal(0, f.Length % alignment); // padded after the last tensor, as llama.cpp's writer does
    }

    [Fact]
    public void RewritesAFixtureByteForByte()
    {
        // Copying every key and tensor of a file written by llama.cpp's gguf-py must reproduce it exactly.
        string src = Fixtures.Model("llama2-spm", "q8_0");
        string dst = Path.Combine(_dir, "copy.gguf");
        using (var f = GgufFile.Open(src))
        using (var w = new GgufWriter(dst))
        {
            foreach (var key in f.MetadataKeys) w.Add(key, f.Metadata[key].Type, f.Metadata[key].Value);
            foreach (var t in f.Tensors) w.AddTensor(t.Name, t.Type, t.Dims.ToArray());
            w.WriteHeader();
            foreach (var t in f.Tensors) w.WriteTensorData(t.Span);
            w.Commit();
        }
        Assert.Equal(File.ReadAllBytes(src), File.ReadAllBytes(dst));
    }

    [Fact]
    public void SetReplacesAValueWhereItStands()
    {
        string path = Path.Combine(_dir, "set.gguf");
        using (var w = new GgufWriter(path))
        {
            w.AddString("a", "x");
            w.AddUInt32("general.file_type", 32);
            w.AddString("c", "z");
            w.Set("general.file_type", GgufValueType.UInt32, 7u);
            w.Set("d", GgufValueType.Bool, true);
            w.WriteHeader();
            w.Commit();
        }
        using var f = GgufFile.Open(path);
        Assert.Equal(["a", "general.file_type", "c", "d"], f.MetadataKeys);
        Assert.Equal(7, f.GetInt("general.file_type"));
        Assert.Empty(f.Tensors);
    }

    [Fact]
    public void DisposeWithoutCommitLeavesNoFile()
    {
        string path = Path.Combine(_dir, "partial.gguf");
        using (var w = new GgufWriter(path))
        {
            w.AddTensor("x", GgmlType.F32, [4]);
            w.WriteHeader();
            w.WriteTensorData(new byte[8]);
        }
        Assert.False(File.Exists(path));
        Assert.False(File.Exists(path + ".tmp"));
    }

    [Fact]
    public void CommitRejectsIncompleteTensors()
    {
        using var w = new GgufWriter(Path.Combine(_dir, "i.gguf"));
        w.AddTensor("x", GgmlType.F32, [4]);
        w.WriteHeader();
        w.WriteTensorData(new byte[8]);
        var e = Assert.Throws<InvalidOperationException>(w.Commit);
        Assert.Contains("'x'", e.Message);
    }

    [Fact]
    public void RejectsBadDeclarations()
    {
        using var w = new GgufWriter(Path.Combine(_dir, "bad.gguf"));
        Assert.Throws<ArgumentException>(() => w.AddTensor("q", GgmlType.Q4_0, [48]));
        Assert.Throws<ArgumentException>(() => w.AddTensor(new string('n', 64), GgmlType.F32, [1]));
        Assert.Throws<ArgumentException>(() => w.Add("k", GgufValueType.UInt32, 5)); // int, not uint
        w.AddUInt32("k", 5);
        Assert.Throws<ArgumentException>(() => w.AddUInt32("k", 6));
    }

    [Fact]
    public void MissingFolderIsATypedError()
    {
        var e = Assert.Throws<GgufWriteException>(() => new GgufWriter(Path.Combine(_dir, "no", "such", "x.gguf")));
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void DiskFullIsATypedError()
    {
        // Linux only: /dev/full fails every write with ENOSPC
        Assert.SkipUnless(File.Exists("/dev/full"), "no /dev/full on this OS (Linux only)");
        using var stream = new FileStream("/dev/full", FileMode.Open, FileAccess.Write, FileShare.ReadWrite, bufferSize: 0);
        using var w = new GgufWriter(stream, "/dev/full");
        w.AddString("general.architecture", "llama");
        w.AddTensor("x", GgmlType.F32, [1024]);
        var e = Assert.Throws<GgufDiskFullException>(() =>
        {
            w.WriteHeader();
            w.WriteTensorData(new byte[4096]);
            w.Commit();
        });
        Assert.Contains("/dev/full", e.Message);
        Assert.Contains("no space left", e.Message);
    }
}
