using System.ClientModel;
using Infer.Tests;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using AiChatRole = Microsoft.Extensions.AI.ChatRole;

namespace Infer.Server.Tests.Http;

/// <summary>
/// The official OpenAI .NET SDK and Microsoft.Extensions.AI.OpenAI's chat client against the real server (llama3 BF16 fixture):
/// greedy answers equal transformers' reference tokens and `infer run`'s output, streaming and not.
/// </summary>
public sealed class OpenAiSdkTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async ValueTask InitializeAsync() => _server = await TestServer.StartAsync();

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    private OpenAIClient Client() =>
        new(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(_server.BaseAddress, "v1") });

    private static ReferenceCase ChatCase => ReferenceCase.Find("llama3", "chat");

    /// <summary>The reference's 24 greedy tokens as text (the fixture ids decoded by our tokenizer, which has its own tests).</summary>
    private string ReferenceText(ReferenceCase c) => _server.Model.Tokenizer.Decode(c.GreedyNewIds, removeSpecial: true);

    private static ChatCompletionOptions Greedy(int max) => new() { Temperature = 0, MaxOutputTokenCount = max };

    private static List<OpenAI.Chat.ChatMessage> ChatMessages() =>
    [
        new SystemChatMessage("You are a helpful assistant."),
        new UserChatMessage("What is the capital of France? Answer in one word."),
    ];

    [Fact]
    public async Task ChatCompletionEqualsTheTransformersReference()
    {
        var chat = Client().GetChatClient("test-model");
        ChatCompletion completion = await chat.CompleteChatAsync(ChatMessages(), Greedy(24));
        Assert.Equal(ReferenceText(ChatCase), completion.Content[0].Text);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(ChatCase.InputIds.Length, completion.Usage.InputTokenCount);
        Assert.Equal(24, completion.Usage.OutputTokenCount);
        Assert.Equal("test-model", completion.Model);
    }

    [Fact]
    public async Task StreamedChatEqualsTheTransformersReference()
    {
        var chat = Client().GetChatClient("test-model");
        var text = new System.Text.StringBuilder();
        int chunks = 0;
        ChatTokenUsage? usage = null;
        OpenAI.Chat.ChatFinishReason? finish = null;
        await foreach (var update in chat.CompleteChatStreamingAsync(ChatMessages(), Greedy(24)))
        {
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
                if (part.Text.Length > 0) chunks++;
            }
            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }
        Assert.Equal(ReferenceText(ChatCase), text.ToString());
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Length, finish);
        Assert.NotNull(usage);
        Assert.Equal(24, usage.OutputTokenCount);
        Assert.InRange(chunks, 20, 24); // one chunk per token, except tokens that only start a UTF-8 character
    }

    [Theory]
    [InlineData("prompt0")]
    [InlineData("prompt2")]
    public async Task TextCompletionEqualsTheReferenceAndInferRun(string id)
    {
        var c = ReferenceCase.Find("llama3", id);
        var req = new { model = "test-model", prompt = c.Prompt, max_tokens = 24, temperature = 0, ignore_eos = true };
        var (status, body, _) = await _server.PostAsync("v1/completions", System.Text.Json.JsonSerializer.Serialize(req));
        Assert.Equal(200, status);
        string text = body.RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
        Assert.Equal(ReferenceText(c), text);
        Assert.Equal(c.InputIds.Length, body.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        var (code, stdout, stderr) = Cli.Tests.CliRunner.Infer("run", "-m", _server.Model.Path, "-p", c.Prompt!, "-n", "24", "--temp", "0",
            "--ignore-eos", "-c", "256", "-t", "2");
        Assert.True(code == 0, stderr);
        Assert.Equal(stdout.TrimEnd('\n'), text);
    }

    [Fact]
    public async Task ExtensionsAiChatClientStreamsAndAnswers()
    {
        IChatClient chat = Client().GetChatClient("test-model").AsIChatClient();
        List<AiChatMessage> messages =
            [new(AiChatRole.System, "You are a helpful assistant."), new(AiChatRole.User, "What is the capital of France? Answer in one word.")];
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 24 };
        var response = await chat.GetResponseAsync(messages, options);
        Assert.Equal(ReferenceText(ChatCase), response.Text);
        Assert.Equal(24, response.Usage?.OutputTokenCount);
        var streamed = new System.Text.StringBuilder();
        await foreach (var update in chat.GetStreamingResponseAsync(messages, options)) streamed.Append(update.Text);
        Assert.Equal(response.Text, streamed.ToString());
    }

    [Fact]
    public async Task ModelsListsTheServedModel()
    {
        var models = Client().GetOpenAIModelClient();
        var list = (await models.GetModelsAsync()).Value;
        Assert.Equal("test-model", Assert.Single(list).Id);
    }
}
