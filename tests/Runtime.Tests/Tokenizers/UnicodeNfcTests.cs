using Infer.Runtime.Tokenizers;

namespace Infer.Runtime.Tests.Tokenizers;

/// <summary>NFC cases worked out from UAX #15 and the Unicode character data.</summary>
public class UnicodeNfcTests
{
    [Theory]
    [InlineData("", "")]
    [InlineData("plain ASCII", "plain ASCII")]
    [InlineData("a\u0301", "\u00E1")]                 // a + combining acute -> á
    [InlineData("A\u030A", "\u00C5")]                 // A + ring -> Å
    [InlineData("\u212B", "\u00C5")]                  // Angstrom sign (singleton) -> Å
    [InlineData("\u2126", "\u03A9")]                  // Ohm sign -> Greek Omega
    [InlineData("\u1E9B\u0323", "\u1E9B\u0323")]      // UAX #15 example: long s with dot above + dot below stays
    [InlineData("a\u0301\u0323", "\u1EA1\u0301")]     // reordered (ccc 220 before 230): ạ + acute, no precomposed ạ́
    [InlineData("q\u0307\u0323", "q\u0323\u0307")]    // reordered, nothing composes with q
    [InlineData("u\u0308\u0304", "\u01D6")]           // u + diaeresis -> ü, + macron -> ǖ
    [InlineData("\u1100\u1161", "\uAC00")]            // Hangul L + V -> 가
    [InlineData("\u1100\u1161\u11A8", "\uAC01")]      // L + V + T -> 각
    [InlineData("\uAC00\u11A8", "\uAC01")]            // LV + T -> 각
    [InlineData("\u0301a", "\u0301a")]                // leading combining mark stays
    [InlineData("e\u0301\u0301", "\u00E9\u0301")]     // second acute is blocked by the first (same class)
    [InlineData("\u0958", "\u0915\u093C")]            // composition exclusion: DEVANAGARI QA stays decomposed
    [InlineData("caf\u00E9 \U0001F680", "caf\u00E9 \U0001F680")]
    public void Normalizes(string input, string expected) => Assert.Equal(expected, UnicodeNfc.Normalize(input));

    [Theory]
    [InlineData("caf\u00E9 \u4F60\u597D \uD55C\uAD6D\uC5B4 \U0001F680", true)]
    [InlineData("cafe\u0301", false)]
    [InlineData("\u212B", false)]
    [InlineData("\u1100\u1161", false)]
    [InlineData("\u0958", false)]
    public void QuickCheck(string text, bool stable) => Assert.Equal(stable, UnicodeNfc.IsQuickNfc(text));

    [Fact]
    public void QuickCheckNeverSkipsAChange()
    {
        // every BMP character, alone and after a starter that many marks compose with
        for (int cp = 0; cp < 0x10000; cp++)
        {
            if (char.IsSurrogate((char)cp)) continue;
            foreach (var text in new[] { ((char)cp).ToString(), "a" + (char)cp, "\u1100" + (char)cp })
                if (UnicodeNfc.IsQuickNfc(text)) Assert.Equal(text, UnicodeNfc.NormalizeFull(text));
        }
    }
}
