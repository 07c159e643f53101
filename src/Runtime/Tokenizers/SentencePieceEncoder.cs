using System.Text;

namespace Infer.Runtime.Tokenizers;

/// <summary>
/// SentencePiece BPE (llama.cpp's llm_tokenizer_spm, SentencePiece's bpe_model.cc): start from single
/// characters, repeatedly merge the adjacent pair whose concatenation is the highest-scoring piece
/// (ties: leftmost), then emit each final symbol, falling back to &lt;0xNN&gt; byte tokens for text
/// that is not a piece. As in SentencePiece, only normal, user-defined and unused pieces are merge
/// targets (control, unknown and byte tokens are reserved), and an unused piece is split back into the
/// two symbols it was merged from.
/// </summary>
internal sealed class SentencePieceEncoder
{
    private readonly Dictionary<string, int> _pieces;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly float[] _scores;
    private readonly TokenType[] _types;
    private readonly int[] _byteTokens;
    private readonly int _unkId;

    public SentencePieceEncoder(string[] texts, TokenType[] types, float[] scores, int unkId)
    {
        _pieces = new Dictionary<string, int>(texts.Length, StringComparer.Ordinal);
        for (int id = 0; id < texts.Length; id++)
            if (types[id] is TokenType.Normal or TokenType.UserDefined or TokenType.Unused or TokenType.Undefined)
                _pieces.TryAdd(texts[id], id);
        _lookup = _pieces.GetAlternateLookup<ReadOnlySpan<char>>();
        _scores = scores;
        _types = types;
        _unkId = unkId;
        _byteTokens = new int[256];
        Array.Fill(_byteTokens, -1);
        for (int id = 0; id < texts.Length; id++)
            if (types[id] == TokenType.Byte && TryParseByteToken(texts[id], out byte b) && _byteTokens[b] < 0) _byteTokens[b] = id;
        // Vocabularies without <0xNN> tokens: fall back to a piece that is the byte itself (llama.cpp does the same).
        for (int b = 0; b < 128; b++)
            if (_byteTokens[b] < 0 && _pieces.TryGetValue(((char)b).ToString(), out int id)) _byteTokens[b] = id;
    }

    /// <summary>Parses "&lt;0xNN&gt;".</summary>
    public static bool TryParseByteToken(string text, out byte value)
    {
        value = 0;
        if (text.Length != 6 || !text.StartsWith("<0x", StringComparison.Ordinal) || text[5] != '>') return false;
        return byte.TryParse(text.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out value);
    }

    private struct Symbol
    {
        public int Start, Length, Prev, Next;
    }

    private readonly record struct Bigram(int Left, int Right, int Length, float Score, int Id);

    private sealed class BigramOrder : IComparer<Bigram>
    {
        public static readonly BigramOrder Instance = new();

        // PriorityQueue dequeues the smallest: highest score first, then leftmost.
        public int Compare(Bigram x, Bigram y)
        {
            int c = y.Score.CompareTo(x.Score);
            return c != 0 ? c : x.Left.CompareTo(y.Left);
        }
    }

    /// <summary>Tokenizes text whose spaces are already escaped to U+2581.</summary>
    public void Encode(string text, List<int> output)
    {
        if (text.Length == 0) return;
        var symbols = new Symbol[text.Length];
        int count = 0;
        for (int i = 0; i < text.Length;)
        {
            int len = char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            symbols[count] = new Symbol { Start = i, Length = len, Prev = count - 1, Next = i + len < text.Length ? count + 1 : -1 };
            count++;
            i += len;
        }

        var queue = new PriorityQueue<Bigram, Bigram>(BigramOrder.Instance);
        Dictionary<string, (int Start, int LeftLength, int RightLength)>? revMerge = null;
        for (int i = 1; i < count; i++) TryAddBigram(text, symbols, i - 1, i, queue);

        while (queue.TryDequeue(out var bigram, out _))
        {
            ref var left = ref symbols[bigram.Left];
            ref var right = ref symbols[bigram.Right];
            if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != bigram.Length) continue;

            if (_types[bigram.Id] == TokenType.Unused)
            {
                revMerge ??= new Dictionary<string, (int, int, int)>(StringComparer.Ordinal);
                revMerge[text.Substring(left.Start, bigram.Length)] = (left.Start, left.Length, right.Length);
            }

            left.Length += right.Length;
            right.Length = 0;
            left.Next = right.Next;
            if (right.Next >= 0) symbols[right.Next].Prev = bigram.Left;

            TryAddBigram(text, symbols, left.Prev, bigram.Left, queue);
            TryAddBigram(text, symbols, bigram.Left, left.Next, queue);
        }

        for (int i = 0; i != -1; i = symbols[i].Next)
            Resegment(text, symbols[i].Start, symbols[i].Length, revMerge, output);
    }

    private void TryAddBigram(string text, Symbol[] symbols, int left, int right, PriorityQueue<Bigram, Bigram> queue)
    {
        if (left < 0 || right < 0) return;
        int length = symbols[left].Length + symbols[right].Length;
        if (!_lookup.TryGetValue(text.AsSpan(symbols[left].Start, length), out int id)) return;
        var bigram = new Bigram(left, right, length, _scores[id], id);
        queue.Enqueue(bigram, bigram);
    }

    private void Resegment(string text, int start, int length, Dictionary<string, (int Start, int LeftLength, int RightLength)>? revMerge,
        List<int> output)
    {
        var piece = text.AsSpan(start, length);
        if (_lookup.TryGetValue(piece, out int id))
        {
            if (_types[id] != TokenType.Unused)
            {
                output.Add(id);
                return;
            }
            if (revMerge is not null && revMerge.TryGetValue(piece.ToString(), out var split))
            {
                Resegment(text, split.Start, split.LeftLength, revMerge, output);
                Resegment(text, split.Start + split.LeftLength, split.RightLength, revMerge, output);
                return;
            }
            output.Add(id);
            return;
        }
        EmitBytes(piece, output);
    }

    private void EmitBytes(ReadOnlySpan<char> piece, List<int> output)
    {
        Span<byte> buffer = stackalloc byte[16];
        var bytes = piece.Length * 3 <= buffer.Length ? buffer : new byte[piece.Length * 3];
        int n = Encoding.UTF8.GetBytes(piece, bytes);
        for (int i = 0; i < n; i++)
        {
            int id = _byteTokens[bytes[i]];
            if (id >= 0) output.Add(id);
            else if (_unkId >= 0) output.Add(_unkId);
        }
    }
}
