using Infer.Runtime.Sampling;
using Infer.Runtime.Tokenizers;

namespace Infer.Runtime.Serving;

/// <summary>
/// One KV-cache sequence of the model and the request it serves. <see cref="Cache"/> keeps the tokens whose keys and values are in
/// the cache after the request ends, so the next request that shares a prefix with them evaluates only the rest.
/// </summary>
internal sealed class Slot(int sequence, int contextLength, Tokenizer tokenizer)
{
    public readonly int Sequence = sequence;
    public readonly int[] Cache = new int[contextLength];   // (contextLength) tokens in the cache, by position
    public int CacheCount;                                  // positions [0, CacheCount) hold valid keys and values
    public readonly StreamingDecoder Decoder = tokenizer.CreateStreamingDecoder();
    public readonly StopMatcher Stop = new();
    public float[]? Scratch;                                // (vocab) logits before sampling, for log probabilities

    public Work? Job;
    public Sampler? Sampler;      // the current request's; kept for the next request with equal options
    public int PromptNext;        // index of the next prompt token to evaluate
    public int PendingToken = -1; // the last sampled token, evaluated in the next step
    public long LastUsed;         // when the slot last finished a request (least recently used wins a tie)
    public long Admitted;         // admission order: waiting prompts are evaluated first come, first served
    public int StepStamp;         // the step that last took a prompt chunk of this slot
    public int Chunk;             // prompt tokens in the current step's batch

    public bool Busy => Job is not null;
    public bool Prefilling => Job is not null && PromptNext < Job.Request.Prompt.Length;

    /// <summary>Length of the common prefix of the cached tokens and <paramref name="prompt"/>.</summary>
    public int CommonPrefix(ReadOnlySpan<int> prompt) => Cache.AsSpan(0, CacheCount).CommonPrefixLength(prompt);
}
