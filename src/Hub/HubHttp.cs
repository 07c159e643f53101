using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace Infer.Hub;

/// <summary>
/// The Hub's HTTP surface: the tree listing (<c>GET /api/models/{repo}/tree/{revision}?recursive=true</c>, paginated through
/// <c>Link: rel="next"</c>) and file requests that follow redirects by hand, so the Range header survives every hop and the
/// token is sent only to the endpoint's own origin (never to the CDN a download is redirected to).
/// </summary>
internal sealed class HubHttp : IDisposable
{
    private const int MaxRedirects = 10;
    private const int MaxListingPages = 10_000;
    private const long MaxListingPageBytes = 64L << 20;
    private const long MaxListingBytes = 256L << 20;

    private readonly HttpClient _client;
    private readonly Uri _endpoint;
    private readonly string? _token;
    private readonly TimeSpan _timeout;
    private readonly TimeSpan _requestTimeout;

    public HubHttp(Uri endpoint, HubOptions options)
    {
        _endpoint = endpoint;
        _token = options.Token;
        _timeout = options.NetworkTimeout;
        _requestTimeout = options.RequestTimeout;
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = _requestTimeout,
        };
        _client = new HttpClient(handler) { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
        _client.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("infer", "0.1"));
    }

    /// <summary>How long a download's body may go without data before the try is abandoned.</summary>
    public TimeSpan Timeout => _timeout;

    public Uri TreeUri(ModelReference reference, string revision) =>
        new($"{Base}/api/models/{reference.Owner}/{reference.Repo}/tree/{Uri.EscapeDataString(revision)}?recursive=true");

    public Uri ResolveUri(ModelReference reference, string revision, string path) =>
        new($"{Base}/{reference.Owner}/{reference.Repo}/resolve/{Uri.EscapeDataString(revision)}/"
            + string.Join('/', path.Split('/').Select(Uri.EscapeDataString)));

    /// <summary>The endpoint without a trailing slash.</summary>
    private string Base => _endpoint.AbsoluteUri.TrimEnd('/');

    /// <summary>Every file (not folder) of the revision, across all pages of the listing.</summary>
    public async Task<IReadOnlyList<HubFile>> ListFilesAsync(ModelReference reference, string revision, CancellationToken ct)
    {
        var files = new List<HubFile>();
        Uri? next = TreeUri(reference, revision);
        long totalBytes = 0;
        for (int page = 0; next is not null; page++)
        {
            if (page == MaxListingPages || totalBytes > MaxListingBytes)
                throw new HubException(HubErrorKind.Protocol,
                    $"the file listing of {reference.RepoId} is longer than {MaxListingPages} pages or {MaxListingBytes >> 20} MiB");
            using var response = await SendAsync(next, rangeStart: null, reference.RepoId, ct).ConfigureAwait(false);
            if (response.StatusCode != HttpStatusCode.OK)
                throw ErrorFor(response, reference.RepoId, revision, file: null);
            byte[] body = await ReadCappedAsync(response, next, ct).ConfigureAwait(false);
            totalBytes += body.Length;
            ParseListingPage(body, files, reference.RepoId);
            next = NextLink(response, next);
        }
        return files;
    }

    /// <summary>
    /// GET with redirects followed; <paramref name="rangeStart"/> adds <c>Range: bytes=N-</c>. Returns the final response
    /// (any status); the caller disposes it.
    /// </summary>
    public async Task<HttpResponseMessage> SendAsync(Uri uri, long? rangeStart, string what, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_requestTimeout);
        try
        {
            for (int hop = 0; ; hop++)
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, uri);
                if (rangeStart is long start) request.Headers.Range = new RangeHeaderValue(start, null);
                if (_token is not null && SameOrigin(uri, _endpoint)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _token);
                var response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
                if (!IsRedirect(response.StatusCode)) return response;

                var location = response.Headers.Location;
                response.Dispose();
                if (location is null)
                    throw new HubException(HubErrorKind.Protocol, $"{what}: redirect without a Location header from {Describe(uri)}",
                        (int)response.StatusCode);
                if (hop == MaxRedirects)
                    throw new HubException(HubErrorKind.Protocol, $"{what}: more than {MaxRedirects} redirects starting at {Describe(uri)}");
                uri = location.IsAbsoluteUri ? location : new Uri(uri, location);
                if (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)
                    throw new HubException(HubErrorKind.Protocol, $"{what}: redirected to a non-HTTP URL ({uri.Scheme}:)");
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new HubException(HubErrorKind.Network, $"{what}: no answer from {Describe(uri)} within {_requestTimeout.TotalSeconds:0.#} s");
        }
        catch (HttpRequestException e)
        {
            throw new HubException(HubErrorKind.Network,
                $"{what}: cannot reach {Describe(uri)}: {e.Message} (use --offline to run from the cache only)", null, e);
        }
    }

    /// <summary>The typed error for a non-success response, in the words of the Hub's X-Error-Code when it sent one.</summary>
    public HubException ErrorFor(HttpResponseMessage response, string repoId, string revision, string? file)
    {
        int status = (int)response.StatusCode;
        string? code = response.Headers.TryGetValues("X-Error-Code", out var values) ? values.FirstOrDefault() : null;
        string page = $"{Base}/{repoId}";
        string what = file is null ? repoId : $"{file} in {repoId}";
        switch (status)
        {
            case 401 or 403:
                string access = code == "GatedRepo" || status == 403
                    ? $"{repoId} is a gated repository and access has not been granted (HTTP {status})."
                    : $"{repoId} is gated or private, or does not exist (HTTP {status}).";
                string tokenState = _token is null
                    ? "No HF_TOKEN is set."
                    : "The HF_TOKEN that was sent does not grant access: check that it is valid and that its account has accepted the terms.";
                return new HubException(HubErrorKind.Unauthorized,
                    $"{access} To get access, open {page}, log in and accept the model's terms, then create a read token at "
                    + $"{Base}/settings/tokens and set HF_TOKEN. {tokenState}", status);
            case 404:
                string message = code switch
                {
                    "RevisionNotFound" => $"revision '{revision}' of {repoId} was not found (HTTP 404)",
                    "EntryNotFound" => $"{what} was not found at revision '{revision}' (HTTP 404)",
                    _ when file is not null => $"{what} was not found at revision '{revision}' (HTTP 404)",
                    _ => $"repository {repoId} (revision '{revision}') was not found at {Base} (HTTP 404): check the spelling; "
                        + "a private repository also needs HF_TOKEN",
                };
                return new HubException(HubErrorKind.NotFound, message, status);
            case 429 or >= 500:
                return new HubException(HubErrorKind.Network,
                    $"{what}: the Hub answered HTTP {status} ({response.ReasonPhrase}); try again later", status);
            default:
                return new HubException(HubErrorKind.Protocol, $"{what}: unexpected HTTP {status} ({response.ReasonPhrase}) from the Hub", status);
        }
    }

    public void Dispose() => _client.Dispose();

    private async Task<byte[]> ReadCappedAsync(HttpResponseMessage response, Uri uri, CancellationToken ct)
    {
        if (response.Content.Headers.ContentLength > MaxListingPageBytes)
            throw new HubException(HubErrorKind.Protocol, $"the file listing at {Describe(uri)} is larger than {MaxListingPageBytes >> 20} MiB");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_requestTimeout);
        try
        {
            await using var stream = await response.Content.ReadAsStreamAsync(timeout.Token).ConfigureAwait(false);
            using var buffer = new MemoryStream();
            var chunk = new byte[81920];
            int n;
            while ((n = await stream.ReadAsync(chunk, timeout.Token).ConfigureAwait(false)) > 0)
            {
                if (buffer.Length + n > MaxListingPageBytes)
                    throw new HubException(HubErrorKind.Protocol,
                        $"the file listing at {Describe(uri)} is larger than {MaxListingPageBytes >> 20} MiB");
                buffer.Write(chunk, 0, n);
            }
            return buffer.ToArray();
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new HubException(HubErrorKind.Network,
                $"the file listing at {Describe(uri)} did not arrive within {_requestTimeout.TotalSeconds:0.#} s");
        }
        catch (Exception e) when (e is IOException or HttpRequestException)
        {
            throw new HubException(HubErrorKind.Network, $"reading the file listing at {Describe(uri)} failed: {e.Message}", null, e);
        }
    }

    /// <summary>
    /// One page of the tree API: a JSON array of <c>{"type":"file"|"directory","oid","size","path","lfs":{"oid","size","pointerSize"}}</c>.
    /// Folders are skipped; files whose path is not a safe relative path are dropped.
    /// </summary>
    internal static void ParseListingPage(ReadOnlySpan<byte> json, List<HubFile> files, string repoId)
    {
        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 16 });
            using var doc = JsonDocument.ParseValue(ref reader);
            if (doc.RootElement.ValueKind != JsonValueKind.Array)
                throw new HubException(HubErrorKind.Protocol, $"the file listing of {repoId} is not a JSON array");
            foreach (var entry in doc.RootElement.EnumerateArray())
            {
                if (entry.ValueKind != JsonValueKind.Object) continue;
                if (!entry.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "file") continue;
                if (!entry.TryGetProperty("path", out var pathElement) || pathElement.ValueKind != JsonValueKind.String) continue;
                string path = pathElement.GetString()!;
                if (!CacheLayout.IsSafeRelativePath(path)) continue;

                long size = ReadSize(entry, repoId, path);
                string? sha256 = null;
                if (entry.TryGetProperty("lfs", out var lfs) && lfs.ValueKind == JsonValueKind.Object)
                {
                    sha256 = ReadHex(lfs, "oid", 64, repoId, path)
                        ?? throw new HubException(HubErrorKind.Protocol, $"the listing of {repoId} gives {path} an LFS entry without a SHA-256 oid");
                    if (lfs.TryGetProperty("size", out _)) size = ReadSize(lfs, repoId, path);
                }
                string? gitOid = ReadHex(entry, "oid", 40, repoId, path);
                files.Add(new HubFile(path, size, sha256, gitOid));
            }
        }
        catch (JsonException e)
        {
            throw new HubException(HubErrorKind.Protocol, $"the file listing of {repoId} is not valid JSON: {e.Message}", null, e);
        }
    }

    private static long ReadSize(JsonElement obj, string repoId, string path)
    {
        if (!obj.TryGetProperty("size", out var size) || size.ValueKind != JsonValueKind.Number || !size.TryGetInt64(out long value) || value < 0)
            throw new HubException(HubErrorKind.Protocol, $"the listing of {repoId} gives {path} no valid size");
        return value;
    }

    /// <summary>
    /// The lower-case hex string of <paramref name="length"/> digits under <paramref name="name"/>; null when absent or
    /// not of that form.
    /// </summary>
    private static string? ReadHex(JsonElement obj, string name, int length, string repoId, string path)
    {
        if (!obj.TryGetProperty(name, out var element) || element.ValueKind != JsonValueKind.String) return null;
        string value = element.GetString()!;
        return value.Length == length && value.All(char.IsAsciiHexDigit) ? value.ToLowerInvariant() : null;
    }

    /// <summary>The <c>rel="next"</c> target of a Link header, resolved against the current page.</summary>
    internal static Uri? NextLink(HttpResponseMessage response, Uri current)
    {
        if (!response.Headers.TryGetValues("Link", out var links)) return null;
        foreach (var header in links)
        {
            foreach (var part in header.Split(','))
            {
                int open = part.IndexOf('<'), close = part.IndexOf('>');
                if (open < 0 || close < open) continue;
                string parameters = part[(close + 1)..];
                if (!parameters.Replace(" ", "").Contains("rel=\"next\"", StringComparison.OrdinalIgnoreCase)
                    && !parameters.Replace(" ", "").Contains("rel=next", StringComparison.OrdinalIgnoreCase)) continue;
                if (Uri.TryCreate(current, part[(open + 1)..close], out var next)) return next;
            }
        }
        return null;
    }

    private static bool IsRedirect(HttpStatusCode status) => (int)status is 301 or 302 or 303 or 307 or 308;

    private static bool SameOrigin(Uri a, Uri b) =>
        a.Scheme == b.Scheme && a.Port == b.Port && string.Equals(a.Host, b.Host, StringComparison.OrdinalIgnoreCase);

    /// <summary>A URL without its query (redirect targets carry signatures that do not belong in messages).</summary>
    internal static string Describe(Uri uri) => uri.GetLeftPart(UriPartial.Path);
}
