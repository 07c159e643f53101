using System.Text;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Tokenizers;

/// <summary>
/// A tokenizer built from a GGUF file's <c>tokenizer.ggml.*</c> metadata: SentencePiece (<c>llama</c>) or
/// byte-level BPE (<c>gpt2</c>), with special-token parsing, BOS/EOS handling and the end-of-generation
/// set following llama.cpp (src/llama-vocab.cpp). Thread-safe after construction.
/// </summary>
public sealed class Tokenizer
{
    public const string ModelKey = "tokenizer.ggml.model";
    public const string PreKey = "tokenizer.ggml.pre";
    public const string TokensKey = "tokenizer.ggml.tokens";
    public const string ScoresKey = "tokenizer.ggml.scores";
    public const string TokenTypeKey = "tokenizer.ggml.token_type";
    public const string MergesKey = "tokenizer.ggml.merges";
    public const string BosKey = "tokenizer.ggml.bos_token_id";
    public const string EosKey = "tokenizer.ggml.eos_token_id";
    public const string EotKey = "tokenizer.ggml.eot_token_id";
    public const string EomKey = "tokenizer.ggml.eom_token_id";
    public const string UnkKey = "tokenizer.ggml.unknown_token_id";
    public const string PadKey = "tokenizer.ggml.padding_token_id";
    public const string AddBosKey = "tokenizer.ggml.add_bos_token";
    public const string AddEosKey = "tokenizer.ggml.add_eos_token";
    public const string AddSpacePrefixKey = "tokenizer.ggml.add_space_prefix";

    private const char SpmSpace = '\u2581';

    // texts llama.cpp recognises as end-of-turn / end-of-generation tokens (llama_vocab::impl::load)
    private static readonly string[] EotTexts =
    [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
        "<｜end▁of▁sentence｜>", "<end_of_utterance>",
    ];
    private static readonly string[] EogTexts =
    [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
        "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<｜end▁of▁sentence｜>", "[e~[",
    ];
    private static readonly string[] FimPadTexts = ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
    private static readonly string[] FimRepTexts = ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
    private static readonly string[] FimSepTexts = ["<|file_sep|>"];

    private readonly string[] _texts;
    private readonly TokenType[] _types;
    private readonly byte[] _pieceBytes;   // every token's decoded bytes, back to back
    private readonly int[] _pieceOffsets;  // (VocabSize + 1): token i is _pieceBytes[_pieceOffsets[i].._pieceOffsets[i + 1]]
    private readonly Dictionary<string, int> _textToId;
    private readonly HashSet<int> _eog;
    private readonly SpecialTokenMatcher _specials = new();
    private readonly SentencePieceEncoder? _spm;
    private readonly BytePairEncoder? _bpe;

    public TokenizerKind Kind { get; }

    /// <summary>The pre-tokenizer name (<c>tokenizer.ggml.pre</c>; "default" when absent). SentencePiece does not use it.</summary>
    public string Pre { get; }

    public int VocabSize => _texts.Length;

    /// <summary>Token ids, or -1 when the model has none.</summary>
    public int BosId { get; }
    public int EosId { get; }
    public int EotId { get; }
    public int EomId { get; }
    public int UnkId { get; }
    public int PadId { get; }

    public bool AddBos { get; }
    public bool AddEos { get; }

    /// <summary>SentencePiece's dummy prefix: a space is put before text at the start and after each special token.</summary>
    public bool AddSpacePrefix { get; }

    /// <summary>
    /// An upper bound on the chars one token can complete in a <see cref="StreamingDecoder"/>: its bytes plus
    /// up to three pending bytes of an earlier token, at most one char each (a surrogate pair takes four bytes).
    /// </summary>
    public int MaxTokenChars { get; }

    /// <summary>Tokens that end generation, ascending.</summary>
    public IReadOnlyList<int> EndOfGenerationIds { get; }

