using System.Collections.Concurrent;
using System.Text.Json;
using Infer.Runtime.Gguf;
using Infer.Runtime.Tokenizers;
using Infer.Tests;

namespace Infer.Runtime.Tests.Tokenizers;

/// <summary>Loads fixture tokenizers once and reads the reference files.</summary>
internal static class TokenizerFixtures
{
    public static readonly string[] Models = ["llama2-spm", "llama3", "qwen2", "qwen3"];
    public static readonly string[] Vocabs = ["llama-spm", "phi-3", "gpt-2", "deepseek-llm", "deepseek-coder"];

    private static readonly ConcurrentDictionary<string, Lazy<Tokenizer>> Cache = new();
    private static readonly ConcurrentDictionary<string, Lazy<JsonDocument>> References = new();
    private static readonly ConcurrentDictionary<string, Lazy<(string[] Inputs, int[][] Outputs)>> VocabTests = new();

    public static Tokenizer Load(string path) => Cache.GetOrAdd(path, p => new Lazy<Tokenizer>(() =>
    {
        using var f = GgufFile.Open(p);
        return Tokenizer.FromGguf(f);
    })).Value;

    public static Tokenizer Model(string name) => Load(Fixtures.Model(name, "bf16"));

    public static Tokenizer Vocab(string name) => Load(Fixtures.File("tokenizers", $"ggml-vocab-{name}.gguf"));

    public static JsonElement Reference(string model) => References.GetOrAdd(model, m => new Lazy<JsonDocument>(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.ModelDir(m), "reference", "reference.json"))))).Value.RootElement;

    public static int[] Ids(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    /// <summary>
    /// llama.cpp's test-tokenizer-0 format: the .inp strings are separated by "\n__ggml_vocab_test__\n"
    /// (the file ends with one), the .out has one line of space-separated ids per string.
    /// </summary>
    public static (string[] Inputs, int[][] Outputs) VocabTest(string name) => VocabTests.GetOrAdd(name, n => new(() =>
    {
        var basePath = Fixtures.File("tokenizers", $"ggml-vocab-{n}.gguf");
        var raw = File.ReadAllText(basePath + ".inp");
        const string sep = "\n__ggml_vocab_test__\n";
        var inputs = new List<string>();
        int pos = 0;
        while (pos < raw.Length)
        {
            int next = raw.IndexOf(sep, pos, StringComparison.Ordinal);
            if (next < 0)
            {
                inputs.Add(raw[pos..]);
                break;
            }
            inputs.Add(raw[pos..next]);
            pos = next + sep.Length;
        }
        var outputs = File.ReadAllLines(basePath + ".out")
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray())
            .ToArray();
        if (inputs.Count != outputs.Length) throw new InvalidDataException($"{basePath}: {inputs.Count} inputs but {outputs.Length} outputs");
        return (inputs.ToArray(), outputs);
    })).Value;
}
