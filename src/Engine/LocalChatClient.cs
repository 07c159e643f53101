using System.Collections;
using System.Runtime.CompilerServices;
using System.Text;
using Infer.Runtime.Grammar;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Runtime.Sampling;
using Infer.Runtime.Serving;
using Infer.Runtime.Tokenizers;
using Microsoft.Extensions.AI;
using AiFinishReason = Microsoft.Extensions.AI.ChatFinishReason;
using ChatTemplate = Infer.Templates.ChatTemplate;

namespace Infer.Engine;

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IChatClient"/> over a local model, without HTTP: the same chat template, scheduler and
/// sampling as the server. <see cref="ChatOptions"/> maps to our sampling (temperature, top-p, top-k, penalties, seed, stop
/// sequences, max output tokens; "min_p", "repeat_penalty", "ignore_eos" and "logit_bias" (token id to bias) through
/// AdditionalProperties). <see cref="ChatOptions.ResponseFormat"/> constrains the output with a grammar:
/// <see cref="ChatResponseFormat.Json"/> to any JSON object, a <see cref="ChatResponseFormatJson"/> with a schema to values of
/// that schema, so that <c>GetResponseAsync&lt;T&gt;</c> returns a <c>T</c>. Schemas generated from .NET types leave
/// <c>additionalProperties</c> open and use formats the grammar cannot enforce (a <see cref="Uri"/> is <c>format: uri</c>),
/// so objects that declare properties are closed where the schema does not say otherwise (properties a type does not
/// declare never reach it; llama.cpp's converter does the same), and such a format is a plain string. Other keywords the
/// grammar cannot express throw <see cref="JsonSchemaException"/> naming them. Cancelling the token frees the request's
/// slot within one step and throws <see cref="OperationCanceledException"/>.
/// </summary>
public sealed class LocalChatClient : IChatClient
{
    private readonly Scheduler _scheduler;
    private readonly ChatPrompt _prompt;
    private readonly string _name;
    private readonly GrammarCache _grammars;
    private readonly bool _ownsScheduler;

    /// <summary>
    /// A client over a model from the engine's entry (<c>LoadedModel.Load</c>, with <see cref="ModelLoadOptions.Sequences"/> =
    /// the requests to serve at once), with its own scheduler; the model stays the caller's.
    /// </summary>
    public LocalChatClient(LoadedModel model, string? name = null, SchedulerOptions? options = null)
        : this(model.Model, model.Tokenizer, model.Template, name ?? Path.GetFileNameWithoutExtension(model.File.Path), options)
    {
    }

    /// <summary>
    /// A client with its own scheduler (one slot per model sequence) over a loaded model and its tokenizer; <paramref name="template"/>
    /// null: a plain fallback template. The model stays the caller's.
    /// </summary>
    public LocalChatClient(LlamaModel model, Tokenizer tokenizer, ChatTemplate? template, string name, SchedulerOptions? options = null)
        : this(new Scheduler(model, tokenizer, options), template, name, ownsScheduler: true)
    {
    }

    /// <summary>A client sharing a scheduler (with a server, for instance); the scheduler stays the caller's.</summary>
    public LocalChatClient(Scheduler scheduler, ChatTemplate? template, string name)
        : this(scheduler, template, name, ownsScheduler: false)
    {
    }

    private LocalChatClient(Scheduler scheduler, ChatTemplate? template, string name, bool ownsScheduler)
    {
        _scheduler = scheduler;
        _prompt = new ChatPrompt(scheduler.Tokenizer, template ?? ChatTemplate.Parse(ChatSession.FallbackTemplate));
        _name = name;
        _grammars = GrammarCache.For(scheduler.Tokenizer);
        _ownsScheduler = ownsScheduler;
        Metadata = new ChatClientMetadata("infer", null, name);
    }

