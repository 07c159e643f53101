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

    private readonly ISplitter[] _sequence;

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
        _sequence = Array.ConvertAll(patterns, p => p == TrailingWhitespace.Pattern ? TrailingWhitespace.Instance : (ISplitter)new CodepointRegex(p));
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
            "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373\u0376\u0377"
                + "\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5"
                + "\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45"
                + "\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3"
                + "\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D"
                + "\u212F-\u2134\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D"
                + "\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A"
                + "\U00010400-\U0001044F\U000104B0-\U000104D3\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2\U000118A0-\U000118DF"
                + "\U0001E900-\U0001E943]+",
            @"\s?[!-/:-~！-／：-～‘-‟　-。]+",
            TrailingWhitespace.Pattern,
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

    /// <summary>
    /// <c>\s+$</c> as a direct scan. A backtracking matcher tries every start in a run of whitespace that is
    /// not at the end and rescans the run each time: quadratic on a long run before a non-space.
    /// </summary>
    private sealed class TrailingWhitespace : ISplitter
    {
        public const string Pattern = @"\s+$";
        public static readonly TrailingWhitespace Instance = new();

        public void SplitIsolated(ReadOnlySpan<int> text, int offset, List<(int Start, int Length)> output)
        {
            int start = text.Length;
            while (start > 0 && CodepointRegex.IsWhiteSpace(text[start - 1])) start--;
            if (start > 0) output.Add((offset, start));
            if (start < text.Length) output.Add((offset + start, text.Length - start));
        }
    }
}

/// <summary>One step of a pre-tokenizer: splits a piece into matches and gaps, all kept.</summary>
internal interface ISplitter
{
    void SplitIsolated(ReadOnlySpan<int> text, int offset, List<(int Start, int Length)> output);
}
