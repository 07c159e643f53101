using Infer.Tests;

namespace Infer.Hub.Tests;

/// <summary>Stalled transfers (reported, bounded) and the per-file download lock, in process against <see cref="FakeHub"/>.</summary>
public sealed class StallAndLockTests : IAsyncLifetime
{
    private static readonly Lazy<byte[]> Q8 = new(() => File.ReadAllBytes(Fixtures.Model("llama2-spm", "q8_0")));
    private readonly FakeHub _hub = new();
    private readonly string _cache = Path.Combine(Path.GetTempPath(), "infer-hub-test-" + Guid.NewGuid().ToString("N"));

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        await _hub.DisposeAsync();
        if (Directory.Exists(_cache)) Directory.Delete(_cache, recursive: true);
    }

    private sealed class Recorder : IProgress<DownloadProgress>
    {
        public List<DownloadProgress> Reports { get; } = [];
        public void Report(DownloadProgress value) { lock (Reports) Reports.Add(value); }
    }

    private HubOptions Options(double timeoutSeconds, int attempts) => new()
    {
        Endpoint = _hub.Endpoint, Token = null, CacheDir = _cache, Offline = false, MaxAttempts = attempts,
        RetryDelay = TimeSpan.FromSeconds(30), NetworkTimeout = TimeSpan.FromSeconds(timeoutSeconds),
    };

    [Fact]
    public void ByDefaultAStalledDownloadGivesUpWithinTwoMinutes()
    {
        // A stall is retried at once (no retry delay after a timeout): the give-up time is attempts x timeout.
        var o = new HubOptions();
        Assert.Equal(4, o.MaxAttempts);
        Assert.Equal(TimeSpan.FromSeconds(25), o.NetworkTimeout);
        Assert.True(o.MaxAttempts * o.NetworkTimeout <= TimeSpan.FromMinutes(2));
    }

    [Fact]
    public async Task AStallIsReportedAsWaitingRetriedWithoutDelayAndEndsWithTheResumeHint()
    {
        _hub.AddRepo("test/tiny").Files["tiny-Q8_0.gguf"] = new FakeFile(Q8.Value) { StallAfterBytes = 2000 };
        var progress = new Recorder();
        var started = DateTime.UtcNow;
        var e = await Assert.ThrowsAsync<HubException>(() =>
            HubClient.ResolveAsync(ModelReference.Parse("test/tiny:Q8_0"), Options(1, 2), progress));
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(20), "a retry after a stall waited the 30 s retry delay");
        Assert.Equal(HubErrorKind.Network, e.Kind);
        Assert.Equal($"downloading tiny-Q8_0.gguf of test/tiny stopped after 2000 of {Q8.Value.Length} bytes (no data for 1 s); "
            + "run again to resume", e.Message);
        Assert.Contains(progress.Reports,
            p => p.Status is { } s && s.StartsWith("waiting: no data for ", StringComparison.Ordinal) && p.BytesDone == 2000);
        Assert.Contains(progress.Reports, p => p.Status == "retrying (2 of 2) after: no data for 1 s");
    }

    [Fact]
    public async Task TwoResolvesOfOneFileDownloadItOnce()
    {
        var file = new FakeFile(Q8.Value) { ChunkDelay = TimeSpan.FromMilliseconds(50) };
        _hub.AddRepo("test/tiny").Files["tiny-Q8_0.gguf"] = file;
        var reference = ModelReference.Parse("test/tiny:Q8_0");
        var results = await Task.WhenAll(
            HubClient.ResolveAsync(reference, Options(10, 1)),
            HubClient.ResolveAsync(reference, Options(10, 1)));
        Assert.Equal(results[0], results[1]);
        Assert.Equal(Q8.Value, File.ReadAllBytes(results[0][0]));
        Assert.Equal(1, file.Served);
        Assert.False(File.Exists(results[0][0] + ".lock"));
    }
}
