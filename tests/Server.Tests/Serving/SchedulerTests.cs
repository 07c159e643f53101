using Infer.Runtime.Grammar;
using Infer.Runtime.Model;
using Infer.Runtime.Sampling;
using Infer.Runtime.Serving;

namespace Infer.Server.Tests.Serving;

/// <summary>The continuous-batching scheduler on a Q8_0 fixture with 8 slots, against single-sequence greedy decoding.</summary>
public sealed class SchedulerTests : IDisposable
{
    private static readonly SamplerOptions Greedy = new() { Temperature = 0 };

    internal static readonly string[] Prompts =
    [
        "The quick brown fox jumps over the lazy dog.",
        "Hello",
        "def fib(n):\n    return n if n < 2 else fib(n-1) + fib(n-2)\n",
        "Once upon a time, in a land far away, there lived a king who had three daughters.",
        "1 2 3 4 5 6 7",
        "Les sanglots longs des violons de l'automne",
        "x",
        "What is the capital of France? Answer in one word, please, and then explain why in two sentences.",
    ];

    private readonly TestModel _m = new("llama3", "q8_0", sequences: 8);
    private readonly Scheduler _s;

    public SchedulerTests() => _s = new Scheduler(_m.Model, _m.Tokenizer, new SchedulerOptions { QueueCapacity = 4 });

    public void Dispose()
    {
        _s.Dispose();
        _m.Dispose();
    }

    private int[] Tokens(string prompt) => _m.Tokenizer.Encode(prompt, addSpecial: true, parseSpecial: true);

    private static GenerationRequest Request(int[] prompt, int max) =>
        new() { Prompt = prompt, MaxTokens = max, Sampling = Greedy, IgnoreEos = true };

    private static int[] Ids(List<GeneratedToken> tokens) => tokens.Select(t => t.Token).ToArray();

    [Fact]
    public async Task OneRequestGivesTheSingleSequenceGreedyTokens()
    {
        var prompt = Tokens(Prompts[0]);
        var (text, tokens, result) = await _s.Submit(Request(prompt, 20)).CollectAsync();
        Assert.Equal(_m.GreedyAlone(prompt, 20), Ids(tokens));
        Assert.Equal(_m.Tokenizer.Decode(Ids(tokens), removeSpecial: true), text);
        Assert.Equal(FinishReason.Length, result.Reason);
        Assert.Equal(20, result.GeneratedTokens);
        Assert.Equal(prompt.Length, result.PromptTokens);
        Assert.True(result.TimeToFirstToken > 0 && result.TimeToFirstToken <= result.TotalSeconds);
    }

    [Fact]
    public async Task EightConcurrentRequestsEachGiveTheirTokensAlone()
    {
        var prompts = Prompts.Select(Tokens).ToArray();
        var alone = prompts.Select(p => _m.GreedyAlone(p, 16)).ToArray();
        var streams = prompts.Select(p => _s.Submit(Request(p, 16))).ToArray();
        var results = await Task.WhenAll(streams.Select(s => s.CollectAsync()));
        for (int i = 0; i < prompts.Length; i++)
            Assert.True(alone[i].SequenceEqual(Ids(results[i].Tokens)),
                $"prompt {i}: alone [{string.Join(",", alone[i])}], batched [{string.Join(",", Ids(results[i].Tokens))}]");
    }

