using System.Text;

namespace Infer.Runtime.Tests.Tokenizers;

/// <summary>Writes a metadata-only GGUF v3 file (no tensors) with tokenizer keys, for hand-made vocabularies.</summary>
internal sealed class VocabGguf
{
    private readonly List<(string Key, uint Type, byte[] Value)> _kvs = [];

    public VocabGguf String(string key, string value) => Add(key, 8, Str(value));
    public VocabGguf UInt32(string key, uint value) => Add(key, 4, BitConverter.GetBytes(value));
    public VocabGguf Bool(string key, bool value) => Add(key, 7, [(byte)(value ? 1 : 0)]);

    public VocabGguf Strings(string key, params string[] values)
    {
        var b = new List<byte>();
        b.AddRange(BitConverter.GetBytes(8u));
        b.AddRange(BitConverter.GetBytes((ulong)values.Length));
        foreach (var v in values) b.AddRange(Str(v));
        return Add(key, 9, [.. b]);
    }

    public VocabGguf Floats(string key, params float[] values)
    {
        var b = new List<byte>();
        b.AddRange(BitConverter.GetBytes(6u));
        b.AddRange(BitConverter.GetBytes((ulong)values.Length));
        foreach (var v in values) b.AddRange(BitConverter.GetBytes(v));
        return Add(key, 9, [.. b]);
    }

    public VocabGguf Ints(string key, params int[] values)
    {
        var b = new List<byte>();
        b.AddRange(BitConverter.GetBytes(5u));
        b.AddRange(BitConverter.GetBytes((ulong)values.Length));
        foreach (var v in values) b.AddRange(BitConverter.GetBytes(v));
        return Add(key, 9, [.. b]);
    }

    public VocabGguf Remove(string key)
    {
        _kvs.RemoveAll(kv => kv.Key == key);
        return this;
    }

    private VocabGguf Add(string key, uint type, byte[] value)
    {
        Remove(key);
        _kvs.Add((key, type, value));
        return this;
    }

    private static byte[] Str(string s)
    {
        var u = Encoding.UTF8.GetBytes(s);
        return [.. BitConverter.GetBytes((ulong)u.Length), .. u];
    }

    public string Write(string directory, string name)
    {
        var b = new List<byte>();
        b.AddRange(BitConverter.GetBytes(0x46554747u));
        b.AddRange(BitConverter.GetBytes(3u));
        b.AddRange(BitConverter.GetBytes(0UL));
        b.AddRange(BitConverter.GetBytes((ulong)_kvs.Count));
        foreach (var (k, t, v) in _kvs)
        {
            b.AddRange(Str(k));
            b.AddRange(BitConverter.GetBytes(t));
            b.AddRange(v);
        }
        while (b.Count % 32 != 0) b.Add(0);
        var path = Path.Combine(directory, name);
        File.WriteAllBytes(path, [.. b]);
        return path;
    }

    /// <summary>
    /// A tiny SentencePiece vocabulary: &lt;unk&gt; &lt;s&gt; &lt;/s&gt;, the 256 byte tokens (ids 3..258), then pieces with
    /// scores: ▁ a b ab ▁a ▁ab ▁b, and a user-defined token "&lt;tool&gt;" and a control token "&lt;|im_end|&gt;".
    /// </summary>
    public static VocabGguf TinySpm()
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { 2, 3, 3 };
        var scores = new List<float> { 0, 0, 0 };
        for (int b = 0; b < 256; b++)
        {
            tokens.Add($"<0x{b:X2}>");
            types.Add(6);
            scores.Add(0);
        }
        (string, float, int)[] pieces =
        [
            ("\u2581", -1, 1), ("a", -2, 1), ("b", -3, 1), ("ab", -4, 1), ("\u2581a", -5, 1), ("\u2581ab", -6, 1), ("\u2581b", -7, 1),
            ("<tool>", 0, 4), ("<|im_end|>", 0, 3),
        ];
        foreach (var (t, s, ty) in pieces)
        {
            tokens.Add(t);
            scores.Add(s);
            types.Add(ty);
        }
        return new VocabGguf()
            .String("general.architecture", "llama")
            .String("tokenizer.ggml.model", "llama")
            .Strings("tokenizer.ggml.tokens", [.. tokens])
            .Floats("tokenizer.ggml.scores", [.. scores])
            .Ints("tokenizer.ggml.token_type", [.. types]);
    }

    /// <summary>
    /// A tiny byte-level BPE vocabulary: the 256 byte characters, then "Ġa", "ab", "Ġab" from merges, and an EOS
    /// "&lt;|endoftext|&gt;".
    /// </summary>
    public static VocabGguf TinyBpe(string pre = "gpt-2")
    {
        var tokens = new List<string>();
        for (int b = 0; b < 256; b++) tokens.Add(ByteChar(b).ToString());
        tokens.AddRange(["\u0120a", "ab", "\u0120ab", "<|endoftext|>"]);
        var types = Enumerable.Repeat(1, tokens.Count).ToArray();
        types[^1] = 3;
        return new VocabGguf()
            .String("general.architecture", "gpt2")
            .String("tokenizer.ggml.model", "gpt2")
            .String("tokenizer.ggml.pre", pre)
            .Strings("tokenizer.ggml.tokens", [.. tokens])
            .Ints("tokenizer.ggml.token_type", types)
            .Strings("tokenizer.ggml.merges", "\u0120 a", "a b", "\u0120a b")
            .UInt32("tokenizer.ggml.bos_token_id", (uint)(tokens.Count - 1))
            .UInt32("tokenizer.ggml.eos_token_id", (uint)(tokens.Count - 1));
    }

    /// <summary>GPT-2's byte-to-unicode map, written out independently of the runtime's table.</summary>
    public static char ByteChar(int b)
    {
        if (b is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 and <= 255) return (char)b;
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!(x is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 and <= 255)) n++;
        return (char)(256 + n);
    }
}
