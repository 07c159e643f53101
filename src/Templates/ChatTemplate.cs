using System.Text;

namespace Infer.Templates;

/// <summary>One chat message as transformers passes it to a template: <c>{"role": ..., "content": ...}</c>.</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>What a render may depend on beyond its variables (the clock) and how much work it may do.</summary>
public sealed class TemplateOptions
{
    /// <summary>The clock <c>strftime_now</c> reads (local time, as Python's datetime.now()). Null means <see cref="DateTime.Now"/>.</summary>
    public Func<DateTime>? Clock { get; init; }

    /// <summary>A render that runs more loop iterations than this (all loops together) fails instead of hanging.</summary>
    public long MaxLoopIterations { get; init; } = 10_000_000;
}

/// <summary>
/// A parsed Jinja2 chat template, rendered the way transformers renders chat templates: Jinja2 3.1 semantics with
/// trim_blocks, lstrip_blocks, loop controls, a non-escaping tojson, raise_exception and strftime_now.
/// Parse once; <see cref="Render"/> is thread-safe (each call has its own state).
/// </summary>
public sealed class ChatTemplate
{
    private readonly List<Stmt> _body;
    private readonly HashSet<string> _rootStores;

    private ChatTemplate(string source, List<Stmt> body, HashSet<string> rootStores)
    {
        Source = source;
        _body = body;
        _rootStores = rootStores;
    }

    public string Source { get; }

    /// <summary>Parses a template. Throws <see cref="TemplateException"/> (kind TemplateSyntaxError) naming the line.</summary>
    public static ChatTemplate Parse(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var body = Parser.Parse(source, out var rootStores);
        return new ChatTemplate(source, body, rootStores);
    }

    /// <summary>
    /// Renders with the given variables (strings, numbers, bools, null, dictionaries, lists, JsonElement/JsonNode,
    /// <see cref="ChatMessage"/>). Throws <see cref="TemplateException"/> on a runtime error and
    /// <see cref="TemplateRaiseException"/> when the template calls raise_exception.
    /// </summary>
    public string Render(IReadOnlyDictionary<string, object?> variables, TemplateOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var vars = new Dictionary<string, object?>(variables.Count, StringComparer.Ordinal);
        foreach (var (k, v) in variables) vars[k] = TemplateValues.Normalize(v);
        var ctx = new Context(new Scope(new Scope(null, vars), stores: _rootStores), options ?? new TemplateOptions());
        var sb = new StringBuilder();
        try
        {
            Stmt.ExecBody(_body, ctx, sb);
        }
        catch (TemplateRuntimeError e)
        {
            throw new TemplateException(e.Kind, e.Message, 0, "template");
        }
        catch (InsufficientExecutionStackException)
        {
            throw new TemplateException("RecursionError", "template nests too deeply", 0, "template");
        }
        return sb.ToString();
    }

    /// <summary>Renders a conversation with the variables transformers' apply_chat_template passes.</summary>
    public string RenderChat(
        IReadOnlyList<ChatMessage> messages,
        bool addGenerationPrompt,
        string bosToken,
        string eosToken,
        IReadOnlyDictionary<string, object?>? extra = null,
        TemplateOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var vars = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (extra is not null) foreach (var (k, v) in extra) vars[k] = v;
        vars["messages"] = messages;
        vars["add_generation_prompt"] = addGenerationPrompt;
        vars["bos_token"] = bosToken;
        vars["eos_token"] = eosToken;
        return Render(vars, options);
    }
}