    public ChatClientMetadata Metadata { get; }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var stream = Submit(messages, options, cancellationToken);
        var (text, _, result) = await stream.CollectAsync(cancellationToken).ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text))
        {
            ModelId = _name,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = Finish(result),
            Usage = Usage(result),
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var stream = Submit(messages, options, cancellationToken);
        string id = Guid.NewGuid().ToString("N");
        await foreach (var t in stream.Tokens.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            if (t.Text.Length == 0) continue;
            yield return new ChatResponseUpdate(ChatRole.Assistant, t.Text) { ResponseId = id, ModelId = _name };
        }
        var result = await stream.Completion.ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(result))])
        {
            ResponseId = id,
            ModelId = _name,
            FinishReason = Finish(result),
        };
    }

    private GenerationStream Submit(IEnumerable<ChatMessage> messages, ChatOptions? options, CancellationToken cancel)
    {
        var prompt = _prompt.Tokenize(_prompt.Render(Messages(messages), Tools(options)));
        int room = _scheduler.ContextLength - prompt.Length;
        int max = options?.MaxOutputTokens ?? -1;
        if (max == 0 || max < -1) throw new ArgumentException($"MaxOutputTokens must be positive, got {max}", nameof(options));
        var request = new GenerationRequest
        {
            Prompt = prompt,
            MaxTokens = max > 0 ? Math.Min(max, Math.Max(1, room)) : -1,
            Stop = options?.StopSequences?.ToArray() ?? [],
            Sampling = Sampling(options) with { Grammar = Grammar(options?.ResponseFormat) },
            IgnoreEos = Extra(options, "ignore_eos") is true,
            LogitBias = LogitBias(Extra(options, "logit_bias")),
        };
        return _scheduler.Submit(request, cancel);
    }

    /// <summary>Objects that declare properties get <c>additionalProperties: false</c> where the schema does not say.</summary>
    private static readonly AIJsonSchemaTransformCache ClosedObjects = new(new AIJsonSchemaTransformOptions { DisallowAdditionalProperties = true });

    private GrammarConstraint? Grammar(ChatResponseFormat? format) => format switch
    {
        ChatResponseFormatJson { Schema: not null } json =>
            _grammars.JsonSchema(ClosedObjects.GetOrCreateTransformedSchema(json)!.Value, unknownFormatsAsStrings: true),
        ChatResponseFormatJson => _grammars.JsonObject(),
        _ => null,
    };

    /// <summary>A dictionary from token ids to biases (any numeric types), as OpenAI's logit_bias.</summary>
    private static TokenBias[] LogitBias(object? value)
    {
        if (value is null) return [];
        if (value is not IDictionary map) throw new ArgumentException("the \"logit_bias\" option must be a dictionary from token ids to biases");
        var biases = new List<TokenBias>();
        foreach (DictionaryEntry e in map) biases.Add(new TokenBias(Convert.ToInt32(e.Key, Invariant), Convert.ToSingle(e.Value, Invariant)));
        return [.. biases];
    }

    private static SamplerOptions Sampling(ChatOptions? o)
    {
        var d = new SamplerOptions();
        if (o is null) return d;
        return new SamplerOptions
        {
            Temperature = o.Temperature ?? d.Temperature,
            TopP = o.TopP ?? d.TopP,
            TopK = o.TopK ?? d.TopK,
            FrequencyPenalty = o.FrequencyPenalty ?? d.FrequencyPenalty,
            PresencePenalty = o.PresencePenalty ?? d.PresencePenalty,
            MinP = Extra(o, "min_p") is { } minP ? Convert.ToSingle(minP, Invariant) : d.MinP,
            RepeatPenalty = Extra(o, "repeat_penalty") is { } rp ? Convert.ToSingle(rp, Invariant) : d.RepeatPenalty,
            Seed = o.Seed is { } seed ? unchecked((ulong)seed) : d.Seed,
        };
    }

    private static readonly System.Globalization.CultureInfo Invariant = System.Globalization.CultureInfo.InvariantCulture;

    private static object? Extra(ChatOptions? o, string key) =>
        o?.AdditionalProperties is { } p && p.TryGetValue(key, out var v) ? v : null;

    /// <summary>The conversation as the chat template sees it: role and text content; other content kinds are refused.</summary>
    private static List<IReadOnlyDictionary<string, object?>> Messages(IEnumerable<ChatMessage> messages)
    {
        var list = new List<IReadOnlyDictionary<string, object?>>();
        foreach (var m in messages)
        {
            var text = new StringBuilder();
            foreach (var c in m.Contents)
            {
                if (c is TextContent t) text.Append(t.Text);
                else if (c is not UsageContent) throw new NotSupportedException($"{c.GetType().Name} in a message is not supported; only text is");
            }
            list.Add(new Dictionary<string, object?> { ["role"] = m.Role.Value, ["content"] = text.ToString() });
        }
        return list;
    }

    /// <summary>Function tools in OpenAI's shape, for templates that render tools.</summary>
    private static List<object?>? Tools(ChatOptions? o)
    {
        if (o?.Tools is not { Count: > 0 } tools) return null;
        return tools.OfType<AIFunctionDeclaration>().Select(f => (object?)new Dictionary<string, object?>
        {
            ["type"] = "function",
            ["function"] = new Dictionary<string, object?>
            {
                ["name"] = f.Name,
                ["description"] = f.Description,
                ["parameters"] = f.JsonSchema,
            },
        }).ToList();
    }

    private static AiFinishReason? Finish(GenerationResult r) => r.Reason switch
    {
        FinishReason.Stop => AiFinishReason.Stop,
        FinishReason.Length => AiFinishReason.Length,
        _ => null,
    };

    private static UsageDetails Usage(GenerationResult r) => new()
    {
        InputTokenCount = r.PromptTokens,
        OutputTokenCount = r.GeneratedTokens,
        TotalTokenCount = r.PromptTokens + r.GeneratedTokens,
        CachedInputTokenCount = r.CachedTokens,
    };

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? Metadata
        : serviceType.IsInstanceOfType(this) ? this
        : serviceType == typeof(Scheduler) ? _scheduler
        : null;

    public void Dispose()
    {
        if (_ownsScheduler) _scheduler.Dispose();
    }
}
