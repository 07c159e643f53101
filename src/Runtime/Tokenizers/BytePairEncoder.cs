using System.Collections.Concurrent;
using System.Text;

namespace Infer.Runtime.Tokenizers;

/// <summary>
/// Byte-level BPE (GPT-2 style, llama.cpp's llm_tokenizer_bpe): split text into words with the
/// pre-tokenizer, write each word's UTF-8 bytes as GPT-2 byte characters, then repeatedly merge the
/// adjacent pair with the lowest merge rank (ties: leftmost) using a priority queue over a linked list,
/// so a very long word costs O(n log n).
/// </summary>
internal sealed class BytePairEncoder
{
    private const int MaxCachedWordLength = 64;
    private const int MaxCacheEntries = 1 << 16;

    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _ranks;
    private readonly string[] _texts;
    private readonly int[] _byteTokens;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    public PreTokenizer PreTokenizer { get; }

    /// <param name="vocab">token text to id</param>
    /// <param name="texts">token id to text (the inverse of <paramref name="vocab"/>)</param>
    /// <param name="merges">tokenizer.ggml.merges: "left right", in rank order</param>
    /// <param name="preTokenizer">splits text into the pieces merged one by one (the model's tokenizer.ggml.pre).</param>
    /// <param name="onBadMerge">called with the index of a merge that has no space separating two parts</param>
    /// <remarks>
    /// The merges are kept by their text, as llama.cpp keeps them: filling that table is one hash insert per merge (35-50 ms for
    /// the 280k of a 128k vocabulary), where resolving both parts and the product to ids took three lookups each (130-180 ms,
    /// all of it between the process start and the first token). A merge whose parts or product are not tokens never applies.
    /// </remarks>
    public BytePairEncoder(Dictionary<string, int> vocab, string[] texts, string[] merges, PreTokenizer preTokenizer,
        Action<int, string> onBadMerge)
    {
        PreTokenizer = preTokenizer;
        _vocab = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _texts = texts;
        _byteTokens = new int[256];
        for (int b = 0; b < 256; b++)
            _byteTokens[b] = vocab.TryGetValue(ByteLevel.ByteToChar[b].ToString(), out int id) ? id : -1;

        var ranks = new Dictionary<string, int>(merges.Length, StringComparer.Ordinal);
        for (int rank = 0; rank < merges.Length; rank++)
        {
            var m = merges[rank];
            if (m.Length < 2 || m.IndexOf(' ', 1) < 0)
            {
                onBadMerge(rank, "has no space separating two parts");
                continue;
            }
            ranks.TryAdd(m, rank); // a repeated merge keeps its first rank
        }
        _ranks = ranks.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Tokenizes a fragment of raw text (no special tokens in it).</summary>
    public void Encode(string text, List<int> output)
    {
        if (text.Length == 0) return;
        if (PreTokenizer.NormalizeNfc) text = UnicodeNfc.Normalize(text);

        // code points and the UTF-16 offset of each, so words can be cut from the string
        var cps = new int[text.Length];
        var offsets = new int[text.Length + 1];
        int n = 0;
        for (int i = 0; i < text.Length;)
        {
            offsets[n] = i;
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                cps[n++] = char.ConvertToUtf32(text[i], text[i + 1]);
                i += 2;
            }
            else
            {
                cps[n++] = char.IsSurrogate(text[i]) ? 0xFFFD : text[i];
                i++;
            }
        }
        offsets[n] = text.Length;

        var words = new List<(int Start, int Length)>();
        PreTokenizer.Split(cps.AsSpan(0, n), words);
        foreach (var (start, length) in words)
        {
            var word = text.AsSpan(offsets[start], offsets[start + length] - offsets[start]);
            EncodeWordCached(word, output);
        }
    }

    private void EncodeWordCached(ReadOnlySpan<char> word, List<int> output)
    {
        if (word.Length > MaxCachedWordLength)
        {
            EncodeWord(word, output);
            return;
        }
        var lookup = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        if (!lookup.TryGetValue(word, out var ids))
        {
            var list = new List<int>();
            EncodeWord(word, list);
            ids = list.ToArray();
            if (_cache.Count >= MaxCacheEntries) _cache.Clear();
            _cache.TryAdd(word.ToString(), ids);
        }
        output.AddRange(ids);
    }

    private struct Symbol
    {
        public int Id, Prev, Next;
    }

    private readonly record struct Pair(int Left, int Right, int LeftId, int RightId, int Merged);

    private void EncodeWord(ReadOnlySpan<char> word, List<int> output)
    {
        int byteCount = Encoding.UTF8.GetByteCount(word);
        var bytes = byteCount <= 256 ? stackalloc byte[byteCount] : new byte[byteCount];
        Encoding.UTF8.GetBytes(word, bytes);

        // the word as byte characters, the form vocabulary entries are written in
        var mapped = byteCount <= 256 ? stackalloc char[byteCount] : new char[byteCount];
        for (int i = 0; i < byteCount; i++) mapped[i] = ByteLevel.ByteToChar[bytes[i]];

        if (PreTokenizer.IgnoreMerges && _vocab.TryGetValue(mapped, out int whole))
        {
            output.Add(whole);
            return;
        }

        var symbols = new Symbol[byteCount];
        for (int i = 0; i < byteCount; i++)
            symbols[i] = new Symbol { Id = _byteTokens[bytes[i]], Prev = i - 1, Next = i + 1 < byteCount ? i + 1 : -1 };

        var queue = new PriorityQueue<Pair, (int Rank, int Left)>();
        for (int i = 1; i < byteCount; i++) TryAddPair(symbols, i - 1, i, queue);

        while (queue.TryDequeue(out var pair, out _))
        {
            ref var left = ref symbols[pair.Left];
            ref var right = ref symbols[pair.Right];
            // stale: either side was merged since this pair was queued
            if (left.Id != pair.LeftId || right.Id != pair.RightId || left.Next != pair.Right) continue;

            left.Id = pair.Merged;
            right.Id = -2;
            left.Next = right.Next;
            if (right.Next >= 0) symbols[right.Next].Prev = pair.Left;

            TryAddPair(symbols, left.Prev, pair.Left, queue);
            TryAddPair(symbols, pair.Left, left.Next, queue);
        }

        for (int i = 0; i != -1; i = symbols[i].Next)
            if (symbols[i].Id >= 0) output.Add(symbols[i].Id); // a byte with no token is dropped, as llama.cpp does
    }

    private void TryAddPair(Symbol[] symbols, int left, int right, PriorityQueue<Pair, (int Rank, int Left)> queue)
    {
        if (left < 0 || right < 0) return;
        int leftId = symbols[left].Id, rightId = symbols[right].Id;
        if (leftId < 0 || rightId < 0) return;
        string a = _texts[leftId], b = _texts[rightId];
        int length = a.Length + 1 + b.Length;
        Span<char> text = length <= 256 ? stackalloc char[256] : new char[length];
        a.CopyTo(text);
        text[a.Length] = ' ';
        b.CopyTo(text[(a.Length + 1)..]);
        if (!_ranks.TryGetValue(text[..length], out int rank)) return;
        b.CopyTo(text[a.Length..]); // the product: the merge without its space
        if (!_vocab.TryGetValue(text[..(length - 1)], out int merged)) return;
        queue.Enqueue(new Pair(left, right, leftId, rightId, merged), (rank, left));
    }
}
