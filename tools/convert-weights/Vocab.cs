using System.Text.Json;
using Infer.Runtime;
using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights;

/// <summary>An ordered list of GGUF metadata entries.</summary>
public sealed class MetadataList : List<(string Key, GgufValueType Type, object Value)>
{
    public void Add(string key, GgufValueType type, object value) => Add((key, type, value));
    public void String(string key, string v) => Add(key, GgufValueType.String, v);
    public void UInt32(string key, uint v) => Add(key, GgufValueType.UInt32, v);
    public void Float32(string key, float v) => Add(key, GgufValueType.Float32, v);
    public void Bool(string key, bool v) => Add(key, GgufValueType.Bool, v);
    public void Array<T>(string key, GgufValueType elementType, T[] values) => Add(key, GgufValueType.Array, new GgufArray(elementType, values));
}

/// <summary>GGUF token types (llama.cpp's <c>llama_token_type</c>).</summary>
public static class TokenType
{
    public const int Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6;
}

/// <summary>
/// Builds the tokenizer metadata the way llama.cpp's convert_hf_to_gguf.py does: <c>tokenizer.model</c> (SentencePiece) when
/// present, else <c>tokenizer.json</c> (byte-level BPE); then the special tokens from tokenizer_config.json and config.json,
/// the chat template, and end-of-turn ids from generation_config.json.
/// </summary>
public static class Vocab
{
    public static MetadataList Build(string dir, HfConfig cfg)
    {
        var md = new MetadataList();
        string spmPath = Path.Combine(dir, "tokenizer.model");
        string jsonPath = Path.Combine(dir, "tokenizer.json");
        Dictionary<string, int> addedTokens;
        int nVocab;
        bool sentencePiece = File.Exists(spmPath);
        if (sentencePiece)
        {
            nVocab = AddSentencePiece(md, spmPath, dir, cfg);
            addedTokens = File.Exists(jsonPath) ? ReadAddedTokens(jsonPath) : [];
        }
        else if (File.Exists(jsonPath))
        {
            addedTokens = AddBpe(md, jsonPath, dir, cfg);
            nVocab = int.MaxValue;
        }
        else
        {
            throw new ModelFormatException(spmPath, "file not found (neither tokenizer.model nor tokenizer.json is in the checkpoint folder)");
        }
        AddSpecialTokens(md, dir, cfg, addedTokens, sentencePiece ? nVocab : null);
        if (cfg.Arch == "llama")
        {
            var tc = ReadJsonObject(Path.Combine(dir, "tokenizer_config.json"));
            if (tc is { } t && t.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind is JsonValueKind.True or JsonValueKind.False)
                md.Bool("tokenizer.ggml.add_space_prefix", aps.GetBoolean());
        }
        return md;
    }

    // ---- SentencePiece ----

