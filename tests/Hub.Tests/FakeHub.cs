using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Infer.Hub.Tests;

/// <summary>A file the fake Hub serves, with switches for the failures a test wants.</summary>
internal sealed class FakeFile
{
    public FakeFile(byte[] content) => Content = content;

    public byte[] Content { get; }

    /// <summary>Listed with an <c>lfs</c> entry (SHA-256) like every GGUF on the real Hub; otherwise only the git blob id.</summary>
    public bool Lfs { get; init; } = true;

    /// <summary>The first <see cref="CutRequests"/> downloads send only this many body bytes, then close the connection.</summary>
    public int? CutAfterBytes { get; init; }
    public int CutRequests { get; init; } = 1;

    /// <summary>Downloads send the file up to this offset, then keep the connection open without sending more (a stalled transfer).</summary>
    public int? StallAfterBytes { get; init; }

    /// <summary>Sends the body in 64 KiB pieces with this pause between them (a slow transfer).</summary>
    public TimeSpan ChunkDelay { get; init; }

    /// <summary>Downloads send the file up to this offset, then wait for <see cref="Gate"/> before sending the rest.</summary>
    public int? PauseAtBytes { get; init; }

    /// <summary>Opens the pause of <see cref="PauseAtBytes"/>.</summary>
    public TaskCompletionSource Gate { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Serve a body with one byte flipped (the listing keeps the true SHA-256).</summary>
    public bool Corrupt { get; init; }

    /// <summary>Answer 200 with the whole body even when a Range is asked for.</summary>
    public bool IgnoreRange { get; init; }

    public int Served;

    public string Sha256 => Convert.ToHexStringLower(SHA256.HashData(Content));

    public string GitOid => Convert.ToHexStringLower(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {Content.Length}\0"), .. Content]));
}

internal sealed class FakeRepo
{
    public Dictionary<string, FakeFile> Files { get; } = new(StringComparer.Ordinal);

    /// <summary>When set, requests must carry <c>Authorization: Bearer {token}</c> or get 401 (X-Error-Code: GatedRepo).</summary>
    public string? RequiredToken { get; init; }

    /// <summary>Like a gated repository on the real Hub: anyone may list the files, only downloads need the token.</summary>
    public bool ListingIsPublic { get; init; }

    public HashSet<string> Revisions { get; } = ["main"];
}

/// <summary>
/// An imitation of the Hugging Face Hub on 127.0.0.1, a minimal HTTP/1.1 server on raw sockets (one request per connection):
/// <c>GET /api/models/{owner}/{repo}/tree/{rev}?recursive=true</c> answers the tree API's JSON (paginated with a Link header
/// when <see cref="ListingPageSize"/> is set); <c>GET /{owner}/{repo}/resolve/{rev}/{path}</c> answers 302 to a second
/// listener on another port (the "CDN"), which serves the bytes with Range/206 support. Errors carry X-Error-Code like the Hub.
/// </summary>
internal sealed class FakeHub : IAsyncDisposable
{
    public sealed record Request(string Server, string Method, string Target, IReadOnlyDictionary<string, string> Headers);

    private readonly TcpListener _hub = new(IPAddress.Loopback, 0);
    private readonly TcpListener _cdn = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _loops = [];
    private readonly ConcurrentQueue<Request> _requests = new();

    public FakeHub()
    {
        _hub.Start();
        _cdn.Start();
        Endpoint = $"http://127.0.0.1:{((IPEndPoint)_hub.LocalEndpoint).Port}";
        CdnBase = $"http://127.0.0.1:{((IPEndPoint)_cdn.LocalEndpoint).Port}";
        _loops.Add(AcceptLoop(_hub, "hub"));
        _loops.Add(AcceptLoop(_cdn, "cdn"));
    }

    public string Endpoint { get; }
    public string CdnBase { get; }
    public Dictionary<string, FakeRepo> Repos { get; } = new(StringComparer.Ordinal);
    public int? ListingPageSize { get; set; }

    public IReadOnlyList<Request> Requests => [.. _requests];
    public int RequestCount => _requests.Count;

    public FakeRepo AddRepo(string repoId, string? requiredToken = null, bool listingIsPublic = false)
    {
        var repo = new FakeRepo { RequiredToken = requiredToken, ListingIsPublic = listingIsPublic };
        Repos[repoId] = repo;
        return repo;
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _hub.Stop();
        _cdn.Stop();
        try { await Task.WhenAll(_loops); }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { }
        _stop.Dispose();
    }

    private async Task AcceptLoop(TcpListener listener, string server)
    {
        var connections = new List<Task>();
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var client = await listener.AcceptTcpClientAsync(_stop.Token);
                connections.Add(Task.Run(() => Serve(client, server)));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { }
        await Task.WhenAll(connections);
    }

    private async Task Serve(TcpClient client, string server)
    {
        using var _ = client;
        try
        {
            var stream = client.GetStream();
            var head = await ReadHead(stream);
            if (head is null) return;
            var lines = head.Split("\r\n");
            var requestLine = lines[0].Split(' ');
            var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var line in lines.Skip(1))
            {
                int colon = line.IndexOf(':');
                if (colon > 0) headers[line[..colon].Trim()] = line[(colon + 1)..].Trim();
            }
            var request = new Request(server, requestLine[0], requestLine[1], headers);
            _requests.Enqueue(request);
            if (server == "hub") await ServeHub(stream, request);
            else await ServeCdn(stream, request);
        }
        catch (IOException) { }
        catch (SocketException) { }
    }

    private async Task ServeHub(NetworkStream stream, Request request)
    {
        string target = request.Target;
        int query = target.IndexOf('?');
        string path = query < 0 ? target : target[..query]; // still escaped: a revision "refs/pr/1" arrives as one segment
        var queryArgs = query < 0 ? "" : target[(query + 1)..];

        if (path.StartsWith("/api/models/", StringComparison.Ordinal))
        {
            // /api/models/{owner}/{repo}/tree/{revision}
            var parts = path["/api/models/".Length..].Split('/', 4).Select(Uri.UnescapeDataString).ToArray();
            if (parts.Length < 4 || parts[2] != "tree") { await Respond(stream, 400, "Bad Request", Json(new { error = "bad path" })); return; }
            var repo = await Authorize(stream, request, $"{parts[0]}/{parts[1]}", parts[3], listing: true);
            if (repo is null) return;
            int cursor = queryArgs.Split('&').Where(a => a.StartsWith("cursor=")).Select(a => int.Parse(a[7..])).FirstOrDefault();
            await ServeListing(stream, repo, request, cursor);
            return;
        }

        // /{owner}/{repo}/resolve/{revision}/{path}
        var segments = path.TrimStart('/').Split('/', 5);
        if (segments.Length == 5)
            segments = [.. segments[..4].Select(Uri.UnescapeDataString), string.Join('/', segments[4].Split('/').Select(Uri.UnescapeDataString))];
        if (segments.Length == 5 && segments[2] == "resolve")
        {
            var repo = await Authorize(stream, request, $"{segments[0]}/{segments[1]}", segments[3]);
            if (repo is null) return;
            if (!repo.Files.ContainsKey(segments[4]))
            {
                await Respond(stream, 404, "Not Found", Json(new { error = "Entry not found" }), [("X-Error-Code", "EntryNotFound")]);
                return;
            }
            string escaped = string.Join('/', segments[4].Split('/').Select(Uri.EscapeDataString));
            string location = $"{CdnBase}/blobs/{segments[0]}/{segments[1]}/{escaped}?X-Amz-Signature=deadbeef";
            await Respond(stream, 302, "Found", Array.Empty<byte>(), [("Location", location)]);
            return;
        }
        await Respond(stream, 404, "Not Found", Json(new { error = "not found" }));
    }

    /// <summary>The repository when it exists at that revision and the request may read it; otherwise answers the error and returns null.</summary>
    private async Task<FakeRepo?> Authorize(NetworkStream stream, Request request, string repoId, string revision, bool listing = false)
    {
        if (!Repos.TryGetValue(repoId, out var repo))
        {
            await Respond(stream, 404, "Not Found", Json(new { error = "Repository not found" }), [("X-Error-Code", "RepoNotFound")]);
            return null;
        }
        if (repo.RequiredToken is not null && !(listing && repo.ListingIsPublic)
            && (!request.Headers.TryGetValue("Authorization", out var auth) || auth != $"Bearer {repo.RequiredToken}"))
        {
            await Respond(stream, 401, "Unauthorized", Json(new { error = "Access to model is restricted." }), [("X-Error-Code", "GatedRepo")]);
            return null;
        }
        if (!repo.Revisions.Contains(revision))
        {
            await Respond(stream, 404, "Not Found", Json(new { error = "Revision not found" }), [("X-Error-Code", "RevisionNotFound")]);
            return null;
        }
        return repo;
    }

    private async Task ServeListing(NetworkStream stream, FakeRepo repo, Request request, int cursor)
    {
        var entries = new List<object>
        {
            new { type = "file", oid = "a6344aac8c09253b3b630fb776ae94478aa0275b", size = 1519, path = ".gitattributes" },
        };
        foreach (var dir in repo.Files.Keys.Where(p => p.Contains('/')).Select(p => p[..p.LastIndexOf('/')]).Distinct())
            entries.Add(new { type = "directory", oid = "0000000000000000000000000000000000000000", size = 0, path = dir });
        foreach (var (path, file) in repo.Files.OrderBy(f => f.Key, StringComparer.Ordinal))
        {
            if (file.Lfs)
            {
                var lfs = new { oid = file.Sha256, size = file.Content.Length, pointerSize = 134 };
                entries.Add(new { type = "file", oid = file.GitOid, size = file.Content.Length, lfs, path });
            }
            else
                entries.Add(new { type = "file", oid = file.GitOid, size = file.Content.Length, path });
        }

        var extra = new List<(string, string)>();
        if (ListingPageSize is int pageSize)
        {
            if (cursor + pageSize < entries.Count)
            {
                string basePath = request.Target.Split('?')[0];
                extra.Add(("Link", $"<{Endpoint}{basePath}?recursive=true&cursor={cursor + pageSize}>; rel=\"next\""));
            }
            entries = entries.Skip(cursor).Take(pageSize).ToList();
        }
        await Respond(stream, 200, "OK", Json(entries), extra);
    }

    private async Task ServeCdn(NetworkStream stream, Request request)
    {
        // /blobs/{owner}/{repo}/{path}?signature
        string path = Uri.UnescapeDataString(request.Target.Split('?')[0]);
        var segments = path.TrimStart('/').Split('/', 4);
        if (segments.Length != 4 || segments[0] != "blobs" || !Repos.TryGetValue($"{segments[1]}/{segments[2]}", out var repo)
            || !repo.Files.TryGetValue(segments[3], out var file))
        {
            await Respond(stream, 404, "Not Found", Array.Empty<byte>());
            return;
        }
        byte[] content = file.Content;
        if (file.Corrupt)
        {
            content = (byte[])content.Clone();
            content[content.Length / 3] ^= 0x5A;
        }
        int served = Interlocked.Increment(ref file.Served);
        int? cut = served <= file.CutRequests ? file.CutAfterBytes : null;

        long start = 0;
        if (!file.IgnoreRange && request.Headers.TryGetValue("Range", out var range) && range.StartsWith("bytes=") && range.EndsWith('-'))
            start = long.Parse(range[6..^1]);
        if (start >= content.Length && content.Length > 0)
        {
            await Respond(stream, 416, "Range Not Satisfiable", Array.Empty<byte>(), [("Content-Range", $"bytes */{content.Length}")]);
            return;
        }
        var body = content.AsMemory((int)start);
        if (file.StallAfterBytes is not null || file.PauseAtBytes is not null || file.ChunkDelay > TimeSpan.Zero)
        {
            await RespondSlowly(stream, start, content.Length, body, file);
            return;
        }
        if (start > 0)
            await Respond(stream, 206, "Partial Content", body, [("Content-Range", $"bytes {start}-{content.Length - 1}/{content.Length}")], cut);
        else
            await Respond(stream, 200, "OK", body, null, cut);
    }

    /// <summary>
    /// A body sent piece by piece with pauses, or that stops at <see cref="FakeFile.StallAfterBytes"/> and hangs until the
    /// hub stops.
    /// </summary>
    private async Task RespondSlowly(NetworkStream stream, long start, int length, ReadOnlyMemory<byte> body, FakeFile file)
    {
        var head = new StringBuilder(start > 0 ? "HTTP/1.1 206 Partial Content\r\n" : "HTTP/1.1 200 OK\r\n");
        head.Append($"Content-Length: {body.Length}\r\nConnection: close\r\nAccept-Ranges: bytes\r\n");
        if (start > 0) head.Append($"Content-Range: bytes {start}-{length - 1}/{length}\r\n");
        head.Append("\r\n");
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head.ToString()), _stop.Token);
        int limit = file.StallAfterBytes is int stall ? (int)Math.Clamp(stall - start, 0, body.Length) : body.Length;
        int pause = file.PauseAtBytes is int at ? (int)Math.Clamp(at - start, 0, limit) : -1;
        for (int sent = 0; sent < limit;)
        {
            if (sent == pause) await file.Gate.Task.WaitAsync(_stop.Token);
            int end = Math.Min(limit, sent + 65536);
            if (pause > sent && pause < end) end = pause;
            await stream.WriteAsync(body[sent..end], _stop.Token);
            sent = end;
            await stream.FlushAsync(_stop.Token);
            if (file.ChunkDelay > TimeSpan.Zero) await Task.Delay(file.ChunkDelay, _stop.Token);
        }
        if (limit < body.Length)
        {
            try { await Task.Delay(Timeout.Infinite, _stop.Token); }
            catch (OperationCanceledException) { }
        }
    }

    private static async Task Respond(NetworkStream stream, int status, string reason, ReadOnlyMemory<byte> body,
        IEnumerable<(string Name, string Value)>? headers = null, int? cutAfterBytes = null)
    {
        var head = new StringBuilder($"HTTP/1.1 {status} {reason}\r\nContent-Length: {body.Length}\r\nConnection: close\r\n");
        if (status is 200 or 206 && cutAfterBytes is null && body.Length > 0) head.Append("Accept-Ranges: bytes\r\n");
        foreach (var (name, value) in headers ?? []) head.Append($"{name}: {value}\r\n");
        head.Append("\r\n");
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head.ToString()));
        await stream.WriteAsync(cutAfterBytes is int cut ? body[..Math.Min(cut, body.Length)] : body);
        await stream.FlushAsync();
    }

    private static byte[] Json(object value) => JsonSerializer.SerializeToUtf8Bytes(value);

    private static async Task<string?> ReadHead(NetworkStream stream)
    {
        var buffer = new List<byte>();
        var one = new byte[1];
        while (buffer.Count < 16384)
        {
            if (await stream.ReadAsync(one) == 0) return null;
            buffer.Add(one[0]);
            int n = buffer.Count;
            if (n >= 4 && buffer[n - 4] == '\r' && buffer[n - 3] == '\n' && buffer[n - 2] == '\r' && buffer[n - 1] == '\n')
                return Encoding.ASCII.GetString(buffer.ToArray(), 0, n - 4);
        }
        return null;
    }
}
