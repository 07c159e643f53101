namespace Infer.Hub;

/// <summary>
/// Where and how to resolve model references. Defaults come from the environment (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE,
/// INFER_CACHE, XDG_CACHE_HOME); set every property explicitly to ignore it.
/// </summary>
public sealed class HubOptions
{
    public const string PublicEndpoint = "https://huggingface.co";

    /// <summary>Base URL of the Hub, without a trailing slash. Default: $HF_ENDPOINT, else https://huggingface.co.</summary>
    public string Endpoint { get; init; } = DefaultEndpoint();

    /// <summary>Access token sent as <c>Authorization: Bearer</c> to the Hub (never to other hosts, never in messages). Default: $HF_TOKEN.</summary>
    public string? Token { get; init; } = NonEmpty(Environment.GetEnvironmentVariable("HF_TOKEN"));

    /// <summary>Root of the model cache. Default: $INFER_CACHE, else $XDG_CACHE_HOME/infer, else ~/.cache/infer.</summary>
    public string CacheDir { get; init; } = DefaultCacheDir();

    /// <summary>Never touch the network; fail when the model is not cached. Default: true when $HF_HUB_OFFLINE is 1 or true.</summary>
    public bool Offline { get; init; } = IsTrue(Environment.GetEnvironmentVariable("HF_HUB_OFFLINE"));

    /// <summary>Branch, tag or commit.</summary>
    public string Revision { get; init; } = "main";

    /// <summary>Exact file path in the repository (or its file name when unique); overrides the quantization.</summary>
    public string? HfFile { get; init; }

    /// <summary>How many times one file's transfer is tried (resuming where the last try stopped) before giving up.</summary>
    public int MaxAttempts { get; init; } = 4;

    /// <summary>Pause before a retry; it grows linearly with the attempt number.</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// A request whose headers or next body bytes take longer than this fails (and is retried at once, up to
    /// <see cref="MaxAttempts"/> tries): a download that stalls gives up after about MaxAttempts x this, 100 s by default.
    /// </summary>
    public TimeSpan NetworkTimeout { get; init; } = TimeSpan.FromSeconds(25);

    /// <summary>
    /// Connecting, a response's headers and the file listing get <see cref="NetworkTimeout"/>, but never less than 10 s: a
    /// short stall timeout is about a transfer that stops, not about a slow first answer.
    /// </summary>
    public TimeSpan RequestTimeout => NetworkTimeout > MinRequestTimeout ? NetworkTimeout : MinRequestTimeout;

    private static readonly TimeSpan MinRequestTimeout = TimeSpan.FromSeconds(10);

    public static string DefaultEndpoint()
    {
        string? env = NonEmpty(Environment.GetEnvironmentVariable("HF_ENDPOINT"));
        return (env ?? PublicEndpoint).TrimEnd('/');
    }

    public static string DefaultCacheDir()
    {
        string? explicitDir = NonEmpty(Environment.GetEnvironmentVariable("INFER_CACHE"));
        if (explicitDir is not null) return Path.GetFullPath(explicitDir);
        string? xdg = NonEmpty(Environment.GetEnvironmentVariable("XDG_CACHE_HOME"));
        if (xdg is not null && Path.IsPathRooted(xdg)) return Path.Combine(xdg, "infer");
        if (OperatingSystem.IsWindows())
            return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "infer");
        return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "infer");
    }

    /// <summary>Checks the endpoint and revision; returns the endpoint as a URI.</summary>
    internal Uri Validate()
    {
        if (!Uri.TryCreate(Endpoint.TrimEnd('/'), UriKind.Absolute, out var uri)
            || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            throw new HubException(HubErrorKind.InvalidReference,
                $"the Hub endpoint '{Endpoint}' is not an http(s) URL (set HF_ENDPOINT to something like https://huggingface.co)");
        if (string.IsNullOrEmpty(CacheDir))
            throw new HubException(HubErrorKind.InvalidReference, "the model cache directory is empty");
        CacheLayout.ValidateRevision(Revision);
        if (HfFile is not null && !CacheLayout.IsSafeRelativePath(HfFile))
            throw new HubException(HubErrorKind.InvalidReference, $"the file name '{HfFile}' is not a relative path inside a repository");
        if (!(NetworkTimeout > TimeSpan.Zero))
            throw new HubException(HubErrorKind.InvalidReference, $"the network timeout must be positive, not {NetworkTimeout.TotalSeconds} s");
        if (MaxAttempts < 1)
            throw new HubException(HubErrorKind.InvalidReference, $"MaxAttempts must be at least 1, not {MaxAttempts}");
        return uri;
    }

    private static string? NonEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s.Trim();

    private static bool IsTrue(string? s) => s is not null && (s.Trim() == "1" || s.Trim().Equals("true", StringComparison.OrdinalIgnoreCase));
}