    private static int AddSentencePiece(MetadataList md, string path, string dir, HfConfig cfg)
    {
        var spm = SentencePieceModel.Load(path);
        int vocabSize = cfg.VocabSize;
        var tokens = new string[vocabSize];
        var scores = new float[vocabSize];
        var types = new int[vocabSize];
        for (int i = 0; i < vocabSize; i++)
        {
            tokens[i] = $"[PAD{i}]";
            scores[i] = -10000f;
            types[i] = TokenType.Unused;
        }
        for (int id = 0; id < spm.Pieces.Length && id < vocabSize; id++)
        {
            tokens[id] = spm.Pieces[id];
            scores[id] = spm.Scores[id];
            types[id] = spm.Types[id] switch
            {
                SentencePieceModel.PieceType.Unknown => TokenType.Unknown,
                SentencePieceModel.PieceType.Control => TokenType.Control,
                SentencePieceModel.PieceType.Unused => TokenType.Unused,
                SentencePieceModel.PieceType.Byte => TokenType.Byte,
                _ => TokenType.Normal, // llama.cpp's converter also files USER_DEFINED pieces as normal
            };
        }
        string addedPath = Path.Combine(dir, "added_tokens.json");
        if (ReadJsonObject(addedPath) is { } added)
        {
            foreach (var p in added.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0)
                    throw new ModelFormatException(addedPath, $"token '{p.Name}' has a bad id {p.Value}");
                if (id >= vocabSize) continue;
                tokens[id] = p.Name;
                scores[id] = -1000f;
                types[id] = TokenType.UserDefined;
            }
        }
        string tcPath = Path.Combine(dir, "tokenizer_config.json");
        if (ReadJsonObject(tcPath) is { } tc
            && tc.TryGetProperty("added_tokens_decoder", out var decoder) && decoder.ValueKind == JsonValueKind.Object)
        {
            foreach (var p in decoder.EnumerateObject())
            {
                if (!int.TryParse(p.Name, out int id) || id < 0)
                    throw new ModelFormatException(tcPath, $"added_tokens_decoder has a bad id '{p.Name}'");
                if (id >= vocabSize) continue;
                if (p.Value.ValueKind != JsonValueKind.Object || !p.Value.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String)
                    throw new ModelFormatException(tcPath, $"added_tokens_decoder entry {id} has no content");
                string text = c.GetString()!;
                bool special = p.Value.TryGetProperty("special", out var sp) && sp.ValueKind == JsonValueKind.True;
                if (special || LooksSpecial(text)) types[id] = TokenType.Control;
                else
                {
                    text = text.Replace('\u2581', ' ');
                    types[id] = TokenType.UserDefined;
                }
                scores[id] = -1000f;
                tokens[id] = text;
            }
        }
        md.String("tokenizer.ggml.model", "llama");
        md.String("tokenizer.ggml.pre", "default");
        md.Array("tokenizer.ggml.tokens", GgufValueType.String, tokens);
        md.Array("tokenizer.ggml.scores", GgufValueType.Float32, scores);
        md.Array("tokenizer.ggml.token_type", GgufValueType.Int32, types);
        return tokens.Length;
    }

    // ---- byte-level BPE (tokenizer.json) ----

    private static Dictionary<string, int> AddBpe(MetadataList md, string path, string dir, HfConfig cfg)
    {
        using var doc = ParseJson(path);
        var root = doc.RootElement;
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, "no 'model' object");
        string? modelType = model.TryGetProperty("type", out var mt) ? mt.GetString() : null;
        bool byteFallback = model.TryGetProperty("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True;
        string? decoderType = root.TryGetProperty("decoder", out var dec) && dec.ValueKind == JsonValueKind.Object
            && dec.TryGetProperty("type", out var dt) ? dt.GetString() : null;
        if (modelType != "BPE" || byteFallback || decoderType != "ByteLevel")
            throw new UnsupportedModelException(path,
                $"tokenizer model '{modelType}' (byte_fallback {byteFallback}, decoder '{decoderType}') is not a byte-level BPE; "
                + "only byte-level BPE tokenizer.json or SentencePiece tokenizer.model are supported");

        var added = ReadAddedTokens(root, path, out var addedSpecial);
        int vocabSize = cfg.VocabSize;
        var byId = new string?[vocabSize];
        if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, "model has no 'vocab' object");
        foreach (var p in vocab.EnumerateObject())
            Place(p.Name, p.Value.TryGetInt32(out int id) ? id : -1);
        foreach (var (text, id) in added) Place(text, id);

        void Place(string text, int id)
        {
            if (id < 0 || id >= vocabSize)
                throw new ModelFormatException(path, $"token '{text}' has id {id}, outside the vocabulary of {vocabSize} (config.json vocab_size)");
            byId[id] = text;
        }

        var tokens = new string[vocabSize];
        var types = new int[vocabSize];
        for (int i = 0; i < vocabSize; i++)
        {
            string? t = byId[i];
            if (t is null)
            {
                tokens[i] = $"[PAD{i}]";
                types[i] = TokenType.Unused;
            }
            else if (added.ContainsKey(t))
            {
                if (addedSpecial.Contains(t) || LooksSpecial(t)) types[i] = TokenType.Control;
                else
                {
                    t = t.Replace('\u2581', ' ');
                    types[i] = TokenType.UserDefined;
                }
                tokens[i] = t;
            }
            else
            {
                tokens[i] = t;
                types[i] = TokenType.Normal;
            }
        }

        md.String("tokenizer.ggml.model", "gpt2");
        md.String("tokenizer.ggml.pre", PreTokenizer.Choose(root, path));
        md.Array("tokenizer.ggml.tokens", GgufValueType.String, tokens);
        md.Array("tokenizer.ggml.token_type", GgufValueType.Int32, types);
        md.Array("tokenizer.ggml.merges", GgufValueType.String, ReadMerges(model, path));
        return added;
    }

    private static string[] ReadMerges(JsonElement model, string path)
    {
        if (!model.TryGetProperty("merges", out var merges) || merges.ValueKind != JsonValueKind.Array || merges.GetArrayLength() == 0)
            throw new ModelFormatException(path, "model has no merges");
        var result = new string[merges.GetArrayLength()];
        int i = 0;
        foreach (var m in merges.EnumerateArray())
        {
            if (m.ValueKind == JsonValueKind.String) result[i++] = m.GetString()!;
            else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2
                && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
                // transformers >= 4.45 pairs; a space inside a part is written as U+0120 as gguf-py does
                result[i++] = m[0].GetString()!.Replace(' ', '\u0120') + " " + m[1].GetString()!.Replace(' ', '\u0120');
            else throw new ModelFormatException(path, $"merge #{i} has an unknown format");
        }
        return result;
    }

    private static Dictionary<string, int> ReadAddedTokens(string path)
    {
        using var doc = ParseJson(path);
        return ReadAddedTokens(doc.RootElement, path, out _);
    }

    private static Dictionary<string, int> ReadAddedTokens(JsonElement root, string path, out HashSet<string> special)
    {
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        special = new HashSet<string>(StringComparer.Ordinal);
        if (!root.TryGetProperty("added_tokens", out var list) || list.ValueKind != JsonValueKind.Array) return result;
        foreach (var t in list.EnumerateArray())
        {
            if (t.ValueKind != JsonValueKind.Object || !t.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String
                || !t.TryGetProperty("id", out var idE) || !idE.TryGetInt32(out int id))
                throw new ModelFormatException(path, "an added_tokens entry lacks content or id");
            string text = c.GetString()!;
            result.TryAdd(text, id); // the first match wins, as in gguf-py
            if (t.TryGetProperty("special", out var sp) && sp.ValueKind == JsonValueKind.True) special.Add(text);
        }
        return result;
    }

    /// <summary>gguf-py's does_token_look_special: added tokens some models forget to mark special.</summary>
    public static bool LooksSpecial(string t) =>
        t is "<pad>" or "<mask>" or "<2mass>" or "[@BOS@]"
        || (t.StartsWith("<|", StringComparison.Ordinal) && t.EndsWith("|>", StringComparison.Ordinal))
        || (t.StartsWith("<\uFF5C", StringComparison.Ordinal) && t.EndsWith("\uFF5C>", StringComparison.Ordinal))
        || (t.StartsWith("<unused", StringComparison.Ordinal) && t.EndsWith('>'));

    // ---- special tokens (gguf-py SpecialVocab) ----

    private static readonly string[] SpecialTypes = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];

    private static string IdKey(string typ) => typ switch
    {
        "unk" => "tokenizer.ggml.unknown_token_id",
        "sep" => "tokenizer.ggml.seperator_token_id", // llama.cpp's spelling
        "pad" => "tokenizer.ggml.padding_token_id",
        _ => $"tokenizer.ggml.{typ}_token_id",
    };

    private static void AddSpecialTokens(MetadataList md, string dir, HfConfig cfg, Dictionary<string, int> addedTokens, int? nVocab)
    {
        var ids = new List<(string Typ, int Id)>();
        var addFlags = new List<(string Typ, bool Value)>();
        string tcPath = Path.Combine(dir, "tokenizer_config.json");
        var tc = ReadJsonObject(tcPath);

        void SetId(string typ, long? id)
        {
            if (id is null) return;
            if (id < 0) throw new ModelFormatException(cfg.Path, $"invalid value for special token type {typ}: {id}");
            if (nVocab is not null && id >= nVocab) return;
            if (ids.Exists(x => x.Typ == typ)) return;
            ids.Add((typ, (int)id));
        }

        string? chatTemplate = null;
        List<(string Name, string Template)>? namedTemplates = null;
        if (tc is { } t)
        {
            if (t.TryGetProperty("chat_template", out var ct) && ct.ValueKind == JsonValueKind.String) chatTemplate = ct.GetString();
            else if (t.TryGetProperty("chat_template", out ct) && ct.ValueKind == JsonValueKind.Array)
                namedTemplates = ct.EnumerateArray()
                    .Where(x => x.ValueKind == JsonValueKind.Object && x.TryGetProperty("name", out _) && x.TryGetProperty("template", out _))
                    .Select(x => (x.GetProperty("name").GetString() ?? "", x.GetProperty("template").GetString() ?? "")).ToList();
            else
            {
                string jinja = Path.Combine(dir, "chat_template.jinja");
                if (File.Exists(jinja)) chatTemplate = File.ReadAllText(jinja);
                else if (ReadJsonObject(Path.Combine(dir, "chat_template.json")) is { } cj
                    && cj.TryGetProperty("chat_template", out var cjt) && cjt.ValueKind == JsonValueKind.String)
                    chatTemplate = cjt.GetString();
            }
            foreach (var typ in SpecialTypes)
            {
                if (t.TryGetProperty($"add_{typ}_token", out var add) && add.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    addFlags.Add((typ, add.GetBoolean()));
                string? content = null;
                if (t.TryGetProperty($"{typ}_token", out var e))
                {
                    if (e.ValueKind == JsonValueKind.String) content = e.GetString();
                    else if (e.ValueKind == JsonValueKind.Object && e.TryGetProperty("content", out var ec) && ec.ValueKind == JsonValueKind.String)
                        content = ec.GetString();
                }
                if (content is not null && addedTokens.TryGetValue(content, out int id)) SetId(typ, id);
            }
        }
        SetId("bos", cfg.BosTokenId);
        SetId("eos", cfg.EosTokenId);
        SetId("unk", cfg.UnkTokenId);
        SetId("sep", cfg.SepTokenId);
        SetId("pad", cfg.PadTokenId);
        SetId("cls", cfg.ClsTokenId);
        SetId("mask", cfg.MaskTokenId);
        AddEndOfTurn(dir, addedTokens, ids);

        foreach (var (typ, id) in ids) md.UInt32(IdKey(typ), (uint)id);
        foreach (var (typ, value) in addFlags)
            if (typ is "bos" or "eos" or "sep") md.Bool($"tokenizer.ggml.add_{typ}_token", value); // gguf-py has writers for these three only
        if (chatTemplate is not null) md.String("tokenizer.chat_template", chatTemplate);
        if (namedTemplates is not null)
        {
            foreach (var (name, tmpl) in namedTemplates)
                md.String(name == "default" ? "tokenizer.chat_template" : $"tokenizer.chat_template.{name}", tmpl);
            md.Array("tokenizer.chat_templates", GgufValueType.String, namedTemplates.Where(x => x.Name != "default").Select(x => x.Name).ToArray());
        }
    }

    /// <summary>
    /// generation_config.json may list several end-of-generation ids (Llama 3.1 Instruct: end_of_text, eom_id, eot_id).
    /// llama.cpp's converter ignores the file; we record the end-of-turn and end-of-message ids among them so that a runtime
    /// stops on them. Nothing is added when the list holds only the eos id.
    /// </summary>
    private static void AddEndOfTurn(string dir, Dictionary<string, int> addedTokens, List<(string Typ, int Id)> ids)
    {
        if (ReadJsonObject(Path.Combine(dir, "generation_config.json")) is not { } gc) return;
        if (!gc.TryGetProperty("eos_token_id", out var e) || e.ValueKind != JsonValueKind.Array) return;
        var byId = addedTokens.GroupBy(kv => kv.Value).ToDictionary(g => g.Key, g => g.First().Key);
        int eos = ids.Find(x => x.Typ == "eos").Id;
        foreach (var item in e.EnumerateArray())
        {
            if (!item.TryGetInt32(out int id) || id == eos || !byId.TryGetValue(id, out var text)) continue;
            string? typ = text switch
            {
                "<|eot_id|>" or "<|im_end|>" or "<end_of_turn>" or "<|end|>" => "eot",
                "<|eom_id|>" => "eom",
                _ => null,
            };
            if (typ is not null && !ids.Exists(x => x.Typ == typ)) ids.Add((typ, id));
        }
    }

    // ---- JSON helpers ----

    internal static JsonDocument ParseJson(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException(path, "file not found");
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true, MaxDepth = 64 });
        }
        catch (JsonException ex)
        {
            throw new ModelFormatException(path, $"not valid JSON ({ex.Message})");
        }
    }

    /// <summary>The root object of an optional JSON file (cloned, so the document can go), or null when the file is absent.</summary>
    internal static JsonElement? ReadJsonObject(string path)
    {
        if (!File.Exists(path)) return null;
        using var doc = ParseJson(path);
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, "not a JSON object");
        return doc.RootElement.Clone();
    }
}

