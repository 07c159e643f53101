using System.Numerics;

namespace Infer.Runtime.Grammar;

/// <summary>
/// GBNF for JSON numbers within bounds. Integers: exactly the values in [min, max] (either side may be open; an open
/// side stops at 16 digits, like llama.cpp's unbounded integers), written without leading zeros. Numbers with integer
/// bounds: exactly the decimals in the interval (inclusive or exclusive), without an exponent.
/// </summary>
internal static class JsonNumberRanges
{
    /// <summary>An open side of a range stops at this many digits (llama.cpp's integral-part allows 16).</summary>
    private const int OpenDigits = 16;

    /// <summary>Integers in [<paramref name="min"/>, <paramref name="max"/>] (null: open), or null when there are none.</summary>
    public static string? Integer(BigInteger? min, BigInteger? max)
    {
        if (min is { } a && max is { } b && a > b) return null;
        var parts = new List<string>();
        if (min is null || min < 0)
        {
            // negative values: "-" and a magnitude in [-(max or -1), -min]
            BigInteger lowMag = max is { } hi && hi < 0 ? -hi : 1;
            BigInteger? highMag = min is { } lo ? -lo : null;
            var mag = Magnitudes(lowMag, highMag);
            if (mag is not null) parts.Add("\"-\" " + Group(mag));
        }
        if (max is null || max >= 0)
        {
            var mag = Magnitudes(min is { } lo && lo > 0 ? lo : 0, max);
            if (mag is not null) parts.Add(mag);
        }
        return parts.Count == 0 ? null : string.Join(" | ", parts);
    }

    /// <summary>
    /// Decimals v with <paramref name="min"/> (&lt; when exclusive, else ≤) v and v (&lt; or ≤) <paramref name="max"/>;
    /// bounds are integers (null: open). Null when the interval is empty.
    /// </summary>
    public static string? Number(BigInteger? min, bool minExclusive, BigInteger? max, bool maxExclusive)
    {
        var parts = new List<string>();
        // negative values: "-" then a magnitude m = -v > 0 with m < or <= -min and m > or >= -max
        if (min is null || min < 0)
        {
            BigInteger low = 0;
            bool lowExclusive = true;
            if (max is { } hi && hi < 0) { low = -hi; lowExclusive = maxExclusive; }
            var mag = Magnitude(low, lowExclusive, min is { } lo ? -lo : null, minExclusive);
            if (mag is not null) parts.Add("\"-\" " + Group(mag));
        }
        if (max is null || max > 0 || max == 0 && !maxExclusive)
        {
            BigInteger low = 0;
            bool lowExclusive = false;
            if (min is { } lo && lo >= 0) { low = lo; lowExclusive = minExclusive; }
            var mag = Magnitude(low, lowExclusive, max, maxExclusive);
            if (mag is not null) parts.Add(mag);
        }
        return parts.Count == 0 ? null : string.Join(" | ", parts);
    }

    /// <summary>Non-negative decimals m with low (&lt; or ≤) m and m (&lt; or ≤) high (null: open).</summary>
    private static string? Magnitude(BigInteger low, bool lowExclusive, BigInteger? high, bool highExclusive)
    {
        var parts = new List<string>();
        const string AnyFraction = "(\".\" [0-9]{1,16})?";
        // integer part strictly inside: any fraction
        BigInteger first = lowExclusive ? low + 1 : low;
        BigInteger? last = high is { } h ? h - 1 : null;
        var inner = last is { } l && l < first ? null : Magnitudes(first, last);
        if (inner is not null) parts.Add(Group(inner) + " " + AnyFraction);
        // exactly the upper bound, when included: a fraction of zeros only
        if (high is { } top && !highExclusive && (top > low || top == low && !lowExclusive))
            parts.Add(GbnfText.Literal(top.ToString()) + " (\".\" \"0\"{1,16})?");
        // exactly the lower bound, when excluded: a fraction with a non-zero digit
        if (lowExclusive && (high is null || low < high))
            parts.Add(GbnfText.Literal(low.ToString()) + " \".\" \"0\"{0,15} [1-9] [0-9]{0,15}");
        return parts.Count == 0 ? null : string.Join(" | ", parts);
    }

    private static string Group(string alternatives) => alternatives.Contains('|') ? "(" + alternatives + ")" : alternatives;

    /// <summary>Non-negative integers in [low, high] without leading zeros; an open high stops at 16 digits (or one more than low has).</summary>
    private static string? Magnitudes(BigInteger low, BigInteger? high)
    {
        int lowDigits = low.ToString().Length;
        var top = high ?? BigInteger.Pow(10, Math.Max(OpenDigits, lowDigits + 1)) - 1;
        if (low > top) return null;
        string hi = top.ToString();
        var parts = new List<string>();
        for (int len = lowDigits; len <= hi.Length; len++)
        {
            string from = len == lowDigits ? low.ToString() : "1" + new string('0', len - 1);
            string to = len == hi.Length ? hi : new string('9', len);
            parts.Add(SameLength(from, to));
        }
        return string.Join(" | ", parts);
    }

    /// <summary>The digit strings of one length between <paramref name="from"/> and <paramref name="to"/> (inclusive).</summary>
    private static string SameLength(string from, string to)
    {
        int n = from.Length;
        if (n == 1) return from == to ? $"[{from}]" : $"[{from}-{to}]";
        if (from[0] == to[0]) return $"[{from[0]}] " + Group(SameLength(from[1..], to[1..]));
        string rest0 = new('0', n - 1), rest9 = new('9', n - 1);
        bool fromRound = from[1..] == rest0, toRound = to[1..] == rest9;
        var parts = new List<string>();
        char midLo = fromRound ? from[0] : (char)(from[0] + 1);
        char midHi = toRound ? to[0] : (char)(to[0] - 1);
        if (!fromRound) parts.Add($"[{from[0]}] " + Group(SameLength(from[1..], rest9)));
        if (midLo <= midHi) parts.Add((midLo == midHi ? $"[{midLo}]" : $"[{midLo}-{midHi}]") + Digits(n - 1));
        if (!toRound) parts.Add($"[{to[0]}] " + Group(SameLength(rest0, to[1..])));
        return string.Join(" | ", parts);
    }

    private static string Digits(int count) => count switch { 0 => "", 1 => " [0-9]", _ => $" [0-9]{{{count}}}" };
}
