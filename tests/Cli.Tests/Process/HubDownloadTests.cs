using System.Diagnostics;
using Infer.Hub.Tests;
using Infer.Tests;

namespace Infer.Cli.Tests;

/// <summary>
/// Downloads that go wrong, through the infer process against <see cref="FakeHub"/>: a stalled body, two processes after
/// one file, a stale lock, failed downloads left in the cache, and a cached file changed after its download.
/// </summary>
public sealed class HubDownloadTests : IAsyncLifetime
{
    private static readonly Lazy<byte[]> Model = new(() => File.ReadAllBytes(Fixtures.Model("qwen3", "bf16")));
    private readonly FakeHub _hub = new();
    private readonly string _cache = Directory.CreateTempSubdirectory("infer-hf-cache-").FullName;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        await _hub.DisposeAsync();
        Directory.Delete(_cache, recursive: true);
    }

    private Dictionary<string, string?> Environment => new() { ["HF_ENDPOINT"] = _hub.Endpoint, ["INFER_CACHE"] = _cache };

    private InferProcess.Result Infer(params string[] args) => InferProcess.Run(args, "", Environment);

    private FakeFile Serve(string repo, FakeFile file)
    {
        _hub.AddRepo(repo).Files["tiny-Q8_0.gguf"] = file;
        return file;
    }

    private string CachedPath(string repo) => Path.Combine(_cache, repo.Replace('/', Path.DirectorySeparatorChar), "main", "tiny-Q8_0.gguf");

    [Fact]
    public void AStalledDownloadSaysItIsWaitingThenGivesUpWithTheResumeHint()
    {
        Serve("test/stall", new FakeFile(Model.Value) { StallAfterBytes = 1000 });
        var r = Infer("info", "-hf", "test/stall:Q8_0", "--timeout", "1");
        Assert.Equal(1, r.Code);
        Assert.Contains(r.ErrLines, l => l.StartsWith("tiny-Q8_0.gguf: waiting: no data for ", StringComparison.Ordinal)
            && l.EndsWith(" s (a try ends after 1 s)", StringComparison.Ordinal));
        Assert.Contains(r.ErrLines, l => l == "tiny-Q8_0.gguf: retrying (4 of 4) after: no data for 1 s");
        Assert.Equal($"infer info: error: downloading tiny-Q8_0.gguf of test/stall stopped after 1000 of {Model.Value.Length} bytes "
            + "(no data for 1 s); run again to resume", r.ErrLines[^1]);
        Assert.Equal(1000, new FileInfo(CachedPath("test/stall") + ".part").Length); // kept for the resume
    }

    [Fact]
    public void TheSecondOfTwoProcessesWaitsForTheFirstThenUsesItsFile()
    {
        // The first download halts halfway until the second process says it waits for the first.
        var file = Serve("test/slow", new FakeFile(Model.Value) { PauseAtBytes = Model.Value.Length / 2 });
        using var first = new InferProcess.Live(["info", "-hf", "test/slow:Q8_0"], Environment);
        var sw = Stopwatch.StartNew();
        while (Volatile.Read(ref file.Served) == 0 && sw.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(20); // it holds the lock
        Assert.Equal(1, Volatile.Read(ref file.Served));
        using var secondProcess = new InferProcess.Live(["info", "-hf", "test/slow:Q8_0"], Environment);
        string waiting = $"tiny-Q8_0.gguf: waiting for process {first.Process.Id}, which is downloading it";
        bool waited = secondProcess.WaitForErr(e => e.Contains(waiting));
        file.Gate.SetResult();
        var firstResult = first.Finish();
        var second = secondProcess.Finish();
        Assert.True(waited, "the second process did not say it waits: " + second.Err);

        Assert.True(firstResult.Code == 0, firstResult.Err);
        Assert.True(second.Code == 0, second.Err);
        Assert.Contains(waiting, second.ErrLines);
        Assert.Equal(firstResult.Out, second.Out);
        Assert.Equal(1, file.Served); // one download for both
        Assert.False(File.Exists(CachedPath("test/slow") + ".lock"));
    }

    [Fact]
    public void ALockLeftByADeadProcessIsTakenOver()
    {
        var file = Serve("test/stale", new FakeFile(Model.Value));
        Directory.CreateDirectory(Path.GetDirectoryName(CachedPath("test/stale"))!);
        int deadPid;
        using (var p = Process.Start("sh", ["-c", "exit 0"])!)
        {
            deadPid = p.Id;
            p.WaitForExit();
        }
        File.WriteAllText(CachedPath("test/stale") + ".lock", $"{deadPid} 638000000000000000\n");
        var r = Infer("info", "-hf", "test/stale:Q8_0");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(1, file.Served);
        Assert.False(File.Exists(CachedPath("test/stale") + ".lock"));
    }

    [Fact]
    public void FailedDownloadsAreListedAndRemovable()
    {
        Serve("test/empty", new FakeFile(Model.Value) { StallAfterBytes = 0 });
        Serve("test/half", new FakeFile(Model.Value) { StallAfterBytes = 4096 });
        var empty = Infer("info", "-hf", "test/empty:Q8_0", "--timeout", "1");
        Assert.True(empty.Code == 1, empty.Err);
        var half = Infer("info", "-hf", "test/half:Q8_0", "--timeout", "1");
        Assert.True(half.Code == 1, half.Err);

        var list = Infer("models");
        Assert.Equal(0, list.Code);
        var lines = list.Out.Split('\n');
        Assert.Contains(lines, l => l.StartsWith("test/empty ") && l.EndsWith("0 B  (incomplete: a listing, no file downloaded yet)"));
        Assert.Contains(lines, l => l.StartsWith("test/half ") && l.EndsWith("4.00 KiB  tiny-Q8_0.gguf (incomplete: 4.00 KiB of 24.4 MiB)"));

        var rm = Infer("models", "--rm", "test/empty");
        Assert.Equal(0, rm.Code);
        Assert.Equal("removed test/empty (revision main): an empty download folder\n", rm.Out);
        var rmHalf = Infer("models", "--rm", "test/half:Q8_0");
        Assert.Equal(0, rmHalf.Code);
        Assert.Equal("removed test/half tiny-Q8_0.gguf (4.00 KiB, incomplete)\n", rmHalf.Out);
        Assert.Equal($"no cached models in {_cache}\n", Infer("models").Out);
        Assert.Empty(Directory.EnumerateFileSystemEntries(_cache));
    }

    [Fact]
    public void VerifyFindsACachedFileChangedAfterItsDownload()
    {
        Serve("test/tiny", new FakeFile(Model.Value));
        Assert.Equal(0, Infer("info", "-hf", "test/tiny:Q8_0").Code);
        var clean = Infer("models", "--verify");
        Assert.True(clean.Code == 0, clean.Err);
        Assert.Contains("ok        test/tiny tiny-Q8_0.gguf (SHA-256)", clean.Out);

        using (var f = new FileStream(CachedPath("test/tiny"), FileMode.Open, FileAccess.ReadWrite))
        {
            f.Position = f.Length / 2;
            int b = f.ReadByte();
            f.Position--;
            f.WriteByte((byte)(b ^ 1)); // same size, one bit changed
        }
        var tampered = Infer("models", "--verify");
        Assert.Equal(1, tampered.Code);
        Assert.Contains($"CHANGED   test/tiny tiny-Q8_0.gguf: SHA-256 is ", tampered.Out);
        Assert.Contains($"but the Hub listed {Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Model.Value))}", tampered.Out);
        Assert.Equal("test/tiny tiny-Q8_0.gguf differs from the Hub's file: "
            + "'infer models --rm test/tiny:Q8_0' removes it and the next use downloads it again",
            Assert.Single(tampered.ErrLines));
    }
}
