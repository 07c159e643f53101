namespace Infer.Runtime.Tokenizers;

/// <summary>
/// Finds special-token text (control, user-defined and unknown tokens) in raw text, leftmost first and
/// longest at each position, with a character trie. User-defined tokens always match; control and unknown
/// tokens only when special parsing is on (llama.cpp's tokenizer_st_partition, Hugging Face added tokens).
/// </summary>
internal sealed class SpecialTokenMatcher
{
    private sealed class Node
    {
        public Dictionary<char, Node>? Children;
        public int AlwaysId = -1;  // user-defined token ending here
        public int SpecialId = -1; // control or unknown token ending here
    }

    private readonly Node _root = new();

    public bool IsEmpty => _root.Children is null;

    public void Add(string text, int id, bool always)
    {
        if (text.Length == 0) return;
        var node = _root;
        foreach (var c in text)
        {
            node.Children ??= [];
            if (!node.Children.TryGetValue(c, out var child)) node.Children[c] = child = new Node();
            node = child;
        }
        if (always && node.AlwaysId < 0) node.AlwaysId = id;
        else if (!always && node.SpecialId < 0) node.SpecialId = id;
    }

    /// <summary>The longest token starting at <paramref name="pos"/>, or (-1, 0).</summary>
    public (int Id, int Length) MatchAt(ReadOnlySpan<char> text, int pos, bool parseSpecial)
    {
        var node = _root;
        int bestId = -1, bestLength = 0;
        for (int i = pos; i < text.Length; i++)
        {
            if (node.Children is null || !node.Children.TryGetValue(text[i], out node)) break;
            int id = node.AlwaysId >= 0 ? node.AlwaysId : parseSpecial ? node.SpecialId : -1;
            if (id >= 0)
            {
                bestId = id;
                bestLength = i - pos + 1;
            }
        }
        return (bestId, bestLength);
    }
}
