using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Infer.ConvertWeights;

/// <summary>
/// llama.cpp's way of naming a BPE pre-tokenizer (get_vocab_base_pre in convert_hf_to_gguf.py): encode a fixed check text
/// with the Hugging Face tokenizer (special tokens included) and look up the SHA-256 of Python's <c>str(ids)</c>. This is a
/// small byte-level BPE encoder over tokenizer.json, enough for that text: Split/ByteLevel pre-tokenizers, BPE merges by
/// rank (honouring ignore_merges), and the TemplateProcessing post-processor's leading and trailing special tokens.
/// </summary>
public static class PreTokenizerHash
{
    /// <summary>convert_hf_to_gguf_update.py's chktxt.</summary>
    public const string CheckText =
        "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n" +
        "\U0001F680 (normal) \U0001F636\u200d\U0001F32B\uFE0F (multiple emojis concatenated) \u2705 " +
        "\U0001F999\U0001F999 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 " +
        "\u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785\U0001F601 " +
        "?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e " +
        "------======= \u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 " +
        "''''''```````\"\"\"\"......!!!!!!?????? " +
        "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL";

    /// <summary>Hashes llama.cpp knows (a subset of its table: the tokenizers of the architectures we convert and their relatives).</summary>
    public static readonly IReadOnlyDictionary<string, string> KnownHashes = new Dictionary<string, string>
    {
        ["0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5"] = "llama-bpe",          // meta-llama/Meta-Llama-3-8B
        ["c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d"] = "smaug-bpe",          // abacusai/Smaug-Llama-3-70B-Instruct
        ["e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea"] = "qwen2",              // Qwen/Qwen1.5-7B (also Qwen2.x, Qwen3)
        ["d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c"] = "qwen2",              // Qwen/Qwen3-Embedding-0.6B
        ["b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5"] = "deepseek-r1-qwen",   // DeepSeek-R1-Distill-Qwen-1.5B
        ["3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454"] = "gpt-2",              // openai-community/gpt2
        ["049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754"] = "deepseek-llm",       // deepseek-llm-7b-base
        ["347715f544604f9118bb75ed199f68779f423cabb20db6de6f31b908d04d7821"] = "deepseek-coder",     // deepseek-coder-6.7b-base
        ["63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e"] = "tekken",             // mistralai/Mistral-Nemo-Base-2407
        ["855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249"] = "smollm",             // HuggingFaceTB/SmolLM-135M
    };

    /// <summary>The name llama.cpp would choose, or null when the hash is not in <see cref="KnownHashes"/>.</summary>
    public static string? Lookup(JsonElement tokenizerJson, out string hash)
    {
        hash = Hash(Encode(tokenizerJson, CheckText));
        return KnownHashes.GetValueOrDefault(hash);
    }

