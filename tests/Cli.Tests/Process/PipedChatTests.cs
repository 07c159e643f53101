using Infer.Tests;

namespace Infer.Cli.Tests;

/// <summary><c>infer chat</c> with piped turns that do not all succeed: each failure said once, and the exit code says so.</summary>
public sealed class PipedChatTests
{
    private static string Qwen3 => Fixtures.Model("qwen3", "bf16");

    [Fact]
    public void TurnsThatDoNotFitAreEachReportedOnceAndTheExitCodeIsNonZero()
    {
        string turns = string.Concat(Enumerable.Range(1, 12).Select(i => $"Tell me about the number {i}, please.\n"));
        var r = InferProcess.Run(["chat", "-m", Qwen3, "-c", "64", "-n", "4", "--temp", "0", "-t", "2", "--device", "cpu"], turns);
        Assert.Equal(1, r.Code);
        var failures = r.ErrLines.Where(l => l.Contains("does not fit")).ToList();
        Assert.NotEmpty(failures);
        Assert.All(failures, l => Assert.Matches(
            @"^turn \d+: the conversation does not fit the context of 64 tokens: /reset, a larger -c, or --ctx-overflow shift$", l));
        Assert.Equal(failures.Count, failures.Distinct().Count()); // one line per failed turn, each naming its own turn
        Assert.Equal($"{failures.Count} of 12 turns failed", r.ErrLines[^1]);
        Assert.Equal(failures.Count + 1, r.ErrLines.Length);
    }

    [Fact]
    public void TurnsThatAllSucceedExitWithZero()
    {
        var r = InferProcess.Run(["chat", "-m", Qwen3, "-c", "256", "-n", "2", "--temp", "0", "-t", "2", "--device", "cpu"], "Hi\nHello\n");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("", r.Err);
        Assert.Equal(2, r.Out.Count(c => c == '\n')); // one line per reply
    }
}
