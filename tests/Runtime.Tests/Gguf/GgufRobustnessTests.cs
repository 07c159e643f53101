using System.Text;
using Infer.Runtime.Gguf;
using Infer.Tests;

namespace Infer.Runtime.Tests.Gguf;

/// <summary>
/// Hostile and damaged files: each must give a <see cref="ModelFormatException"/> (never another exception type, a hang
/// or a large allocation). Files are built byte by byte by <see cref="TinyGguf"/>, written independently of the reader.
/// </summary>
public class GgufRobustnessTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("gguf-robust-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(byte[] bytes, string name = "m.gguf")
    {
        string p = Path.Combine(_dir, name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    private static ModelFormatException Rejects(string path)
    {
        var e = Record.Exception(() => { using var f = GgufFile.Open(path); });
        Assert.NotNull(e);
        return Assert.IsAssignableFrom<ModelFormatException>(e);
    }

    [Fact]
    public void TheTinyFileIsValid()
    {
        var g = new TinyGguf();
        using var f = GgufFile.Open(Write(g.Build()));
        Assert.Equal("llama", f.GetString("general.architecture"));
        Assert.Equal(new[] { "a", "bc" }, f.TryGetStringArray("tokenizer.ggml.tokens"));
        var t = f.GetTensor("w");
        Assert.Equal(GgmlType.F32, t.Type);
        Assert.Equal(new long[] { 8, 2 }, t.Dims);
        Assert.Equal(1.5f, BitConverter.ToSingle(t.Span[4..8]));
        Assert.Equal(0, t.FileOffset % 32);
    }

    [Fact]
    public void EveryMetadataTypeIncludingNestedArraysReads()
    {
        var g = new TinyGguf();
        g.Kv("u8", 0, [200]);
        g.Kv("i8", 1, [0xFE]);
        g.Kv("u16", 2, BitConverter.GetBytes((ushort)60000));
        g.Kv("i16", 3, BitConverter.GetBytes((short)-3));
        g.Kv("i32", 5, BitConverter.GetBytes(-7));
        g.Kv("b", 7, [1]);
        g.Kv("u64", 10, BitConverter.GetBytes(ulong.MaxValue));
        g.Kv("i64", 11, BitConverter.GetBytes(-9L));
        g.Kv("f64", 12, BitConverter.GetBytes(0.25));
        // array of 2 arrays of int32: [[1,2],[3]]
        g.Kv("nested", 9, [.. U32(9), .. U64(2), .. U32(5), .. U64(2), .. U32(1), .. U32(2), .. U32(5), .. U64(1), .. U32(3)]);
        using var f = GgufFile.Open(Write(g.Build()));
        Assert.Equal((byte)200, f.Find("u8")!.Value);
        Assert.Equal((sbyte)-2, f.Find("i8")!.Value);
        Assert.Equal(60000L, f.GetInt("u16"));
        Assert.Equal(-3L, f.GetInt("i16"));
        Assert.Equal(-7L, f.GetInt("i32"));
        Assert.True(f.TryGetBool("b"));
        Assert.Equal(ulong.MaxValue, f.Find("u64")!.Value);
        Assert.Equal(-9L, f.GetInt("i64"));
        Assert.Equal(0.25, f.TryGetFloat("f64"));
        var nested = f.TryGetArray("nested")!;
        var inner = Assert.IsType<GgufArray[]>(nested.Values);
        Assert.Equal(new[] { 1, 2 }, inner[0].Values);
        Assert.Equal(new[] { 3 }, inner[1].Values);
    }

    [Fact]
    public void CutAtEveryLengthIsRejected()
    {
        byte[] full = new TinyGguf().Build();
        for (int len = 0; len < full.Length; len++)
        {
            var e = Rejects(Write(full[..len], $"cut{len}.gguf"));
            Assert.Contains($"cut{len}.gguf", e.Message);
        }
    }

    [Fact]
    public void FixtureCutAtManyLengthsIsRejected()
    {
        byte[] full = File.ReadAllBytes(Fixtures.Model("llama2-spm", "q8_0"));
        var lengths = new SortedSet<int>();
        for (int len = 0; len < 4096; len += 7) lengths.Add(len);
        for (int len = 4096; len < full.Length; len += full.Length / 97) lengths.Add(len);
        lengths.Add(full.Length - 1);
        foreach (int len in lengths)
            Rejects(Write(full[..len], "cut.gguf"));
    }

    [Fact]
    public void BadMagicIsRejected()
    {
        var bytes = new TinyGguf().Build();
        bytes[0] = (byte)'X';
        Assert.Contains("magic", Rejects(Write(bytes)).Message);
    }

    [Theory]
    [InlineData(1u)]
    [InlineData(4u)]
    [InlineData(0xFFFFFFFFu)]
    public void BadVersionIsRejected(uint version)
    {
        var bytes = new TinyGguf().Build();
        BitConverter.GetBytes(version).CopyTo(bytes, 4);
        Assert.Contains("version", Rejects(Write(bytes)).Message);
    }

    [Theory]
    [InlineData(8)]   // tensor count
    [InlineData(16)]  // metadata count
    public void HugeCountsAreRejectedWithoutAllocating(int offset)
    {
        var bytes = new TinyGguf().Build();
        foreach (ulong n in new[] { ulong.MaxValue, 1UL << 40, 1UL << 19 })
        {
            BitConverter.GetBytes(n).CopyTo(bytes, offset);
            Rejects(Write(bytes));
        }
    }

    [Fact]
    public void HugeStringLengthIsRejected()
    {
        var g = new TinyGguf();
        var bytes = g.Build();
        // The first metadata key's length field sits right after the 24-byte header.
        BitConverter.GetBytes(ulong.MaxValue - 3).CopyTo(bytes, 24);
        Assert.Contains("length", Rejects(Write(bytes)).Message);
        BitConverter.GetBytes(1UL << 33).CopyTo(bytes, 24);
        Rejects(Write(bytes));
    }

    [Fact]
    public void HugeArrayLengthIsRejected()
    {
        var g = new TinyGguf();
        var bytes = g.Build();
        BitConverter.GetBytes(ulong.MaxValue / 2).CopyTo(bytes, g.TokensArrayLengthOffset);
        Assert.Contains("tokenizer.ggml.tokens", Rejects(Write(bytes)).Message);
    }

    [Fact]
    public void DeeplyNestedArraysAreRejected()
    {
        var g = new TinyGguf();
        // 64 levels of array-of-array with one element each, ending in an empty int32 array.
        var value = new List<byte>();
        for (int i = 0; i < 64; i++) { value.AddRange(U32(9)); value.AddRange(U64(1)); }
        value.AddRange(U32(5)); value.AddRange(U64(0));
        g.Kv("deep", 9, [.. value]);
        Assert.Contains("deep", Rejects(Write(g.Build())).Message);
    }

    [Theory]
    [InlineData(13u)]
    [InlineData(0xFFFFFFFFu)]
    public void UnknownValueTypeIsRejected(uint type)
    {
        var g = new TinyGguf();
        var bytes = g.Build();
        BitConverter.GetBytes(type).CopyTo(bytes, g.ArchitectureTypeOffset);
        Assert.Contains("general.architecture", Rejects(Write(bytes)).Message);
    }

    [Theory]
    [InlineData(0u, "dimension")]
    [InlineData(5u, "dimension")]
    public void BadDimensionCountIsRejected(uint nDims, string expected)
    {
        var g = new TinyGguf();
        var bytes = g.Build();
        BitConverter.GetBytes(nDims).CopyTo(bytes, g.TensorNDimsOffset);
        Assert.Contains(expected, Rejects(Write(bytes)).Message);
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData(1UL << 40)]
    [InlineData(ulong.MaxValue)]
    public void BadDimensionIsRejected(ulong ne)
    {
        var g = new TinyGguf();
        var bytes = g.Build();
        BitConverter.GetBytes(ne).CopyTo(bytes, g.TensorNDimsOffset + 4 + 8);
        Assert.Contains("'w'", Rejects(Write(bytes)).Message);
    }

    [Theory]
    [InlineData(5u)]      // a removed type id
    [InlineData(200u)]
    public void UnknownTensorTypeIsRejected(uint type)
    {
        var g = new TinyGguf();
        var bytes = g.Build();
        BitConverter.GetBytes(type).CopyTo(bytes, g.TensorTypeOffset);
        var e = Rejects(Write(bytes));
        Assert.Contains("'w'", e.Message);
        Assert.Contains("type", e.Message);
    }

    [Fact]
    public void RowLengthNotMultipleOfBlockIsRejected()
    {
        var g = new TinyGguf();
        var bytes = g.Build();
        BitConverter.GetBytes((uint)GgmlType.Q8_0).CopyTo(bytes, g.TensorTypeOffset); // rows of 8 are not a multiple of 32
        Assert.Contains("block size", Rejects(Write(bytes)).Message);
    }

    [Theory]
    [InlineData(3UL, "alignment")]         // misaligned
    [InlineData(1UL << 20, "past the end")]
    [InlineData(ulong.MaxValue - 31, "past the end")]
    public void BadOffsetIsRejected(ulong offset, string expected)
    {
        var g = new TinyGguf();
        var bytes = g.Build();
        BitConverter.GetBytes(offset).CopyTo(bytes, g.TensorOffsetOffset);
        Assert.Contains(expected, Rejects(Write(bytes)).Message);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(3u)]
    [InlineData(48u)]
    public void AlignmentThatIsNotAPowerOfTwoIsRejected(uint alignment)
    {
        var g = new TinyGguf { Alignment = alignment };
        Assert.Contains("general.alignment", Rejects(Write(g.Build())).Message);
    }

    [Fact]
    public void LargerPowerOfTwoAlignmentIsHonoured()
    {
        var g = new TinyGguf { Alignment = 256 };
        using var f = GgufFile.Open(Write(g.Build()));
        Assert.Equal(256u, f.Alignment);
        Assert.Equal(0, f.DataOffset % 256);
        Assert.Equal(1.5f, BitConverter.ToSingle(f.GetTensor("w").Span[4..8]));
    }

    [Fact]
    public void InvalidUtf8KeyIsRejected()
    {
        var g = new TinyGguf();
        var bytes = g.Build();
        bytes[24 + 8] = 0xFF; // first byte of the first key
        Assert.Contains("UTF-8", Rejects(Write(bytes)).Message);
    }

    /// <summary>A bad element of a string array is named by its index and key (the reader formats that only for an error).</summary>
    [Fact]
    public void BadStringArrayElementIsNamed()
    {
        byte[] Strings(params byte[][] items) => [.. U32(8), .. U64((ulong)items.Length), .. items.SelectMany(i => U64((ulong)i.Length).Concat(i))];
        var invalid = new TinyGguf();
        invalid.Kv("t.list", 9, Strings("ok"u8.ToArray(), "fine"u8.ToArray(), [0x61, 0xC3]));
        Assert.Contains("element 2 of metadata key 't.list' at offset", Rejects(Write(invalid.Build(), "utf8.gguf")).Message);

        var huge = new TinyGguf();
        huge.Kv("t.list", 9, [.. U32(8), .. U64(2), .. U64(1), (byte)'a', .. U64(1UL << 40)]);
        Assert.Contains("length of element 1 of metadata key 't.list' is 1099511627776 bytes", Rejects(Write(huge.Build(), "huge.gguf")).Message);
    }

    [Fact]
    public void DuplicateKeysAndTensorsAreRejected()
    {
        var g = new TinyGguf();
        g.Kv("general.architecture", 8, [.. U64(1), (byte)'x']);
        Assert.Contains("duplicate", Rejects(Write(g.Build())).Message);
    }

    [Fact]
    public void MissingFileIsAModelFormatException()
    {
        var e = Rejects(Path.Combine(_dir, "nope.gguf"));
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void RandomCorruptionNeverThrowsAnythingElse()
    {
        byte[] good = new TinyGguf().Build();
        var rng = new Random(1234);
        string path = Path.Combine(_dir, "fuzz.gguf");
        for (int i = 0; i < 3000; i++)
        {
            var bytes = (byte[])good.Clone();
            int flips = rng.Next(1, 4);
            for (int j = 0; j < flips; j++) bytes[rng.Next(bytes.Length)] = (byte)rng.Next(256);
            File.WriteAllBytes(path, bytes);
            var e = Record.Exception(() => { using var f = GgufFile.Open(path); });
            if (e is not null) Assert.IsAssignableFrom<ModelFormatException>(e);
        }
    }

    internal static byte[] U32(uint v) => BitConverter.GetBytes(v);
    internal static byte[] U64(ulong v) => BitConverter.GetBytes(v);

    /// <summary>
    /// Writes a small GGUF v3 file by hand: general.architecture, a token array, optional extra keys and one F32 tensor
    /// 'w' of shape [8, 2] holding 0, 1.5, 3, ... Records where the fields that tests corrupt were written.
    /// </summary>
    private sealed class TinyGguf
    {
        private readonly List<(string Key, uint Type, byte[] Value)> _extra = [];
        public uint? Alignment;
        public int ArchitectureTypeOffset, TokensArrayLengthOffset, TensorNDimsOffset, TensorTypeOffset, TensorOffsetOffset;

        public void Kv(string key, uint type, byte[] value) => _extra.Add((key, type, value));

        public byte[] Build()
        {
            var b = new List<byte>();
            void Str(string s) { var u = Encoding.UTF8.GetBytes(s); b.AddRange(U64((ulong)u.Length)); b.AddRange(u); }
            b.AddRange(U32(0x46554747));
            b.AddRange(U32(3));
            b.AddRange(U64(1));
            b.AddRange(U64((ulong)(2 + _extra.Count + (Alignment is null ? 0 : 1))));
            Str("general.architecture");
            ArchitectureTypeOffset = b.Count;
            b.AddRange(U32(8));
            Str("llama");
            Str("tokenizer.ggml.tokens");
            b.AddRange(U32(9));
            b.AddRange(U32(8));
            TokensArrayLengthOffset = b.Count;
            b.AddRange(U64(2));
            Str("a");
            Str("bc");
            if (Alignment is { } al) { Str("general.alignment"); b.AddRange(U32(4)); b.AddRange(U32(al)); }
            foreach (var (k, t, v) in _extra) { Str(k); b.AddRange(U32(t)); b.AddRange(v); }
            Str("w");
            TensorNDimsOffset = b.Count;
            b.AddRange(U32(2));
            b.AddRange(U64(8));
            b.AddRange(U64(2));
            TensorTypeOffset = b.Count;
            b.AddRange(U32(0));
            TensorOffsetOffset = b.Count;
            b.AddRange(U64(0));
            int align = (int)(Alignment is { } a && a != 0 && (a & (a - 1)) == 0 ? a : 32);
            while (b.Count % align != 0) b.Add(0);
            for (int i = 0; i < 16; i++) b.AddRange(BitConverter.GetBytes(i * 1.5f));
            return [.. b];
        }
    }
}
