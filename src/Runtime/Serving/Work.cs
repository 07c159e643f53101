using System.Diagnostics;
using System.Threading.Channels;

namespace Infer.Runtime.Serving;

/// <summary>A submitted request while it waits or runs: its stream's writer and the scheduler's bookkeeping.</summary>
internal sealed class Work
{
    public Work(GenerationRequest request, CancellationToken cancel)
    {
        Request = request;
        Cancel = cancel;
        Channel = System.Threading.Channels.Channel.CreateUnbounded<GeneratedToken>(
            new UnboundedChannelOptions { SingleReader = true, SingleWriter = true, AllowSynchronousContinuations = false });
        Stream = new GenerationStream(Channel.Reader, Result.Task);
    }

    public readonly GenerationRequest Request;
    public readonly CancellationToken Cancel;
    public readonly Channel<GeneratedToken> Channel;
    public readonly TaskCompletionSource<GenerationResult> Result = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public readonly GenerationStream Stream;
    public readonly long Submitted = Stopwatch.GetTimestamp();
    public long Started, FirstToken;
    public int Generated, Cached;
}

/// <summary>
/// The output of one request: tokens as they are generated, then <see cref="Completion"/>. Read <see cref="Tokens"/> to the end
/// (or cancel the request); an internal fault ends both with the exception.
/// </summary>
public sealed class GenerationStream
{
    internal GenerationStream(ChannelReader<GeneratedToken> tokens, Task<GenerationResult> completion)
    {
        Tokens = tokens;
        Completion = completion;
    }

    public ChannelReader<GeneratedToken> Tokens { get; }

    public Task<GenerationResult> Completion { get; }

    /// <summary>Reads the whole stream: the text, each token with its log probabilities, and the result.</summary>
    public async Task<(string Text, List<GeneratedToken> Tokens, GenerationResult Result)> CollectAsync(CancellationToken cancel = default)
    {
        var text = new System.Text.StringBuilder();
        var tokens = new List<GeneratedToken>();
        await foreach (var t in Tokens.ReadAllAsync(cancel).ConfigureAwait(false))
        {
            text.Append(t.Text);
            if (t.Token >= 0) tokens.Add(t);
        }
        return (text.ToString(), tokens, await Completion.ConfigureAwait(false));
    }
}
