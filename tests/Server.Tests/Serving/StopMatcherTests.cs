using Infer.Runtime.Serving;

namespace Infer.Server.Tests.Serving;

public class StopMatcherTests
{
    private static (string Released, bool Stopped, string Flushed) Feed(string[] stops, params string[] pieces)
    {
        var m = new StopMatcher();
        m.Reset(stops);
        var released = new System.Text.StringBuilder();
        foreach (var p in pieces)
        {
            released.Append(m.Append(p, out bool stopped));
            if (stopped) return (released.ToString(), true, "");
        }
        return (released.ToString(), false, m.Flush());
    }

    [Theory]
    [InlineData("ab|c", "abc")]          // a stop string split over pieces
    [InlineData("xx|ab|cde", "xxab")]    // text before it is released
    [InlineData("a|b|c|d", "abcd")]      // no stop string
    [InlineData("END|", "")]             // at the very start
    public void StopStringsAreFoundAcrossPieces(string pieces, string expectedBeforeFlush)
    {
        var (released, stopped, flushed) = Feed(["cd", "END"], pieces.Split('|'));
        string all = pieces.Replace("|", "");
        int cut = Math.Min(all.IndexOf("cd", StringComparison.Ordinal) is var a and >= 0 ? a : int.MaxValue,
            all.IndexOf("END", StringComparison.Ordinal) is var b and >= 0 ? b : int.MaxValue);
        Assert.Equal(cut != int.MaxValue, stopped);
        Assert.Equal(cut == int.MaxValue ? all : all[..cut], released + flushed);
        if (!stopped) Assert.Equal(expectedBeforeFlush, released + flushed);
    }

    [Fact]
    public void APossibleStartIsHeldBackUntilDecided()
    {
        var m = new StopMatcher();
        m.Reset(["</end>"]);
        Assert.Equal("hello ", m.Append("hello </", out _));
        Assert.Equal("</x", m.Append("x", out bool stopped));
        Assert.False(stopped);
        Assert.Equal("", m.Append("</en", out _));
        Assert.Equal("", m.Append("d> tail", out stopped));
        Assert.True(stopped);
    }

    [Fact]
    public void WithoutStopStringsTextPassesStraightThrough()
    {
        var m = new StopMatcher();
        m.Reset([]);
        Assert.Equal("abc", m.Append("abc", out bool stopped));
        Assert.False(stopped);
        Assert.Equal("", m.Flush());
    }
}
