using System.Text;

namespace Infer.Runtime.Serving;

/// <summary>
/// Finds stop strings in streamed text. Text that could still be the start of a stop string is held back until the next piece
/// decides it, so a client never sees part of a stop string. One per slot, reused across requests.
/// </summary>
public sealed class StopMatcher
{
    private readonly StringBuilder _pending = new();
    private IReadOnlyList<string> _stops = [];

    /// <summary>Forgets held text and takes the next request's stop strings (empty strings are ignored).</summary>
    public void Reset(IReadOnlyList<string> stops)
    {
        _pending.Clear();
        _stops = stops;
    }

    /// <summary>Adds a piece of text; returns the text now safe to release and whether a stop string ended the generation.</summary>
    public string Append(string piece, out bool stopped)
    {
        stopped = false;
        if (_stops.Count == 0) return piece;
        _pending.Append(piece);
        string text = _pending.ToString();
        int first = -1;
        foreach (var s in _stops)
        {
            if (s.Length == 0) continue;
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (first < 0 || i < first)) first = i;
        }
        if (first >= 0)
        {
            stopped = true;
            _pending.Clear();
            return text[..first];
        }
        int hold = HeldLength(text);
        _pending.Clear();
        _pending.Append(text, text.Length - hold, hold);
        return hold == 0 ? text : text[..^hold];
    }

    /// <summary>The held-back text, released at the end of a generation that no stop string ended.</summary>
    public string Flush()
    {
        string rest = _pending.ToString();
        _pending.Clear();
        return rest;
    }

    /// <summary>The longest suffix of <paramref name="text"/> that is a proper prefix of a stop string.</summary>
    private int HeldLength(string text)
    {
        int best = 0;
        foreach (var s in _stops)
        {
            for (int k = Math.Min(s.Length - 1, text.Length); k > best; k--)
            {
                if (text.AsSpan(text.Length - k).SequenceEqual(s.AsSpan(0, k)))
                {
                    best = k;
                    break;
                }
            }
        }
        return best;
    }
}
