using System.Text;

namespace Infer.Runtime.Tokenizers;

/// <summary>
/// Unicode NFC in managed code. The runtime sets InvariantGlobalization, under which
/// <see cref="string.Normalize(NormalizationForm)"/> returns its input unchanged, so Qwen's NFC
/// normalizer is implemented here: full canonical decomposition (Hangul included), canonical
/// ordering, then canonical composition (UAX #15).
/// </summary>
internal static class UnicodeNfc
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly Dictionary<int, (int First, int Second)> Decompositions = BuildDecompositions();
    private static readonly Dictionary<long, int> Compositions = BuildCompositions();

    // BMP code points that can change under NFC or combine with what precedes them (a quick check,
    // like Unicode's NFC_Quick_Check != Yes, plus every non-zero combining class); supplementary ones in a set
    private static readonly ulong[] UnstableBmp = new ulong[0x10000 / 64];
    private static readonly HashSet<int> UnstableSupplementary = [];

    static UnicodeNfc()
    {
        var ranges = UnicodeNfcData.CombiningClassRanges;
        for (int i = 0; i < ranges.Length; i += 3)
            for (int cp = ranges[i]; cp <= ranges[i + 1]; cp++) MarkUnstable(cp);
        foreach (var (pair, _) in Compositions) MarkUnstable((int)(pair & 0xFFFFFFFF)); // can compose with the previous character
        for (int cp = VBase; cp < VBase + VCount; cp++) MarkUnstable(cp);
        for (int cp = TBase + 1; cp < TBase + TCount; cp++) MarkUnstable(cp);
        foreach (var cp in UnicodeNfcData.DecompositionKeys)
        {
            var one = new List<int>();
            Decompose(cp, one);
            ReorderCombiningMarks(one);
            Compose(one);
            if (one.Count != 1 || one[0] != cp) MarkUnstable(cp); // does not survive NFC on its own
        }
    }

    private static void MarkUnstable(int cp)
    {
        if (cp < 0x10000) UnstableBmp[cp >> 6] |= 1UL << (cp & 63);
        else UnstableSupplementary.Add(cp);
    }

    /// <summary>True when no character can change or combine: the text is already NFC.</summary>
    internal static bool IsQuickNfc(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c < '\u0300') continue;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                if (UnstableSupplementary.Contains(char.ConvertToUtf32(c, text[++i]))) return false;
            }
            else if ((UnstableBmp[c >> 6] & (1UL << (c & 63))) != 0)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Returns <paramref name="text"/> in Normalization Form C.</summary>
    public static string Normalize(string text) => IsQuickNfc(text) ? text : NormalizeFull(text);

    /// <summary>Decompose, reorder, compose: without the quick check.</summary>
    internal static string NormalizeFull(string text)
    {
        var cps = new List<int>(text.Length + 8);
        foreach (var rune in text.EnumerateRunes()) Decompose(rune.Value, cps);
        ReorderCombiningMarks(cps);
        Compose(cps);
        var sb = new StringBuilder(cps.Count + 8);
        foreach (var cp in cps) sb.Append(char.ConvertFromUtf32(cp));
        return sb.ToString();
    }

    internal static int CombiningClass(int cp)
    {
        if (cp < 0x300) return 0;
        var ranges = UnicodeNfcData.CombiningClassRanges;
        int lo = 0, hi = ranges.Length / 3 - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            if (cp < ranges[mid * 3]) hi = mid - 1;
            else if (cp > ranges[mid * 3 + 1]) lo = mid + 1;
            else return ranges[mid * 3 + 2];
        }
        return 0;
    }

    private static void Decompose(int cp, List<int> output)
    {
        if (cp >= SBase && cp < SBase + SCount)
        {
            int s = cp - SBase;
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) output.Add(TBase + s % TCount);
            return;
        }
        if (Decompositions.TryGetValue(cp, out var d))
        {
            Decompose(d.First, output);
            if (d.Second >= 0) Decompose(d.Second, output);
            return;
        }
        output.Add(cp);
    }

    /// <summary>Stable sort of each run of non-starters by combining class (runs are short: insertion sort).</summary>
    private static void ReorderCombiningMarks(List<int> cps)
    {
        for (int i = 1; i < cps.Count; i++)
        {
            int cc = CombiningClass(cps[i]);
            if (cc == 0) continue;
            int j = i;
            var cp = cps[i];
            while (j > 0 && CombiningClass(cps[j - 1]) > cc)
            {
                cps[j] = cps[j - 1];
                j--;
            }
            cps[j] = cp;
        }
    }

    private static void Compose(List<int> cps)
    {
        if (cps.Count == 0) return;
        int starterIndex = CombiningClass(cps[0]) == 0 ? 0 : -1;
        int lastClass = starterIndex == 0 ? 0 : 256;
        int write = 1;
        for (int read = 1; read < cps.Count; read++)
        {
            int cp = cps[read];
            int cc = CombiningClass(cp);
            if (starterIndex >= 0 && (lastClass < cc || lastClass == 0 && write - 1 == starterIndex))
            {
                int composed = ComposePair(cps[starterIndex], cp);
                if (composed >= 0)
                {
                    cps[starterIndex] = composed;
                    continue;
                }
            }
            if (cc == 0)
            {
                starterIndex = write;
                lastClass = 0;
            }
            else
            {
                lastClass = cc;
            }
            cps[write++] = cp;
        }
        cps.RemoveRange(write, cps.Count - write);
    }

    private static int ComposePair(int first, int second)
    {
        if (first >= LBase && first < LBase + LCount && second >= VBase && second < VBase + VCount)
            return SBase + ((first - LBase) * VCount + (second - VBase)) * TCount;
        if (first >= SBase && first < SBase + SCount && (first - SBase) % TCount == 0 && second > TBase && second < TBase + TCount)
            return first + (second - TBase);
        return Compositions.TryGetValue(((long)first << 32) | (uint)second, out var c) ? c : -1;
    }

    private static Dictionary<int, (int, int)> BuildDecompositions()
    {
        var keys = UnicodeNfcData.DecompositionKeys;
        var first = UnicodeNfcData.DecompositionFirst;
        var second = UnicodeNfcData.DecompositionSecond;
        var map = new Dictionary<int, (int, int)>(keys.Length);
        for (int i = 0; i < keys.Length; i++) map[keys[i]] = (first[i], second[i]);
        return map;
    }

    private static Dictionary<long, int> BuildCompositions()
    {
        var keys = UnicodeNfcData.DecompositionKeys;
        var first = UnicodeNfcData.DecompositionFirst;
        var second = UnicodeNfcData.DecompositionSecond;
        var composable = UnicodeNfcData.DecompositionComposable;
        var map = new Dictionary<long, int>();
        for (int i = 0; i < keys.Length; i++)
            if (composable[i] != 0) map[((long)first[i] << 32) | (uint)second[i]] = keys[i];
        return map;
    }
}