    private Tokenizer(string path, GgufFile f)
    {
        var model = f.TryGetString(ModelKey) ?? throw Error(path, $"metadata key '{ModelKey}' not found: the file has no tokenizer");
        Kind = model switch
        {
            "llama" => TokenizerKind.SentencePiece,
            "gpt2" => TokenizerKind.BytePairEncoding,
            _ => throw new UnsupportedModelException(path,
                $"metadata key '{ModelKey}' is '{model}'; supported tokenizers: llama (SentencePiece), gpt2 (byte-level BPE)"),
        };

        var texts = f.TryGetStringArray(TokensKey) ?? throw Error(path, $"metadata key '{TokensKey}' not found");
        int n = texts.Length;
        if (n == 0) throw Error(path, $"metadata key '{TokensKey}' is empty");
        _texts = texts.ToArray();
        _textToId = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
        {
            if (_texts[i].Length == 0) _texts[i] = $"[EMPTY_{i}]"; // as llama.cpp does
            if (!_textToId.TryAdd(_texts[i], i))
                throw Error(path, $"metadata key '{TokensKey}': token {i} '{_texts[i]}' duplicates token {_textToId[_texts[i]]}");
        }

        _types = ReadTokenTypes(path, f, n);
        var scores = ReadScores(path, f, n);

        PreTokenizer? pre = null;
        if (Kind == TokenizerKind.BytePairEncoding)
        {
            var preName = f.TryGetString(PreKey);
            Pre = string.IsNullOrEmpty(preName) ? "default" : preName;
            pre = PreTokenizer.ForName(Pre) ?? throw new UnsupportedModelException(path,
                $"metadata key '{PreKey}' is '{Pre}', an unknown pre-tokenizer; supported: {string.Join(", ", PreTokenizer.SupportedNames)}");
        }
        else
        {
            Pre = f.TryGetString(PreKey) ?? "default";
        }

        // special ids: llama.cpp's defaults per tokenizer kind, then metadata
        bool spm = Kind == TokenizerKind.SentencePiece;
        int bos = InRangeOrNone(spm ? 1 : 11, n), eos = InRangeOrNone(spm ? 2 : 11, n), unk = InRangeOrNone(spm ? 0 : -1, n);
        BosId = ReadId(path, f, BosKey, n, required: true) ?? bos;
        EosId = ReadId(path, f, EosKey, n, required: true) ?? eos;
        int eot = ReadId(path, f, EotKey, n, required: true) ?? -1;
        int eom = ReadId(path, f, EomKey, n, required: true) ?? -1;
        UnkId = ReadId(path, f, UnkKey, n, required: false) ?? unk;
        PadId = ReadId(path, f, PadKey, n, required: false) ?? -1;
        int fimPad = ReadId(path, f, "tokenizer.ggml.fim_pad_token_id", n, required: false) ?? -1;
        int fimRep = ReadId(path, f, "tokenizer.ggml.fim_rep_token_id", n, required: false) ?? -1;
        int fimSep = ReadId(path, f, "tokenizer.ggml.fim_sep_token_id", n, required: false) ?? -1;

        AddBos = f.TryGetBool(AddBosKey) ?? (spm || pre!.DefaultAddBos);
        AddEos = f.TryGetBool(AddEosKey) ?? false;
        AddSpacePrefix = f.TryGetBool(AddSpacePrefixKey) ?? spm;
        if (AddBos && BosId < 0) throw Error(path, $"'{AddBosKey}' is true, but '{BosKey}' is not set");
        if (AddEos && EosId < 0) throw Error(path, $"'{AddEosKey}' is true, but '{EosKey}' is not set");

        // llama.cpp finds these by text when the metadata does not name them. Unlike llama.cpp, only tokens that
        // already are special (control, user-defined, unknown) qualify and no token type is changed: Qwen's
        // vocabulary has "</s>" as an ordinary BPE token, which Hugging Face tokenizes and decodes as text.
        if (eot < 0) eot = FindSpecialByText(EotTexts);
        if (eom < 0) eom = FindSpecialByText(["<|eom_id|>"]);
        if (fimPad < 0) fimPad = FindSpecialByText(FimPadTexts);
        if (fimRep < 0) fimRep = FindSpecialByText(FimRepTexts);
        if (fimSep < 0) fimSep = FindSpecialByText(FimSepTexts);
        EotId = eot;
        EomId = eom;

        _eog = BuildEndOfGeneration(fimPad, fimRep, fimSep);
        EndOfGenerationIds = _eog.Order().ToArray();

        for (int id = 0; id < n; id++)
        {
            var t = _types[id];
            if (t is TokenType.Control or TokenType.Unknown or TokenType.UserDefined)
                _specials.Add(_texts[id], id, always: t == TokenType.UserDefined);
        }

        (_pieceBytes, _pieceOffsets) = BuildPieces();
        int longest = 0;
        for (int id = 0; id < n; id++) longest = Math.Max(longest, _pieceOffsets[id + 1] - _pieceOffsets[id]);
        MaxTokenChars = longest + 3;

        if (spm)
        {
            _spm = new SentencePieceEncoder(_texts, _types, scores ?? new float[n], UnkId);
        }
        else
        {
            var merges = f.TryGetStringArray(MergesKey) ?? throw Error(path, $"metadata key '{MergesKey}' not found (required for a gpt2 tokenizer)");
            string? badMerge = null;
            _bpe = new BytePairEncoder(_textToId, _texts, merges, pre!,
                (i, why) => badMerge ??= $"metadata key '{MergesKey}': merge {i} '{merges[i]}' {why}");
            if (badMerge is not null) throw Error(path, badMerge);
        }
    }