    /// <summary>SHA-256 (hex) of the ids formatted as Python prints a list: "[1, 2, 3]".</summary>
    public static string Hash(IEnumerable<int> ids) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("[" + string.Join(", ", ids) + "]")));

    /// <summary>GPT-2's pre-tokenizer regex, which a ByteLevel pre-tokenizer with use_regex applies.</summary>
    public const string Gpt2Regex = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>Encodes <paramref name="text"/> (which must contain no added-token text) as tokenizers' encode(text) would.</summary>
    public static List<int> Encode(JsonElement tokenizerJson, string text)
    {
        var model = tokenizerJson.GetProperty("model");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in model.GetProperty("vocab").EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();
        var ranks = new Dictionary<(string, string), int>();
        int rank = 0;
        foreach (var m in model.GetProperty("merges").EnumerateArray())
        {
            (string a, string b) pair;
            if (m.ValueKind == JsonValueKind.String)
            {
                string s = m.GetString()!;
                int sp = s.IndexOf(' ', 1);
                pair = (s[..sp], s[(sp + 1)..]);
            }
            else pair = (m[0].GetString()!, m[1].GetString()!);
            ranks.TryAdd(pair, rank++);
        }
        bool ignoreMerges = model.TryGetProperty("ignore_merges", out var im) && im.ValueKind == JsonValueKind.True;
        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        if (tokenizerJson.TryGetProperty("added_tokens", out var at))
            foreach (var t in at.EnumerateArray()) added.TryAdd(t.GetProperty("content").GetString()!, t.GetProperty("id").GetInt32());

        if (tokenizerJson.TryGetProperty("normalizer", out var norm) && norm.ValueKind == JsonValueKind.Object && UsesNfc(norm))
            text = text.Normalize(NormalizationForm.FormC);

        var ids = new List<int>();
        foreach (string piece in PreTokenize(tokenizerJson.GetProperty("pre_tokenizer"), text))
            Bpe(ByteLevel(piece), vocab, ranks, ignoreMerges, ids);
        return PostProcess(tokenizerJson, ids, added);
    }

    private static bool UsesNfc(JsonElement n)
    {
        string? type = n.TryGetProperty("type", out var t) ? t.GetString() : null;
        if (type == "NFC") return true;
        return type == "Sequence" && n.TryGetProperty("normalizers", out var list) && list.EnumerateArray().Any(UsesNfc);
    }

    /// <summary>Splits with every Split regex in the pre-tokenizer (behavior Isolated: matches and the gaps between them are pieces).</summary>
    private static List<string> PreTokenize(JsonElement pre, string text)
    {
        var pieces = new List<string> { text };
        foreach (var regex in Regexes(pre))
        {
            var rx = new Regex(regex, RegexOptions.CultureInvariant);
            var next = new List<string>();
            foreach (var p in pieces)
            {
                int last = 0;
                foreach (Match m in rx.Matches(p))
                {
                    if (m.Length == 0) continue;
                    if (m.Index > last) next.Add(p[last..m.Index]);
                    next.Add(m.Value);
                    last = m.Index + m.Length;
                }
                if (last < p.Length) next.Add(p[last..]);
            }
            pieces = next;
        }
        return pieces;
    }

    private static IEnumerable<string> Regexes(JsonElement pre)
    {
        string? type = pre.TryGetProperty("type", out var t) ? t.GetString() : null;
        if (type == "Sequence")
        {
            foreach (var item in pre.GetProperty("pretokenizers").EnumerateArray())
                foreach (var r in Regexes(item)) yield return r;
        }
        else if (type == "Split" && pre.TryGetProperty("pattern", out var p) && p.TryGetProperty("Regex", out var rx))
            yield return rx.GetString()!;
        else if (type == "ByteLevel" && (!pre.TryGetProperty("use_regex", out var ur) || ur.ValueKind == JsonValueKind.True))
            yield return Gpt2Regex;
    }

    private static readonly char[] ByteToChar = BuildByteMap();

    /// <summary>GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 and up.</summary>
    private static char[] BuildByteMap()
    {
        var map = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + n++);
        }
        return map;
    }

    private static string ByteLevel(string piece)
    {
        var sb = new StringBuilder();
        foreach (byte b in Encoding.UTF8.GetBytes(piece)) sb.Append(ByteToChar[b]);
        return sb.ToString();
    }

    private static void Bpe(string word, Dictionary<string, int> vocab, Dictionary<(string, string), int> ranks, bool ignoreMerges, List<int> ids)
    {
        if (ignoreMerges && vocab.TryGetValue(word, out int whole))
        {
            ids.Add(whole);
            return;
        }
        var parts = word.Select(c => c.ToString()).ToList();
        while (parts.Count > 1)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < parts.Count; i++)
                if (ranks.TryGetValue((parts[i], parts[i + 1]), out int r) && r < bestRank)
                {
                    bestRank = r;
                    best = i;
                }
            if (best < 0) break;
            parts[best] += parts[best + 1];
            parts.RemoveAt(best + 1);
        }
        foreach (var p in parts)
            ids.Add(vocab.TryGetValue(p, out int id) ? id : throw new InvalidDataException($"piece '{p}' is not in the vocabulary"));
    }

    /// <summary>Adds the special tokens of a TemplateProcessing "single" template around the sequence.</summary>
    private static List<int> PostProcess(JsonElement tokenizerJson, List<int> ids, Dictionary<string, int> added)
    {
        if (!tokenizerJson.TryGetProperty("post_processor", out var pp) || pp.ValueKind != JsonValueKind.Object) return ids;
        var processors = pp.TryGetProperty("processors", out var list) ? list.EnumerateArray().ToList() : [pp];
        foreach (var proc in processors)
        {
            if (!proc.TryGetProperty("type", out var t) || t.GetString() != "TemplateProcessing") continue;
            var result = new List<int>();
            foreach (var item in proc.GetProperty("single").EnumerateArray())
            {
                if (item.TryGetProperty("Sequence", out _)) result.AddRange(ids);
                else if (item.TryGetProperty("SpecialToken", out var st))
                {
                    string id = st.GetProperty("id").GetString()!;
                    if (proc.TryGetProperty("special_tokens", out var specials) && specials.TryGetProperty(id, out var spec))
                        result.AddRange(spec.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()));
                    else result.Add(added[id]);
                }
            }
            ids = result;
        }
        return ids;
    }
}
