using Microsoft.Extensions.Logging;

namespace Infer.Server;

/// <summary>How the HTTP server listens, limits and protects itself.</summary>
public sealed record ServerOptions
{
    /// <summary>Address to bind; loopback unless told otherwise.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (see <see cref="InferServer.BaseAddress"/>).</summary>
    public int Port { get; init; } = 8080;

    /// <summary>When set, every /v1 call must carry <c>Authorization: Bearer KEY</c>.</summary>
    public string? ApiKey { get; init; }

    /// <summary>Requests that may wait for a slot beyond the free ones; more get 429.</summary>
    public int QueueCapacity { get; init; } = 64;

    /// <summary>Tokens per scheduler step (-b); 0: the model's batch size.</summary>
    public int StepTokens { get; init; }

    /// <summary>Largest request body accepted, in bytes.</summary>
    public long MaxBodyBytes { get; init; } = 4 << 20;

    /// <summary>Largest max_tokens a request may ask for; also the default limit when it asks for none.</summary>
    public int MaxTokensCap { get; init; } = 4096;

    /// <summary>How long running requests may take to finish after a shutdown signal before they are cancelled.</summary>
    public TimeSpan ShutdownGrace { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Seconds a client is told to wait (Retry-After) when the queue is full.</summary>
    public int RetryAfterSeconds { get; init; } = 1;

    /// <summary>Configures logging (providers, levels); null: no logging.</summary>
    public Action<ILoggingBuilder>? Logging { get; init; }

    /// <summary>Name of the <see cref="System.Diagnostics.Metrics.Meter"/> the server's instruments live on.</summary>
    public const string MeterName = "Infer.Server";
}