/// <summary>
/// Chooses <c>tokenizer.ggml.pre</c>. llama.cpp's converter encodes a fixed check text with the Hugging Face tokenizer and
/// looks up the SHA-256 of the token ids (we do the same, <see cref="PreTokenizerHash"/>); the hash is a fingerprint of the
/// pre-tokenizer regex plus vocabulary. For hashes outside our table we identify the pre-tokenizer from the regex in
/// tokenizer.json's <c>pre_tokenizer</c>, which is what the hash stands for; an unknown regex is an error, as an unknown hash
/// is in llama.cpp.
/// </summary>
public static class PreTokenizer
{
    /// <summary>Llama 3's split regex (tiktoken cl100k style, digits in groups of up to three).</summary>
    public const string Llama3Regex =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Qwen 2 / 2.5 / 3's split regex (the same, but single digits).</summary>
    public const string Qwen2Regex =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public static readonly IReadOnlyDictionary<string, string> KnownRegexes = new Dictionary<string, string>
    {
        [Llama3Regex] = "llama-bpe",
        [Qwen2Regex] = "qwen2",
    };

    /// <summary>
    /// llama.cpp's choice: the check-text hash (<see cref="PreTokenizerHash"/>) when our table knows it, else the name of the
    /// split regex. A tokenizer neither recognizes is an error naming both.
    /// </summary>
    public static string Choose(JsonElement tokenizerJson, string path)
    {
        string? byHash;
        string hash;
        try
        {
            byHash = PreTokenizerHash.Lookup(tokenizerJson, out hash);
        }
        catch (Exception e) when (e is InvalidDataException or KeyNotFoundException or InvalidOperationException or ArgumentException)
        {
            byHash = null;
            hash = $"(check text not encodable: {e.Message})";
        }
        if (byHash is not null) return byHash;
        try
        {
            return Identify(tokenizerJson, path);
        }
        catch (UnsupportedModelException e)
        {
            throw new UnsupportedModelException(path, $"{e.Message.Replace(path + ": ", "")}; check-text hash {hash} is not known either");
        }
    }

