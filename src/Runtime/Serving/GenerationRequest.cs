using Infer.Runtime.Sampling;

namespace Infer.Runtime.Serving;

/// <summary>One generation: prompt tokens, sampling and limits. Validated by the caller; the scheduler checks only what it must.</summary>
public sealed record GenerationRequest
{
    public required int[] Prompt { get; init; }

    /// <summary>The request's sampling; a grammar (structured output) rides in <see cref="SamplerOptions.Grammar"/>: each slot's sampler
    /// masks with it and advances it, so constrained and free requests share a batch.</summary>
    public SamplerOptions Sampling { get; init; } = new();

    /// <summary>Most generated tokens; -1: until the slot's context is full.</summary>
    public int MaxTokens { get; init; } = -1;

    /// <summary>Strings that end the generation; the text from the first match on is not returned.</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];

    /// <summary>Keep generating past end-of-generation tokens (benchmarks).</summary>
    public bool IgnoreEos { get; init; }

    /// <summary>-1: no log probabilities; 0..20: the chosen token's log probability and that many alternatives.</summary>
    public int TopLogprobs { get; init; } = -1;

    /// <summary>Added to the tokens' logits before sampling (OpenAI's logit_bias; -100 all but bans a token).</summary>
    public TokenBias[] LogitBias { get; init; } = [];
}

/// <summary>A bias added to one token's logit.</summary>
public readonly record struct TokenBias(int Token, float Bias);

/// <summary>A candidate token and its log probability (natural log, over the model's distribution before sampling).</summary>
public readonly record struct TokenLogprob(int Token, float Logprob);

/// <summary>
/// One step of a stream: a generated token (<see cref="Token"/> ≥ 0) with the text it released, or the final flush (Token = -1)
/// with text held back until the end. Text may be empty while a UTF-8 character or a possible stop string is pending.
/// </summary>
public readonly record struct GeneratedToken(int Token, string Text, float Logprob, TokenLogprob[]? TopLogprobs);

public enum FinishReason
{
    /// <summary>An end-of-generation token or a stop string.</summary>
    Stop,

    /// <summary>max_tokens reached, or the slot's context is full.</summary>
    Length,

    /// <summary>The caller cancelled (a client disconnected) or the server shut down.</summary>
    Cancelled,
}

/// <summary>How a generation ended, with its token counts and timings.</summary>
/// <param name="Reason">why it stopped.</param>
/// <param name="PromptTokens">the prompt's length in tokens, the cached ones included.</param>
/// <param name="CachedTokens">prompt tokens whose KV cache was reused from the slot's previous request.</param>
/// <param name="GeneratedTokens">tokens sampled, the end-of-generation token not counted.</param>
/// <param name="QueueSeconds">time spent waiting for a slot.</param>
/// <param name="TimeToFirstToken">from submission to the first generated token (seconds; 0 when none).</param>
/// <param name="TotalSeconds">from submission to the end.</param>
public sealed record GenerationResult(
    FinishReason Reason, int PromptTokens, int CachedTokens, int GeneratedTokens, double QueueSeconds, double TimeToFirstToken, double TotalSeconds)
{
    /// <summary>Mean time per generated token after the first (seconds; 0 with fewer than two tokens).</summary>
    public double TimePerOutputToken => GeneratedTokens > 1 ? (TotalSeconds - TimeToFirstToken) / (GeneratedTokens - 1) : 0;

    /// <summary>The OpenAI spelling: "stop" or "length" (a cancelled request has no client left to read it).</summary>
    public string OpenAiFinishReason => Reason == FinishReason.Length ? "length" : "stop";
}

/// <summary>Every slot is busy and the waiting queue is full: try again later (HTTP 429).</summary>
public sealed class QueueFullException(int capacity)
    : Exception($"the server is busy: all slots are in use and {capacity} requests are already waiting")
{
    public int Capacity { get; } = capacity;
}

/// <summary>The scheduler is shutting down and accepts no new requests (HTTP 503).</summary>
public sealed class SchedulerStoppedException() : Exception("the server is shutting down");
