using Infer.Engine;
using Infer.Runtime.Serving;
using Infer.Server.Tests.Serving;
using Infer.Tests;
using Microsoft.Extensions.AI;
using ChatTemplate = Infer.Templates.ChatTemplate;

namespace Infer.Server.Tests.InProcess;

/// <summary>The in-process IChatClient on the llama3 BF16 fixture: no HTTP, the same answers as the server.</summary>
public sealed class LocalChatClientTests : IDisposable
{
    private readonly TestModel _m = new("llama3", "bf16", sequences: 2);
    private readonly LocalChatClient _chat;

    public LocalChatClientTests()
    {
        _chat = new LocalChatClient(_m.Model, _m.Tokenizer, ChatTemplate.Parse(_m.File.TryGetString("tokenizer.chat_template")!), "local");
    }

    public void Dispose()
    {
        _chat.Dispose();
        _m.Dispose();
    }

    private static List<ChatMessage> Conversation() =>
        [new(ChatRole.System, "You are a helpful assistant."), new(ChatRole.User, "What is the capital of France? Answer in one word.")];

    private string ReferenceText => _m.Tokenizer.Decode(ReferenceCase.Find("llama3", "chat").GreedyNewIds, removeSpecial: true);

    [Fact]
    public async Task GreedyAnswerEqualsTheTransformersReference()
    {
        var r = await _chat.GetResponseAsync(Conversation(), new ChatOptions { Temperature = 0, MaxOutputTokens = 24 });
        Assert.Equal(ReferenceText, r.Text);
        Assert.Equal(ChatFinishReason.Length, r.FinishReason);
        Assert.Equal(ReferenceCase.Find("llama3", "chat").InputIds.Length, r.Usage!.InputTokenCount);
        Assert.Equal(24, r.Usage.OutputTokenCount);
        Assert.Equal("local", r.ModelId);
    }

    [Fact]
    public async Task StreamingGivesTheSameTextAndEndsWithUsage()
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in _chat.GetStreamingResponseAsync(Conversation(), new ChatOptions { Temperature = 0, MaxOutputTokens = 24 }))
            updates.Add(u);
        Assert.Equal(ReferenceText, string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(ChatFinishReason.Length, updates[^1].FinishReason);
        Assert.Equal(24, updates[^1].Contents.OfType<UsageContent>().Single().Details.OutputTokenCount);
        var response = updates.ToChatResponse();
        Assert.Equal(ReferenceText, response.Text);
    }

    [Fact]
    public async Task StopSequencesAndSeedsMapToTheSampler()
    {
        var greedy = new ChatOptions { Temperature = 0, MaxOutputTokens = 24 };
        string stop = ReferenceText.Substring(8, 3);
        var stopped = await _chat.GetResponseAsync(Conversation(), new ChatOptions { Temperature = 0, MaxOutputTokens = 24, StopSequences = [stop] });
        Assert.Equal(ReferenceText[..ReferenceText.IndexOf(stop, StringComparison.Ordinal)], stopped.Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);

        var sampled = new ChatOptions
        {
            Temperature = 1.5f, TopK = 0, TopP = 1, Seed = 7, MaxOutputTokens = 12, AdditionalProperties = new() { ["min_p"] = 0.0 },
        };
        var a = await _chat.GetResponseAsync(Conversation(), sampled);
        var b = await _chat.GetResponseAsync(Conversation(), sampled);
        Assert.Equal(a.Text, b.Text); // the seed makes sampling repeatable
        Assert.NotEqual((await _chat.GetResponseAsync(Conversation(), greedy)).Text, a.Text);
    }

    [Fact]
    public async Task CancellingStopsTheStreamAndFreesTheSlot()
    {
        using var cts = new CancellationTokenSource();
        int seen = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            var options = new ChatOptions { Temperature = 0, AdditionalProperties = new() { ["ignore_eos"] = true } };
            await foreach (var u in _chat.GetStreamingResponseAsync(Conversation(), options, cts.Token))
                if (++seen == 2) await cts.CancelAsync();
        });
        var scheduler = (Scheduler)_chat.GetService(typeof(Scheduler))!;
        for (int i = 0; i < 200 && scheduler.BusySlots > 0; i++) await Task.Delay(10);
        Assert.Equal(0, scheduler.BusySlots);
        Assert.Equal("local", _chat.GetService<ChatClientMetadata>()!.DefaultModelId);
    }

    [Fact]
    public async Task UnsupportedRequestsAreRefused()
    {
        List<ChatMessage> image = [new(ChatRole.User, [new DataContent(new byte[] { 1, 2, 3 }, "image/png")])];
        await Assert.ThrowsAsync<NotSupportedException>(() => _chat.GetResponseAsync(image));
    }
}
