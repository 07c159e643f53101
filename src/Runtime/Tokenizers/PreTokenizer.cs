namespace Infer.Runtime.Tokenizers;

/// <summary>
/// Splits text into words before byte-level BPE, as the Hugging Face pre-tokenizer of each model family
/// does: a sequence of regex splits, each applied to every piece the previous one produced, keeping both
/// matches and the gaps between them ("Isolated"). Patterns are those of the models' tokenizer.json files
/// (case-insensitive contractions spelled out as in llama.cpp's src/llama-vocab.cpp).
/// </summary>
internal sealed class PreTokenizer
{
    private const string Gpt2 = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    private const string Contractions = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
    private const string Llama3 = Contractions + @"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Qwen2 = Contractions + @"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private readonly CodepointRegex[] _sequence;

    /// <summary>The <c>tokenizer.ggml.pre</c> family this splitter implements.</summary>
    public string Name { get; }

    /// <summary>Whether text is normalized to Unicode NFC before splitting (Qwen's tokenizer.json does this).</summary>
    public bool NormalizeNfc { get; }

    /// <summary>Whether a word that is itself a vocabulary entry skips the merges (tokenizer.json "ignore_merges").</summary>
    public bool IgnoreMerges { get; }

    /// <summary>llama.cpp's add_bos default for this family when <c>tokenizer.ggml.add_bos_token</c> is absent.</summary>
    public bool DefaultAddBos { get; }

    private PreTokenizer(string name, string[] patterns, bool nfc = false, bool ignoreMerges = false, bool addBos = false)
    {
        Name = name;
        _sequence = Array.ConvertAll(patterns, p => new CodepointRegex(p));
        NormalizeNfc = nfc;
        IgnoreMerges = ignoreMerges;
        DefaultAddBos = addBos;
    }

    /// <summary>The names accepted for <c>tokenizer.ggml.pre</c> on a byte-level BPE model.</summary>
    public static IReadOnlyList<string> SupportedNames { get; } =
    [
        "default", "gpt-2", "phi-2", "mpt", "olmo", "llama-bpe", "llama3", "llama-v3", "falcon3", "dbrx", "smaug-bpe",
        "qwen2", "deepseek-r1-qwen", "deepseek-llm", "deepseek-coder", "starcoder", "refact", "smollm", "falcon",
    ];

    /// <summary>The splitter for a <c>tokenizer.ggml.pre</c> value, or null when it is not supported.</summary>
    public static PreTokenizer? ForName(string pre) => pre switch
    {
        // llama.cpp's fallback for BPE files without a known pre-tokenizer
        "default" => new(pre,
        [
            @"[\p{P}\$\+<=>\^~\|]+",
            @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
            @"\p{N}+",
            "[0-9][0-9][0-9]",
        ]),
        "gpt-2" or "phi-2" or "mpt" or "olmo" => new(pre, [Gpt2]),
        "llama-bpe" or "llama3" or "llama-v3" or "falcon3" => new(pre, [Llama3], ignoreMerges: true, addBos: true),
        "dbrx" or "smaug-bpe" => new(pre, [Llama3]),
        "qwen2" or "deepseek-r1-qwen" => new(pre, [Qwen2], nfc: true),
        "deepseek-llm" => new(pre,
        [
            @"[\r\n]",
            @"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
            @"\s?[!-/:-~！-／：-～‘-‟　-。]+",
            @"\s+$",
            "[一-龥ࠀ-一가-퟿]+",
            @"\p{N}+",
        ]),
        "deepseek-coder" => new(pre,
        [
            @"[\r\n]",
            @"\s?\p{L}+",
            @"\s?\p{P}+",
            "[一-龥ࠀ-一가-퟿]+",
            @"\p{N}",
        ]),
        "starcoder" or "refact" or "smollm" => new(pre,
        [
            @"\p{N}",
            @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
        ]),
        "falcon" => new(pre,
        [
            @"[\p{P}\$\+<=>\^~\|`]+",
            @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
            "[0-9][0-9][0-9]",
        ]),
        _ => null,
    };

    /// <summary>Splits code points into words, written to <paramref name="words"/> as (start, length).</summary>
    public void Split(ReadOnlySpan<int> text, List<(int Start, int Length)> words)
    {
        words.Clear();
        if (text.IsEmpty) return;
        words.Add((0, text.Length));
        var next = new List<(int Start, int Length)>();
        foreach (var regex in _sequence)
        {
            next.Clear();
            foreach (var (start, length) in words) regex.SplitIsolated(text.Slice(start, length), start, next);
            words.Clear();
            words.AddRange(next);
        }
    }
}
