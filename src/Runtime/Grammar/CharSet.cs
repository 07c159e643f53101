namespace Infer.Runtime.Grammar;

/// <summary>
/// A set of Unicode code points: a literal character, a class such as <c>[a-z_]</c> or <c>[^"\\]</c>, or <c>.</c>.
/// Negation is resolved when the set is built, so every set is a sorted list of disjoint inclusive ranges plus a
/// 128-bit ASCII bitmap for the common case.
/// </summary>
internal sealed class CharSet : IEquatable<CharSet>
{
    public const int MaxCodePoint = 0x10FFFF;

    private readonly int[] _ranges; // (2 x ranges): lo0, hi0, lo1, hi1, ... sorted, disjoint, not adjacent
    private readonly ulong _ascii0, _ascii1;

    private CharSet(int[] ranges)
    {
        _ranges = ranges;
        for (int i = 0; i < ranges.Length; i += 2)
            for (int c = ranges[i]; c <= Math.Min(ranges[i + 1], 127); c++)
            {
                if (c < 64) _ascii0 |= 1UL << c;
                else _ascii1 |= 1UL << (c - 64);
            }
    }

    public static CharSet Single(int cp) => new([cp, cp]);

    public static readonly CharSet Any = new([0, MaxCodePoint]);

    /// <summary>The union of <paramref name="ranges"/> (inclusive), or its complement when <paramref name="negate"/>.</summary>
    public static CharSet FromRanges(IEnumerable<(int Lo, int Hi)> ranges, bool negate)
    {
        var sorted = ranges.OrderBy(r => r.Lo).ToList();
        var merged = new List<int>();
        foreach (var (lo, hi) in sorted)
        {
            if (merged.Count > 0 && lo <= merged[^1] + 1) merged[^1] = Math.Max(merged[^1], hi);
            else { merged.Add(lo); merged.Add(hi); }
        }
        if (!negate) return new CharSet([.. merged]);
        var complement = new List<int>();
        int next = 0;
        for (int i = 0; i < merged.Count; i += 2)
        {
            if (merged[i] > next) { complement.Add(next); complement.Add(merged[i] - 1); }
            next = merged[i + 1] + 1;
        }
        if (next <= MaxCodePoint) { complement.Add(next); complement.Add(MaxCodePoint); }
        return new CharSet([.. complement]);
    }

    public ReadOnlySpan<int> Ranges => _ranges;

    public bool IsEmpty => _ranges.Length == 0;

    public bool Contains(int cp)
    {
        if ((uint)cp < 64) return (_ascii0 >> cp & 1) != 0;
        if ((uint)cp < 128) return (_ascii1 >> (cp - 64) & 1) != 0;
        var r = _ranges;
        int lo = 0, hi = r.Length / 2 - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            if (cp < r[2 * mid]) hi = mid - 1;
            else if (cp > r[2 * mid + 1]) lo = mid + 1;
            else return true;
        }
        return false;
    }

    /// <summary>Whether some code point in [lo, hi] is in the set (used to prune a partial UTF-8 character).</summary>
    public bool Intersects(int lo, int hi)
    {
        var r = _ranges;
        for (int i = 0; i < r.Length; i += 2)
        {
            if (r[i] > hi) return false;
            if (r[i + 1] >= lo) return true;
        }
        return false;
    }

    public bool Equals(CharSet? other) => other is not null && _ranges.AsSpan().SequenceEqual(other._ranges);

    public override bool Equals(object? obj) => Equals(obj as CharSet);

    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (int v in _ranges) h.Add(v);
        return h.ToHashCode();
    }
}
