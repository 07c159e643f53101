using System.Security.Cryptography;
using Infer.Tests;

namespace Infer.Hub.Tests;

/// <summary>
/// End-to-end resolution against <see cref="FakeHub"/> on 127.0.0.1, serving fixture GGUF files; every test has its own temp
/// cache.
/// </summary>
public sealed class HubClientTests : IAsyncLifetime
{
    // Real GGUF files from the shared fixtures, served under Hub-style names.
    private static readonly Lazy<byte[]> Q8 = new(() => File.ReadAllBytes(Fixtures.Model("llama2-spm", "q8_0")));
    private static readonly Lazy<byte[]> Bf16 = new(() => File.ReadAllBytes(Fixtures.Model("llama2-spm", "bf16")));

    private readonly FakeHub _hub = new();
    private readonly string _cache = Path.Combine(Path.GetTempPath(), "infer-hub-test-" + Guid.NewGuid().ToString("N"));

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        await _hub.DisposeAsync();
        if (Directory.Exists(_cache)) Directory.Delete(_cache, recursive: true);
    }

    private HubOptions Options(string? token = null, bool offline = false, int attempts = 1, string revision = "main", string? hfFile = null) => new()
    {
        Endpoint = _hub.Endpoint,
        Token = token,
        CacheDir = _cache,
        Offline = offline,
        Revision = revision,
        HfFile = hfFile,
        MaxAttempts = attempts,
        RetryDelay = TimeSpan.Zero,
        NetworkTimeout = TimeSpan.FromSeconds(10),
    };

    private FakeRepo AddTiny(FakeFile? q8 = null, string? token = null)
    {
        var repo = _hub.AddRepo("test/tiny", token);
        repo.Files["tiny-Q8_0.gguf"] = q8 ?? new FakeFile(Q8.Value);
        repo.Files["tiny-BF16.gguf"] = new FakeFile(Bf16.Value);
        repo.Files["README.md"] = new FakeFile("# tiny"u8.ToArray()) { Lfs = false };
        return repo;
    }

    private static Task<IReadOnlyList<string>> Resolve(string reference, HubOptions options, IProgress<DownloadProgress>? progress = null) =>
        HubClient.ResolveAsync(ModelReference.Parse(reference), options, progress);

    private static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private string[] FilesInCache() => Directory.Exists(_cache)
        ? Directory.GetFiles(_cache, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(_cache, f)).Order().ToArray()
        : [];

    private sealed class Recorder : IProgress<DownloadProgress>
    {
        public List<DownloadProgress> Reports { get; } = [];
        public void Report(DownloadProgress value) { lock (Reports) Reports.Add(value); }
    }

    [Fact]
    public async Task FreshDownload_FollowsRedirectToOtherPort_WritesVerifiedFileUnderRepoRevisionFile()
    {
        AddTiny();
        var progress = new Recorder();

        var paths = await Resolve("test/tiny:Q8_0", Options(), progress);

        string expected = Path.Combine(_cache, "test", "tiny", "main", "tiny-Q8_0.gguf");
        Assert.Equal([expected], paths);
        Assert.Equal(Sha256(Q8.Value), Sha256(File.ReadAllBytes(expected)));
        Assert.Equal(["test/tiny/main/manifest.json", "test/tiny/main/tiny-Q8_0.gguf"], FilesInCache());

        var requests = _hub.Requests;
        Assert.Equal(["hub GET /api/models/test/tiny/tree/main?recursive=true", "hub GET /test/tiny/resolve/main/tiny-Q8_0.gguf"],
            requests.Where(r => r.Server == "hub").Select(r => $"{r.Server} {r.Method} {r.Target}"));
        Assert.Single(requests, r => r.Server == "cdn" && r.Target.StartsWith("/blobs/test/tiny/tiny-Q8_0.gguf?", StringComparison.Ordinal));

        var last = progress.Reports[^1];
        Assert.Equal("tiny-Q8_0.gguf", last.File);
        Assert.Equal(Q8.Value.Length, last.BytesDone);
        Assert.Equal(Q8.Value.Length, last.BytesTotal);
        Assert.True(last.IsComplete);
        Assert.All(progress.Reports, r => Assert.InRange(r.BytesDone, 0, r.BytesTotal));
    }

    [Fact]
    public async Task Token_IsSentToTheHubButNotToTheRedirectTarget()
    {
        AddTiny(token: "hf_test_token_123");

        var paths = await Resolve("test/tiny:Q8_0", Options(token: "hf_test_token_123"));

        Assert.Equal(Q8.Value, File.ReadAllBytes(paths[0]));
        Assert.All(_hub.Requests.Where(r => r.Server == "hub"), r => Assert.Equal("Bearer hf_test_token_123", r.Headers["Authorization"]));
        Assert.All(_hub.Requests.Where(r => r.Server == "cdn"), r => Assert.False(r.Headers.ContainsKey("Authorization")));
    }

    [Fact]
    public async Task SecondRun_UsesTheCache_WithoutAnyRequest_AlsoWhenTheQuantWasDefaulted()
    {
        AddTiny();
        var first = await Resolve("test/tiny", Options());
        Assert.EndsWith("tiny-Q8_0.gguf", first[0]); // no Q4_K_M or Q4_0 in the repo: Q8_0 is the default
        int requestsAfterFirst = _hub.RequestCount;

        var second = await Resolve("test/tiny", Options());
        var explicitQuant = await Resolve("test/tiny:q8_0", Options());
        var byFile = await Resolve("test/tiny", Options(hfFile: "tiny-Q8_0.gguf"));

        Assert.Equal(first, second);
        Assert.Equal(first, explicitQuant);
        Assert.Equal(first, byFile);
        Assert.Equal(requestsAfterFirst, _hub.RequestCount);
    }

    [Fact]
    public async Task Offline_WithEmptyCache_FailsWithoutTouchingTheNetwork()
    {
        AddTiny();

        var e = await Assert.ThrowsAsync<HubException>(() => Resolve("test/tiny:Q8_0", Options(offline: true)));

        Assert.Equal(HubErrorKind.Offline, e.Kind);
        Assert.Contains("test/tiny:Q8_0", e.Message);
        Assert.Contains("not in the cache", e.Message);
        Assert.Equal(0, _hub.RequestCount);
    }

    [Fact]
    public async Task Offline_AfterADownload_ResolvesCachedFile_ButNotAnotherQuant()
    {
        AddTiny();
        var online = await Resolve("test/tiny:Q8_0", Options());
        int requests = _hub.RequestCount;

        var offline = await Resolve("test/tiny:Q8_0", Options(offline: true));
        var e = await Assert.ThrowsAsync<HubException>(() => Resolve("test/tiny:BF16", Options(offline: true)));

        Assert.Equal(online, offline);
        Assert.Equal(HubErrorKind.Offline, e.Kind);
        Assert.Contains("tiny-BF16.gguf is not in the cache", e.Message);
        Assert.Equal(requests, _hub.RequestCount);
    }

    [Fact]
    public async Task DownloadCutHalfway_LeavesPartFile_NextRunResumesWithRange()
    {
        int half = Q8.Value.Length / 2;
        AddTiny(new FakeFile(Q8.Value) { CutAfterBytes = half });

        var e = await Assert.ThrowsAsync<HubException>(() => Resolve("test/tiny:Q8_0", Options(attempts: 1)));
        Assert.Equal(HubErrorKind.Network, e.Kind);
        Assert.Contains("run again to resume", e.Message);
        string final = Path.Combine(_cache, "test", "tiny", "main", "tiny-Q8_0.gguf");
        Assert.False(File.Exists(final));
        Assert.Equal(half, new FileInfo(final + ".part").Length);

        var paths = await Resolve("test/tiny:Q8_0", Options(attempts: 1));

        var blobRequests = _hub.Requests.Where(r => r.Server == "cdn").ToList();
        Assert.Equal(2, blobRequests.Count);
        Assert.False(blobRequests[0].Headers.ContainsKey("Range"));
        Assert.Equal($"bytes={half}-", blobRequests[1].Headers["Range"]);
        Assert.Equal(Sha256(Q8.Value), Sha256(File.ReadAllBytes(paths[0])));
        Assert.False(File.Exists(final + ".part"));
    }

    [Fact]
    public async Task DownloadCutTwice_IsResumedWithinOneCall()
    {
        AddTiny(new FakeFile(Q8.Value) { CutAfterBytes = 1_000_000, CutRequests = 2 });

        var paths = await Resolve("test/tiny:Q8_0", Options(attempts: 3));

        var ranges = _hub.Requests.Where(r => r.Server == "cdn").Select(r => r.Headers.GetValueOrDefault("Range")).ToList();
        Assert.Equal([null, "bytes=1000000-", "bytes=2000000-"], ranges);
        Assert.Equal(Sha256(Q8.Value), Sha256(File.ReadAllBytes(paths[0])));
    }

    [Fact]
    public async Task ServerIgnoringRange_RestartsFromZero()
    {
        AddTiny(new FakeFile(Q8.Value) { IgnoreRange = true });
        string final = Path.Combine(_cache, "test", "tiny", "main", "tiny-Q8_0.gguf");
        Directory.CreateDirectory(Path.GetDirectoryName(final)!);
        File.WriteAllBytes(final + ".part", Enumerable.Repeat((byte)0xEE, 4096).ToArray());

        var paths = await Resolve("test/tiny:Q8_0", Options());

        Assert.Equal("bytes=4096-", _hub.Requests.Single(r => r.Server == "cdn").Headers["Range"]);
        Assert.Equal(Q8.Value, File.ReadAllBytes(paths[0]));
    }

    [Fact]
    public async Task CorruptedBody_IsRejected_AndLeavesNoFile()
    {
        var file = new FakeFile(Q8.Value) { Corrupt = true };
        AddTiny(file);

        var e = await Assert.ThrowsAsync<HubException>(() => Resolve("test/tiny:Q8_0", Options()));

        Assert.Equal(HubErrorKind.Integrity, e.Kind);
        Assert.Contains("tiny-Q8_0.gguf", e.Message);
        Assert.Contains("SHA-256", e.Message);
        Assert.Contains(file.Sha256, e.Message);
        Assert.Contains("deleted", e.Message);
        Assert.DoesNotContain(FilesInCache(), f => f.Contains("tiny-Q8_0", StringComparison.Ordinal));
    }

    [Fact]
    public async Task NonLfsFile_IsVerifiedByItsGitBlobId()
    {
        var repo = _hub.AddRepo("test/small");
        repo.Files["small-Q8_0.gguf"] = new FakeFile(Q8.Value) { Lfs = false, Corrupt = true };

        var e = await Assert.ThrowsAsync<HubException>(() => Resolve("test/small", Options()));

        Assert.Equal(HubErrorKind.Integrity, e.Kind);
        Assert.Contains("git SHA-1", e.Message);
    }

    [Fact]
    public async Task Unauthorized_SaysGatedAndHowToGetAccess_WithoutPrintingTheToken()
    {
        AddTiny(token: "the-right-token");

        var anonymous = await Assert.ThrowsAsync<HubException>(() => Resolve("test/tiny:Q8_0", Options()));
        var wrong = await Assert.ThrowsAsync<HubException>(() => Resolve("test/tiny:Q8_0", Options(token: "hf_wrong_secret_value")));

        foreach (var e in new[] { anonymous, wrong })
        {
            Assert.Equal(HubErrorKind.Unauthorized, e.Kind);
            Assert.Equal(401, e.StatusCode);
            Assert.Contains("test/tiny", e.Message);
            Assert.Contains("gated", e.Message);
            Assert.Contains("accept", e.Message);
            Assert.Contains("HF_TOKEN", e.Message);
            Assert.Contains($"{_hub.Endpoint}/test/tiny", e.Message);
        }
        Assert.Contains("No HF_TOKEN is set", anonymous.Message);
        Assert.Contains("does not grant access", wrong.Message);
        Assert.DoesNotContain("hf_wrong_secret_value", wrong.ToString());
        Assert.Empty(FilesInCache());
    }

    [Fact]
    public async Task GatedDownload_WithPublicListing_IsUnauthorized_AndLeavesNoFile()
    {
        var repo = _hub.AddRepo("test/gated", "the-right-token", listingIsPublic: true);
        repo.Files["gated-Q8_0.gguf"] = new FakeFile(Q8.Value);

        var e = await Assert.ThrowsAsync<HubException>(() => Resolve("test/gated", Options()));

        Assert.Equal(HubErrorKind.Unauthorized, e.Kind);
        Assert.Contains("test/gated is a gated repository and access has not been granted", e.Message);
        Assert.Contains("HF_TOKEN", e.Message);
        Assert.DoesNotContain(FilesInCache(), f => f.Contains("gated-Q8_0", StringComparison.Ordinal));
        Assert.Equal(Q8.Value, File.ReadAllBytes((await Resolve("test/gated", Options(token: "the-right-token")))[0]));
    }

    [Fact]
    public async Task UnreachableEndpoint_IsANetworkError()
    {
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        }
        var options = new HubOptions
        {
            Endpoint = $"http://127.0.0.1:{port}", Token = null, CacheDir = _cache, Offline = false, NetworkTimeout = TimeSpan.FromSeconds(5),
        };

        var e = await Assert.ThrowsAsync<HubException>(() => Resolve("test/tiny", options));

        Assert.Equal(HubErrorKind.Network, e.Kind);
        Assert.Contains($"127.0.0.1:{port}", e.Message);
        Assert.Contains("--offline", e.Message);
    }

    [Fact]
    public async Task UnknownRepository_IsNotFound()
    {
        AddTiny();

        var e = await Assert.ThrowsAsync<HubException>(() => Resolve("test/missing:Q8_0", Options()));

        Assert.Equal(HubErrorKind.NotFound, e.Kind);
        Assert.Equal(404, e.StatusCode);
        Assert.Contains("repository test/missing", e.Message);
        Assert.Contains("was not found", e.Message);
    }

    [Fact]
    public async Task UnknownRevision_IsNotFound_NamingTheRevision()
    {
        AddTiny();

        var e = await Assert.ThrowsAsync<HubException>(() => Resolve("test/tiny:Q8_0", Options(revision: "v9")));

        Assert.Equal(HubErrorKind.NotFound, e.Kind);
        Assert.Contains("revision 'v9'", e.Message);
    }

    [Fact]
    public async Task UnknownQuant_ListsTheQuantizationsOffered()
    {
        AddTiny();

        var e = await Assert.ThrowsAsync<HubException>(() => Resolve("test/tiny:Q5_K_M", Options()));

        Assert.Equal(HubErrorKind.NoMatchingQuant, e.Kind);
        Assert.Contains("Q5_K_M", e.Message);
        Assert.Contains("it offers: BF16, Q8_0", e.Message);
        Assert.DoesNotContain(FilesInCache(), f => f.EndsWith(".gguf", StringComparison.Ordinal));
    }

    [Fact]
    public async Task SplitModel_DownloadsEveryPart_FirstPartFirst()
    {
        byte[] whole = Q8.Value;
        int cut = whole.Length / 2;
        var repo = _hub.AddRepo("test/split");
        repo.Files["Q8_0/big-Q8_0-00002-of-00002.gguf"] = new FakeFile(whole[cut..]);
        repo.Files["Q8_0/big-Q8_0-00001-of-00002.gguf"] = new FakeFile(whole[..cut]);
        repo.Files["big-BF16.gguf"] = new FakeFile(Bf16.Value);

        var paths = await Resolve("test/split:q8_0", Options());

        string dir = Path.Combine(_cache, "test", "split", "main", "Q8_0");
        Assert.Equal([Path.Combine(dir, "big-Q8_0-00001-of-00002.gguf"), Path.Combine(dir, "big-Q8_0-00002-of-00002.gguf")], paths);
        Assert.Equal(Sha256(whole), Sha256([.. File.ReadAllBytes(paths[0]), .. File.ReadAllBytes(paths[1])]));

        int requests = _hub.RequestCount;
        Assert.Equal(paths, await Resolve("test/split:Q8_0", Options()));
        Assert.Equal(requests, _hub.RequestCount);
    }

    [Fact]
    public async Task PaginatedListing_IsFollowedThroughLinkHeaders()
    {
        AddTiny();
        _hub.ListingPageSize = 1;

        var paths = await Resolve("test/tiny:BF16", Options());

        Assert.Equal(Bf16.Value, File.ReadAllBytes(paths[0]));
        Assert.True(_hub.Requests.Count(r => r.Target.StartsWith("/api/models/test/tiny/tree/main", StringComparison.Ordinal)) >= 4);
    }

    [Fact]
    public async Task Revisions_AreCachedSeparately()
    {
        var repo = AddTiny();
        repo.Revisions.Add("refs/pr/1");

        var main = await Resolve("test/tiny:Q8_0", Options());
        var pr = await Resolve("test/tiny:Q8_0", Options(revision: "refs/pr/1"));

        Assert.NotEqual(main[0], pr[0]);
        Assert.Equal(Path.Combine(_cache, "test", "tiny", "refs%2Fpr%2F1", "tiny-Q8_0.gguf"), pr[0]);
        Assert.Contains(_hub.Requests, r => r.Target == "/api/models/test/tiny/tree/refs%2Fpr%2F1?recursive=true");
    }

    [Fact]
    public async Task ModelCache_ListsAndRemovesDownloads()
    {
        AddTiny();
        await Resolve("test/tiny:Q8_0", Options());
        await Resolve("test/tiny:BF16", Options());

        var listed = ModelCache.List(_cache);
        Assert.Equal(["tiny-BF16.gguf", "tiny-Q8_0.gguf"], listed.Select(e => e.File));
        Assert.All(listed, e => Assert.Equal("test/tiny", e.Reference));
        Assert.All(listed, e => Assert.Equal("main", e.Revision));
        Assert.Equal([Bf16.Value.Length, Q8.Value.Length], listed.Select(e => e.Size));
        Assert.Equal(["BF16", "Q8_0"], listed.Select(e => e.Quant));

        var removed = ModelCache.Remove(_cache, "test/tiny:Q8_0");
        Assert.Equal(["tiny-Q8_0.gguf"], removed.Select(e => e.File));
        Assert.Equal(["tiny-BF16.gguf"], ModelCache.List(_cache).Select(e => e.File));

        ModelCache.Remove(_cache, "test/tiny");
        Assert.Empty(ModelCache.List(_cache));
        Assert.Empty(FilesInCache());
        var e = Assert.Throws<HubException>(() => ModelCache.Remove(_cache, "test/tiny"));
        Assert.Equal(HubErrorKind.NotFound, e.Kind);
    }

    [Fact]
    public async Task RemovedFile_IsDownloadedAgain()
    {
        AddTiny();
        var first = await Resolve("test/tiny:Q8_0", Options());
        File.Delete(first[0]);

        var second = await Resolve("test/tiny:Q8_0", Options());

        Assert.Equal(Q8.Value, File.ReadAllBytes(second[0]));
        Assert.Equal(2, _hub.Requests.Count(r => r.Server == "cdn"));
    }
}