    public static string Identify(JsonElement tokenizerJson, string path)
    {
        if (!tokenizerJson.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind != JsonValueKind.Object)
            throw new UnsupportedModelException(path, "tokenizer.json has no pre_tokenizer; cannot choose tokenizer.ggml.pre");
        var regexes = new List<string>();
        bool byteLevelRegex = false;
        Collect(pre, regexes, ref byteLevelRegex);
        if (regexes.Count == 0 && byteLevelRegex) return "gpt-2"; // plain ByteLevel pre-tokenizer: GPT-2's built-in regex
        if (regexes.Count == 1 && !byteLevelRegex && KnownRegexes.TryGetValue(regexes[0], out var name)) return name;
        throw new UnsupportedModelException(path,
            $"unrecognized BPE pre-tokenizer ({(regexes.Count == 0 ? "no split regex" : "regex " + string.Join(" + ", regexes))}); "
            + $"known: {string.Join(", ", KnownRegexes.Values)}, gpt-2");
    }

    private static void Collect(JsonElement e, List<string> regexes, ref bool byteLevelRegex)
    {
        string? type = e.TryGetProperty("type", out var t) ? t.GetString() : null;
        switch (type)
        {
            case "Sequence":
                if (e.TryGetProperty("pretokenizers", out var list) && list.ValueKind == JsonValueKind.Array)
                    foreach (var item in list.EnumerateArray()) Collect(item, regexes, ref byteLevelRegex);
                break;
            case "Split":
                if (e.TryGetProperty("pattern", out var p) && p.ValueKind == JsonValueKind.Object && p.TryGetProperty("Regex", out var rx))
                    regexes.Add(rx.GetString() ?? "");
                break;
            case "ByteLevel":
                if (!e.TryGetProperty("use_regex", out var ur) || ur.ValueKind == JsonValueKind.True) byteLevelRegex = true;
                break;
        }
    }
}