    /// <summary>Builds the tokenizer described by a GGUF file's metadata.</summary>
    /// <exception cref="ModelFormatException">A key is missing or inconsistent (the message names it).</exception>
    /// <exception cref="UnsupportedModelException">The tokenizer model or pre-tokenizer is not supported.</exception>
    public static Tokenizer FromGguf(GgufFile f)
    {
        ArgumentNullException.ThrowIfNull(f);
        return new Tokenizer(f.Path, f);
    }

    private static ModelFormatException Error(string path, string message) => new(path, message);

    private static int InRangeOrNone(int id, int n) => id >= 0 && id < n ? id : -1;

    /// <summary>
    /// A token id from metadata. Out-of-range ids of BOS/EOS/EOT/EOM are errors; for the others llama.cpp
    /// only warns, so they are ignored (treated as absent).
    /// </summary>
    private static int? ReadId(string path, GgufFile f, string key, int n, bool required)
    {
        var v = f.TryGetInt(key);
        if (v is null) return null;
        if (v >= 0 && v < n) return (int)v;
        if (required) throw Error(path, $"metadata key '{key}' is {v}, outside the vocabulary [0, {n})");
        return null;
    }

    private static TokenType[] ReadTokenTypes(string path, GgufFile f, int n)
    {
        var types = new TokenType[n];
        var array = f.TryGetArray(TokenTypeKey);
        if (array is null)
        {
            Array.Fill(types, TokenType.Normal);
            return types;
        }
        if (array.Length < n) throw Error(path, $"metadata key '{TokenTypeKey}' has {array.Length} entries for {n} tokens");
        var values = array.Values as int[] ?? f.TryGetInt32Array(TokenTypeKey)!;
        for (int i = 0; i < n; i++)
            types[i] = values[i] is >= 1 and <= 6 ? (TokenType)values[i] : TokenType.Undefined;
        return types;
    }

    private static float[]? ReadScores(string path, GgufFile f, int n)
    {
        var array = f.TryGetArray(ScoresKey);
        if (array is null) return null;
        if (array.Length < n) throw Error(path, $"metadata key '{ScoresKey}' has {array.Length} entries for {n} tokens");
        return array.Values switch
        {
            float[] s => s,
            int[] s => Array.ConvertAll(s, x => (float)x),
            _ => f.TryGetFloatArray(ScoresKey)!,
        };
    }

    private int FindSpecialByText(string[] candidates)
    {
        foreach (var text in candidates)
            if (_textToId.TryGetValue(text, out int id) && IsSpecialType(_types[id])) return id;
        return -1;
    }

    private static bool IsSpecialType(TokenType t) => t is TokenType.Control or TokenType.UserDefined or TokenType.Unknown;

    private HashSet<int> BuildEndOfGeneration(int fimPad, int fimRep, int fimSep)
    {
        var eog = new HashSet<int>();
        foreach (var id in new[] { fimPad, fimRep, fimSep, EosId, EotId, EomId })
            if (id >= 0) eog.Add(id);
        foreach (var text in EogTexts)
            if (_textToId.TryGetValue(text, out int id) && IsSpecialType(_types[id])) eog.Add(id);
        // gpt-oss (harmony) and solar-open: "<|end|>" ends a message, not the generation
        bool Has(string t) => _textToId.TryGetValue(t, out int i) && eog.Contains(i);
        if (Has("<|end|>") && (Has("<|return|>") && Has("<|call|>") || Has("<|calls|>") && Has("<|flush|>")))
        {
            int end = _textToId["<|end|>"];
            eog.Remove(end);
            _types[end] = TokenType.UserDefined;
        }
        return eog;
    }

    // ---- pieces (token id -> bytes) ----

    private (byte[], int[]) BuildPieces()
    {
        var offsets = new int[_texts.Length + 1];
        var buffer = new List<byte>(_texts.Length * 8);
        Span<byte> scratch = stackalloc byte[4];
        for (int id = 0; id < _texts.Length; id++)
        {
            offsets[id] = buffer.Count;
            var text = _texts[id];
            var type = _types[id];
            if (type is TokenType.Control or TokenType.Unknown or TokenType.UserDefined)
            {
                buffer.AddRange(Encoding.UTF8.GetBytes(text));
            }
            else if (type == TokenType.Byte && SentencePieceEncoder.TryParseByteToken(text, out byte b))
            {
                buffer.Add(b);
            }
            else if (Kind == TokenizerKind.SentencePiece)
            {
                buffer.AddRange(Encoding.UTF8.GetBytes(text.Replace(SpmSpace, ' ')));
            }
            else
            {
                foreach (var rune in text.EnumerateRunes())
                {
                    int value = rune.Value < 0x10000 ? ByteLevel.CharToByte((char)rune.Value) : -1;
                    if (value >= 0)
                    {
                        buffer.Add((byte)value);
                    }
                    else
                    {
                        int len = rune.EncodeToUtf8(scratch);
                        for (int k = 0; k < len; k++) buffer.Add(scratch[k]);
                    }
                }
            }
        }
        offsets[_texts.Length] = buffer.Count;
        return (buffer.ToArray(), offsets);
    }

