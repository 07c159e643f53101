using System.Text.RegularExpressions;
using Infer.Runtime.Tokenizers;

namespace Infer.Runtime.Tests.Tokenizers;

/// <summary>
/// The code-point matcher against .NET's Regex (an independent engine) on BMP text, where the two must
/// agree: .NET's \s is [\f\n\r\t\v\x85\p{Z}], the same set as Unicode White_Space.
/// </summary>
public class CodepointRegexTests
{
    public static TheoryData<string> Patterns() =>
    [
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
        @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
            + @"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
            + @"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        @"\s?\p{P}+",
        @"\s+$",
        @"[\p{P}\$\+<=>\^~\|]+",
        "[一-龥ࠀ-一가-퟿]+",
        @"\s?[!-/:-~！-／：-～‘-‟　-。]+",
    ];

    private static readonly string Alphabet = "aZé ñ\t\n\r  \u00A0\u2003'sStTdm1234567890.,!?-_()[]<>|$+^~\"你好가ー\u0301١٢\u2028\u3000";

    private static List<string> DotNetIsolated(Regex re, string text)
    {
        var pieces = new List<string>();
        int last = 0;
        foreach (Match m in re.Matches(text))
        {
            if (m.Length == 0) continue;
            if (m.Index > last) pieces.Add(text[last..m.Index]);
            pieces.Add(m.Value);
            last = m.Index + m.Length;
        }
        if (last < text.Length) pieces.Add(text[last..]);
        return pieces;
    }

    private static List<string> OursIsolated(CodepointRegex re, string text)
    {
        var cps = text.Select(c => (int)c).ToArray();
        var spans = new List<(int Start, int Length)>();
        re.SplitIsolated(cps, 0, spans);
        return spans.Select(s => text.Substring(s.Start, s.Length)).ToList();
    }

    [Theory]
    [MemberData(nameof(Patterns))]
    public void AgreesWithDotNetRegexOnRandomBmpText(string pattern)
    {
        var ours = new CodepointRegex(pattern);
        var theirs = new Regex(pattern, RegexOptions.CultureInvariant);
        var rng = new Random(1234);
        for (int i = 0; i < 400; i++)
        {
            var chars = new char[rng.Next(0, 40)];
            for (int k = 0; k < chars.Length; k++) chars[k] = Alphabet[rng.Next(Alphabet.Length)];
            var text = new string(chars);
            Assert.Equal(DotNetIsolated(theirs, text), OursIsolated(ours, text));
        }
    }

    [Fact]
    public void SupplementaryLettersAreLetters()
    {
        // 𐐀 (U+10400, Deseret) is a letter and 😀 a symbol: whole code points, not surrogate halves
        var re = new CodepointRegex(@"\p{L}+|[^\s\p{L}\p{N}]+");
        int[] text = [0x10400, 0x10428, 0x1F600, 0x1F600, 'a'];
        var spans = new List<(int, int)>();
        re.SplitIsolated(text, 0, spans);
        Assert.Equal([(0, 2), (2, 2), (4, 1)], spans);
    }

    [Theory]
    [InlineData("(a")]
    [InlineData("a++")]
    [InlineData("(?:ab)+")]
    [InlineData(@"\p{Xx}")]
    [InlineData("[z-a]")]
    [InlineData(@"\q")]
    public void RejectsWhatItDoesNotSupport(string pattern) => Assert.Throws<ArgumentException>(() => new CodepointRegex(pattern));
}