    [Fact]
    public async Task PromptsLongerThanTheStepBudgetArriveInChunks()
    {
        using var s = new Scheduler(_m.Model, _m.Tokenizer, new SchedulerOptions { StepTokens = 8 });
        var prompts = Prompts.Take(4).Select(Tokens).ToArray();
        var results = await Task.WhenAll(prompts.Select(p => s.Submit(Request(p, 6)).CollectAsync()));
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(6, results[i].Result.GeneratedTokens);
            Assert.Equal(_m.GreedyAlone(prompts[i], 6)[0], results[i].Tokens[0].Token);
        }
    }

    [Fact]
    public async Task ANewRequestReusesTheLongestCachedPrefix()
    {
        var first = Tokens(Prompts[3]);
        var (_, tokens, r1) = await _s.Submit(Request(first, 8)).CollectAsync();
        Assert.Equal(0, r1.CachedTokens);
        // The follow-up extends the first prompt and its reply (what a chat's next turn looks like).
        int[] follow = [.. first, .. Ids(tokens)[..7], .. Tokens(" And then?")[1..]];
        var (_, tokens2, r2) = await _s.Submit(Request(follow, 8)).CollectAsync();
        Assert.Equal(first.Length + 7, r2.CachedTokens);
        Assert.Equal(_m.GreedyAlone(follow, 8), Ids(tokens2));
        Assert.Equal(follow.Length + 7, _s.CachedTokens); // one slot: the follow-up and its reply but the last token
    }

    [Fact]
    public async Task ARepeatedPromptIsServedFromTheCache()
    {
        var prompt = Tokens(Prompts[2]);
        var (_, a, _) = await _s.Submit(Request(prompt, 5)).CollectAsync();
        var (_, b, r) = await _s.Submit(Request(prompt, 5)).CollectAsync();
        Assert.Equal(prompt.Length - 1, r.CachedTokens); // the last prompt token is evaluated again for its logits
        Assert.Equal(Ids(a), Ids(b));
    }

    [Fact]
    public async Task CancellingFreesTheSlotWithinAStep()
    {
        using var m = new TestModel("llama3", "q8_0", sequences: 1, context: TestModel.LongContext);
        using var s = new Scheduler(m.Model, m.Tokenizer);
        using var cts = new CancellationTokenSource();
        var stream = s.Submit(Request(Tokens(Prompts[1]), -1), cts.Token);
        Assert.True(await stream.Tokens.WaitToReadAsync());
        Assert.Equal(1, s.BusySlots);
        await cts.CancelAsync();
        var result = await stream.Completion.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(FinishReason.Cancelled, result.Reason);
        Assert.Equal(0, s.BusySlots);
        Assert.True(result.GeneratedTokens < m.Model.ContextLength - 2);
    }

    [Fact]
    public async Task TheQueueIsBoundedBeyondTheFreeSlots()
    {
        using var m = new TestModel("llama3", "q8_0", sequences: 1, context: TestModel.LongContext);
        using var s = new Scheduler(m.Model, m.Tokenizer, new SchedulerOptions { QueueCapacity = 1 });
        using var cts = new CancellationTokenSource();
        var running = s.Submit(Request(Tokens(Prompts[0]), -1), cts.Token);
        Assert.True(await running.Tokens.WaitToReadAsync()); // in the slot
        var waiting = s.Submit(Request(Tokens(Prompts[1]), 3));
        Assert.Equal(1, s.QueueLength);
        var e = Assert.Throws<QueueFullException>(() => s.Submit(Request(Tokens(Prompts[2]), 3)));
        Assert.Equal(1, e.Capacity);
        await cts.CancelAsync();
        Assert.Equal(3, (await waiting.CollectAsync()).Result.GeneratedTokens);
    }

    [Fact]
    public async Task GenerationEndsWhenTheSlotsContextIsFull()
    {
        using var m = new TestModel("llama3", "q8_0", sequences: 2, context: 32);
        using var s = new Scheduler(m.Model, m.Tokenizer);
        var prompt = Tokens(Prompts[0]);
        var (_, tokens, r) = await s.Submit(Request(prompt, -1)).CollectAsync();
        Assert.Equal(FinishReason.Length, r.Reason);
        Assert.Equal(32 - prompt.Length + 1, tokens.Count); // the last token is sampled from position 31's logits
        Assert.Throws<ContextFullException>(() => s.Submit(Request(new int[32], 1)));
    }

    [Fact]
    public async Task AStopStringEndsTheTextBeforeIt()
    {
        var prompt = Tokens(Prompts[5]);
        var (full, _, _) = await _s.Submit(Request(prompt, 16)).CollectAsync();
        Assert.True(full.Length > 12, full);
        string stop = full.Substring(6, 4);
        var (text, _, r) = await _s.Submit(Request(prompt, 16) with { Stop = ["never appears \u0001", stop] }).CollectAsync();
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], text);
        Assert.Equal(FinishReason.Stop, r.Reason);
    }

    [Fact]
    public async Task LogprobsAreTheLogSoftmaxOfTheLogits()
    {
        var prompt = Tokens(Prompts[4]);
        var (_, tokens, _) = await _s.Submit(Request(prompt, 2) with { TopLogprobs = 3 }).CollectAsync();
        using var m = new TestModel("llama3", "q8_0", sequences: 1);
        var session = new Runtime.Inference.Session(m.Model);
        session.Append(prompt);
        double max = session.Logits.Max(), lse = max + Math.Log(session.Logits.Sum(l => Math.Exp(l - max)));
        var order = Enumerable.Range(0, session.Logits.Length).OrderByDescending(i => session.Logits[i]).Take(3).ToArray();
        var t = tokens[0];
        Assert.Equal(order[0], t.Token);
        Assert.Equal(order, t.TopLogprobs!.Select(x => x.Token).ToArray());
        Assert.Equal(session.Logits[t.Token] - lse, t.Logprob, 1e-4);
        for (int i = 0; i < 3; i++) Assert.Equal(session.Logits[order[i]] - lse, t.TopLogprobs![i].Logprob, 1e-4);
    }

    [Fact]
    public async Task AGrammarConstrainsOneRequestOfTheBatch()
    {
        var grammar = GrammarConstraint.Create(GbnfGrammar.Parse("root ::= \"yes\" | \"no\""), _m.Tokenizer);
        var free = _s.Submit(Request(Tokens(Prompts[0]), 8));
        var constrained = _s.Submit(new GenerationRequest
        {
            Prompt = Tokens(Prompts[1]),
            MaxTokens = 8,
            Sampling = new SamplerOptions { Temperature = 1, Seed = 3, Grammar = grammar },
        });
        var (text, _, result) = await constrained.CollectAsync();
        Assert.Contains(text, new[] { "yes", "no" });
        Assert.Equal(FinishReason.Stop, result.Reason); // the grammar leaves only end-of-generation
        Assert.Equal(_m.GreedyAlone(Tokens(Prompts[0]), 8), Ids((await free.CollectAsync()).Tokens));
    }

    /// <summary>With ignore_eos (bench-serve sends it) a grammar's complete sentence still ends the request: nothing may follow.</summary>
    [Fact]
    public async Task AFinishedGrammarEndsTheRequestEvenWhenEndOfGenerationIsIgnored()
    {
        var grammar = GrammarConstraint.Create(GbnfGrammar.Parse("root ::= \"yes\" | \"no\""), _m.Tokenizer);
        var (text, _, result) = await _s.Submit(new GenerationRequest
        {
            Prompt = Tokens(Prompts[1]),
            MaxTokens = 12,
            IgnoreEos = true,
            Sampling = new SamplerOptions { Temperature = 1, Seed = 5, Grammar = grammar },
        }).CollectAsync();
        Assert.Contains(text, new[] { "yes", "no" });
        Assert.Equal(FinishReason.Stop, result.Reason);
        Assert.True(result.GeneratedTokens < 12, $"{result.GeneratedTokens} tokens: generation went on after the grammar ended");
    }

    [Fact]
    public async Task AFaultInOneRequestFailsOnlyThatRequest()
    {
        var faultyRequest = Request(Tokens(Prompts[1]), 8);
        int calls = 0;
        _s.SampleHook = r =>
        {
            if (ReferenceEquals(r, faultyRequest) && ++calls == 3) throw new InvalidOperationException("injected fault");
        };
        var healthy = _s.Submit(Request(Tokens(Prompts[0]), 8));
        var faulty = _s.Submit(faultyRequest);
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => faulty.CollectAsync());
        Assert.Equal("injected fault", e.Message);
        await Assert.ThrowsAsync<InvalidOperationException>(() => faulty.Completion);
        Assert.Equal(_m.GreedyAlone(Tokens(Prompts[0]), 8), Ids((await healthy.CollectAsync()).Tokens));
        Assert.Equal(8, (await _s.Submit(Request(Tokens(Prompts[2]), 8)).CollectAsync()).Result.GeneratedTokens);
        Assert.Equal(0, _s.BusySlots);
    }

    [Fact]
    public void BadRequestsAreRefusedAtSubmission()
    {
        Assert.Throws<ArgumentException>(() => _s.Submit(Request([], 1)));
        Assert.Throws<ArgumentException>(() => _s.Submit(Request([1, _m.Model.VocabSize], 1)));
        Assert.Throws<ArgumentException>(() => _s.Submit(Request([1], 0)));
        Assert.Throws<ArgumentException>(() => _s.Submit(Request([1], 1) with { Sampling = new SamplerOptions { TopP = 2 } }));
    }

    [Fact]
    public async Task ShutdownLetsRunningRequestsFinishThenRefusesNewOnes()
    {
        var running = _s.Submit(Request(Tokens(Prompts[0]), 10));
        await _s.ShutdownAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(10, (await running.CollectAsync()).Result.GeneratedTokens);
        Assert.Throws<SchedulerStoppedException>(() => _s.Submit(Request([1], 1)));
    }

    [Fact]
    public async Task ShutdownCancelsWhatOutlastsTheGracePeriod()
    {
        using var m = new TestModel("llama3", "q8_0", sequences: 1, context: TestModel.LongContext);
        using var s = new Scheduler(m.Model, m.Tokenizer);
        var running = s.Submit(Request(Tokens(Prompts[0]), -1));
        await s.ShutdownAsync(TimeSpan.FromMilliseconds(20));
        Assert.Equal(FinishReason.Cancelled, (await running.Completion).Reason);
    }
}
