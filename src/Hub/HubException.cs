namespace Infer.Hub;

/// <summary>What went wrong while resolving or downloading a Hugging Face model reference.</summary>
public enum HubErrorKind
{
    /// <summary>The reference, revision, file name or endpoint is malformed.</summary>
    InvalidReference,
    /// <summary>The repository, revision or file does not exist.</summary>
    NotFound,
    /// <summary>HTTP 401 or 403: the repository is gated or private and the request carried no token that grants access.</summary>
    Unauthorized,
    /// <summary>No GGUF file matches the requested (or default) quantization.</summary>
    NoMatchingQuant,
    /// <summary>Several different models match the request.</summary>
    Ambiguous,
    /// <summary>A downloaded file's SHA-256 or size differs from what the Hub lists; the download was deleted.</summary>
    Integrity,
    /// <summary>Offline mode and the model is not in the cache.</summary>
    Offline,
    /// <summary>The Hub could not be reached or the transfer failed; an interrupted download resumes on the next run.</summary>
    Network,
    /// <summary>The Hub answered with something this client cannot use (malformed listing, unexpected status).</summary>
    Protocol,
}

/// <summary>Resolving a model reference failed. The message names the repository or file and says what to do; it never contains the token.</summary>
public class HubException : Exception
{
    public HubErrorKind Kind { get; }

    /// <summary>The HTTP status code when the error came from a response, otherwise null.</summary>
    public int? StatusCode { get; }

    public HubException(HubErrorKind kind, string message, int? statusCode = null, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
        StatusCode = statusCode;
    }
}
