using System.Text;

namespace Infer.Runtime.Tokenizers;

/// <summary>
/// Turns a stream of token ids into text without ever splitting a UTF-8 character: bytes of an
/// incomplete character (a multi-byte character spread over byte-fallback or byte-level tokens) are held
/// until the character completes. A sequence that can no longer complete becomes U+FFFD as soon as that is
/// known. Not thread-safe; one per stream.
/// </summary>
public sealed class StreamingDecoder
{
    private readonly Tokenizer _tokenizer;
    private readonly bool _removeSpecial;
    private readonly Decoder _utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private char[] _chars = new char[64];

    internal StreamingDecoder(Tokenizer tokenizer, bool removeSpecial)
    {
        _tokenizer = tokenizer;
        _removeSpecial = removeSpecial;
    }

    /// <summary>Adds one token; returns the text completed by it (often empty while a character is pending).</summary>
    public string Append(int id)
    {
        var bytes = _tokenizer.TokenSpan(id);
        if (_removeSpecial && _tokenizer.IsSpecial(id)) return string.Empty;
        return Convert(bytes, flush: false);
    }

    /// <summary>
    /// Allocation-free form of <see cref="Append(int)"/>: writes the completed text to <paramref name="destination"/>
    /// and returns the number of chars written. <see cref="Tokenizer.MaxTokenChars"/> chars always suffice.
    /// </summary>
    public int Append(int id, Span<char> destination)
    {
        var bytes = _tokenizer.TokenSpan(id);
        if (_removeSpecial && _tokenizer.IsSpecial(id)) return 0;
        return _utf8.GetChars(bytes, destination, flush: false);
    }

    /// <summary>Ends the stream: a pending incomplete character becomes U+FFFD. The decoder can then be reused.</summary>
    public string Flush() => Convert([], flush: true);

    private string Convert(ReadOnlySpan<byte> bytes, bool flush)
    {
        int needed = _utf8.GetCharCount(bytes, flush);
        if (needed == 0)
        {
            // GetCharCount does not consume input; the bytes still have to be fed to keep the pending state
            _utf8.GetChars(bytes, _chars, flush);
            return string.Empty;
        }
        if (_chars.Length < needed) _chars = new char[Math.Max(needed, _chars.Length * 2)];
        int n = _utf8.GetChars(bytes, _chars, flush);
        return new string(_chars, 0, n);
    }
}
