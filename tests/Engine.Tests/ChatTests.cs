using System.Text.Json;
using Infer.Runtime.Inference;
using Infer.Runtime.Sampling;
using Infer.Templates;
using Infer.Tests;

namespace Infer.Engine.Tests;

/// <summary>
/// The chat side of <see cref="LoadedModel"/>: the template is the file's (as transformers renders it), or the plain
/// fallback when the file has none, and <see cref="LoadedModel.CreateChat"/> replies with the reference's greedy tokens.
/// </summary>
public class ChatTests
{
    /// <summary>The fixture's "chat" case: the conversation, transformers' rendering and token ids, the greedy reply.</summary>
    private sealed record ChatCase(List<ChatMessage> Messages, string Rendered, int[] InputIds, int[] GreedyNewIds);

    private static ChatCase LoadChatCase(string model)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.ModelDir(model), "reference", "reference.json")));
        var c = doc.RootElement.GetProperty("cases").EnumerateArray().Single(e => e.GetProperty("id").GetString() == "chat");
        static int[] Ids(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
        return new ChatCase(
            c.GetProperty("messages").EnumerateArray()
                .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList(),
            c.GetProperty("rendered").GetString()!, Ids(c.GetProperty("input_ids")), Ids(c.GetProperty("greedy_new_ids")));
    }

    private static LoadedModel Load(string model) =>
        LoadedModel.Load(new ModelLoadOptions(Fixtures.Model(model, "bf16")) { GpuLayers = 0, Threads = 2, ContextLength = 256 });

    [Fact]
    public void TemplateTextIsTheOneTheCheckpointShipped()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.ModelDir("llama3"), "hf", "tokenizer_config.json")));
        using var m = Load("llama3");
        Assert.Equal(doc.RootElement.GetProperty("chat_template").GetString(), m.TemplateText);
    }

    [Theory]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    public void TemplateRendersTheConversationAsTransformersDoes(string model)
    {
        var c = LoadChatCase(model);
        using var m = Load(model);
        var t = m.Tokenizer;
        string bos = t.BosId >= 0 ? t.TokenText(t.BosId) : "", eos = t.EosId >= 0 ? t.TokenText(t.EosId) : "";
        Assert.Equal(c.Rendered, m.Template.RenderChat(c.Messages, addGenerationPrompt: true, bos, eos));
        Assert.Same(m.Template, m.Template); // parsed once
    }

    [Fact]
    public void ModelWithoutATemplateGetsThePlainFallback()
    {
        using var m = Load("llama2-spm");
        Assert.Null(m.TemplateText);
        List<ChatMessage> messages = [new("system", "Be brief."), new("user", "hi"), new("assistant", "hello"), new("user", "bye")];
        Assert.Equal("Be brief.\n\nUser: hi\nAssistant: hello\nUser: bye\nAssistant:", m.Template.RenderChat(messages, true, "<s>", "</s>"));
    }

    [Fact]
    public void ChatRepliesWithTheReferenceGreedyTokens()
    {
        var c = LoadChatCase("qwen3");
        Assert.Equal(("system", "user"), (c.Messages[0].Role, c.Messages[1].Role));
        using var m = Load("qwen3");
        var chat = m.CreateChat(new SamplerOptions { Temperature = 0 }, c.Messages[0].Content, maxReplyTokens: c.GreedyNewIds.Length,
            overflow: ContextOverflowPolicy.Shift);
        Assert.Equal(ContextOverflowPolicy.Shift, chat.OverflowPolicy);

        var streamed = new List<string>();
        var reply = chat.Respond(c.Messages[1].Content, streamed.Add);
        Assert.Equal(c.InputIds.Length, reply.PromptTokens);
        Assert.Equal(c.InputIds, chat.Session.Tokens[..c.InputIds.Length].ToArray());
        Assert.Equal(c.GreedyNewIds.Length, reply.GeneratedTokens);
        Assert.Equal("limit", reply.StopReason);
        Assert.Equal(m.Tokenizer.Decode(c.GreedyNewIds), reply.Text);
        Assert.Equal(reply.Text, string.Concat(streamed));
    }

    [Fact]
    public void ChatTakesAnotherTemplate()
    {
        using var m = Load("qwen3");
        var template = ChatTemplate.Parse("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}");
        var chat = m.CreateChat(new SamplerOptions { Temperature = 0 }, "sys", template);
        Assert.Equal("<system>sys<user>hi", chat.Render([new ChatMessage("user", "hi")], addGenerationPrompt: true));
    }
}
