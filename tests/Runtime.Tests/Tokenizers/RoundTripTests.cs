using System.Text;
using Infer.Runtime.Tokenizers;

namespace Infer.Runtime.Tests.Tokenizers;

/// <summary>Random text through every fixture tokenizer: no exception, ids in range, and decoding gives the text back.</summary>
public class RoundTripTests
{
    // no '<' (special-token text) and no U+2581 (SentencePiece's escaped space, which decodes to ' ')
    private static readonly string[] Pieces =
    [
        "a", "Z", "q", "7", "0", "!", "?", ".", ",", "'", "\"", "(", "]", "-", "_", "#", "$", "|", "~", "`",
        " ", "  ", "\t", "\n", "\r\n", "\u00A0", "\u3000", "\u2028",
        "é", "ü", "ß", "ø", "Ω", "ж", "я", "ع", "ה", "ก", "क", "你", "好", "世", "界", "한", "국", "ー", "カ",
        "\u0301", "\u200D", "\uFFFD", "½", "①", "𝟘", "𐐀", "🚀", "😀", "👍🏽", "🦙",
    ];

    public static TheoryData<string> Tokenizers() =>
        [.. TokenizerFixtures.Models.Select(m => "model:" + m), .. TokenizerFixtures.Vocabs.Select(v => "vocab:" + v)];

    private static Tokenizer Get(string name) =>
        name.StartsWith("model:", StringComparison.Ordinal) ? TokenizerFixtures.Model(name[6..]) : TokenizerFixtures.Vocab(name[6..]);

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void RandomTextRoundTrips(string name)
    {
        var tok = Get(name);
        bool nfc = tok.Pre == "qwen2";
        var rng = new Random(42);
        for (int i = 0; i < 300; i++)
        {
            var sb = new StringBuilder();
            int n = rng.Next(0, 30);
            for (int k = 0; k < n; k++) sb.Append(Pieces[rng.Next(Pieces.Length)]);
            var text = sb.ToString();
            var ids = tok.Encode(text, addSpecial: false, parseSpecial: false);
            Assert.All(ids, id => Assert.InRange(id, 0, tok.VocabSize - 1));
            var expected = nfc ? UnicodeNfc.Normalize(text) : text;
            Assert.Equal(expected, tok.Decode(ids));

            var withSpecial = tok.Encode(text);
            Assert.Equal(expected, tok.Decode(withSpecial, removeSpecial: true));
        }
    }
}