    internal ReadOnlySpan<byte> TokenSpan(int id)
    {
        CheckId(id);
        return _pieceBytes.AsSpan(_pieceOffsets[id], _pieceOffsets[id + 1] - _pieceOffsets[id]);
    }

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)_texts.Length)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is outside the vocabulary [0, {_texts.Length})");
    }

    /// <summary>The bytes a token stands for (special tokens: their text).</summary>
    public byte[] TokenBytes(int id) => TokenSpan(id).ToArray();

    /// <summary>The token's vocabulary entry as stored (with U+2581 or GPT-2 byte characters).</summary>
    public string TokenText(int id)
    {
        CheckId(id);
        return _texts[id];
    }

    public TokenType GetTokenType(int id)
    {
        CheckId(id);
        return _types[id];
    }

    public bool TryGetTokenId(string text, out int id) => _textToId.TryGetValue(text, out id);

    public bool IsEndOfGeneration(int id) => _eog.Contains(id);

    /// <summary>Control and unknown tokens: hidden when decoding with removeSpecial.</summary>
    internal bool IsSpecial(int id) => _types[id] is TokenType.Control or TokenType.Unknown;

    // ---- encoding ----

    /// <summary>
    /// Token ids of <paramref name="text"/>: special-token text is split out first, the pieces between are encoded by the
    /// model's SentencePiece or byte-level BPE.
    /// </summary>
    /// <param name="text">the text; control-token spellings in it are tokens only as <paramref name="parseSpecial"/> says.</param>
    /// <param name="addSpecial">Add BOS/EOS as the model's metadata asks.</param>
    /// <param name="parseSpecial">
    /// Turn control-token text (e.g. "&lt;|im_start|&gt;") into those tokens; user-defined tokens are always matched.
    /// </param>
    public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var output = new List<int>(text.Length / 3 + 4);
        if (addSpecial && AddBos) output.Add(BosId);

        bool afterSpecial = true; // SentencePiece adds its space prefix at the start and after special tokens
        int fragmentStart = 0;
        for (int pos = 0; pos < text.Length;)
        {
            var (id, length) = _specials.IsEmpty ? (-1, 0) : _specials.MatchAt(text, pos, parseSpecial);
            if (id < 0)
            {
                pos++;
                continue;
            }
            if (pos > fragmentStart) EncodeFragment(text[fragmentStart..pos], afterSpecial, output);
            output.Add(id);
            afterSpecial = true;
            pos += length;
            fragmentStart = pos;
        }
        if (fragmentStart < text.Length) EncodeFragment(text[fragmentStart..], afterSpecial, output);

        if (addSpecial && AddEos) output.Add(EosId);
        return output.ToArray();
    }

    private void EncodeFragment(string fragment, bool afterSpecial, List<int> output)
    {
        if (_spm is not null)
        {
            var escaped = AddSpacePrefix && afterSpecial ? SpmSpace + fragment.Replace(' ', SpmSpace) : fragment.Replace(' ', SpmSpace);
            _spm.Encode(escaped, output);
        }
        else
        {
            _bpe!.Encode(fragment, output);
        }
    }

    // ---- decoding ----

    /// <summary>
    /// Token ids to text. With <paramref name="removeSpecial"/>, control and unknown tokens (BOS, EOS,
    /// chat markers) produce nothing; otherwise they appear as their text. When the model adds a
    /// SentencePiece space prefix, the leading space of the first decoded token is removed.
    /// Bytes that do not form valid UTF-8 become U+FFFD.
    /// </summary>
    public string Decode(ReadOnlySpan<int> ids, bool removeSpecial = false)
    {
        var bytes = new List<byte>(ids.Length * 4);
        bool first = true;
        foreach (var id in ids)
        {
            var piece = TokenSpan(id);
            if (removeSpecial && IsSpecial(id)) continue;
            if (first && AddSpacePrefix && !IsSpecial(id) && _types[id] != TokenType.UserDefined && piece.Length > 0 && piece[0] == (byte)' ')
                piece = piece[1..];
            first = false;
            foreach (var b in piece) bytes.Add(b);
        }
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
    }

    /// <summary>A decoder for streamed output that only returns whole UTF-8 characters.</summary>
    /// <param name="removeSpecial">Hide control and unknown tokens (llama.cpp prints generated tokens this way by default).</param>
    public StreamingDecoder CreateStreamingDecoder(bool removeSpecial = true) => new(this, removeSpecial);
}
