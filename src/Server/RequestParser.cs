using System.Text.Json;
using System.Text.Json.Nodes;
using Infer.Runtime.Sampling;
using Infer.Runtime.Serving;
using Infer.Templates;

namespace Infer.Server;

internal enum Endpoint
{
    Chat,
    Completion,
}

/// <summary>A validated request: what to generate and how to answer.</summary>
/// <param name="Kind">the endpoint it came to (chat or plain completion).</param>
/// <param name="Generation">what the scheduler runs.</param>
/// <param name="Stream">answer with server-sent events, one chunk per token.</param>
/// <param name="IncludeUsage"><c>stream_options.include_usage</c>: a last chunk with the token counts.</param>
/// <param name="Logprobs">-1: none; else how many alternatives per token.</param>
internal sealed record ParsedRequest(Endpoint Kind, GenerationRequest Generation, bool Stream, bool IncludeUsage, int Logprobs);

/// <summary>
/// Reads OpenAI chat and text completion bodies (with llama.cpp server's extra sampling fields) into generation requests. Every
/// refusal is an <see cref="ApiException"/> naming the field; what we do not support yet is refused, never ignored.
/// </summary>
internal static class RequestParser
{
    private static readonly HashSet<string> Roles = ["system", "developer", "user", "assistant", "tool"];
    private const int MaxStops = 16;

    public static ParsedRequest Chat(JsonElement body, ServedModel model, ServerOptions options)
    {
        var f = Root(body);
        var messages = Messages(f);
        object? tools = null;
        if (f.Get("tools") is { } t)
        {
            if (t.ValueKind != JsonValueKind.Array) throw f.Wrong("tools", "an array");
            tools = t;
        }
        if (f.Get("tool_choice") is { } choice && !(choice.ValueKind == JsonValueKind.String && choice.GetString() is "auto" or "none"))
            throw ApiException.BadRequest("'tool_choice' other than \"auto\" or \"none\" is not supported", "tool_choice", "unsupported_value");
        bool logprobs = f.Bool("logprobs") ?? false;
        int top = (int)(f.Integer("top_logprobs", 0, 20) ?? 0);
        if (f.Get("top_logprobs") is not null && !logprobs)
            throw ApiException.BadRequest("'top_logprobs' needs 'logprobs': true", "top_logprobs", "invalid_value");

        string rendered;
        try
        {
            rendered = model.Prompt.Render(messages, tools);
        }
        catch (TemplateException e)
        {
            throw ApiException.BadRequest($"the model's chat template cannot render these messages: {e.Message}", "messages", "template_error");
        }
        var prompt = model.Prompt.Tokenize(rendered);
        return Finish(f, Endpoint.Chat, prompt, "messages", logprobs ? top : -1, model, options);
    }

    public static ParsedRequest Completion(JsonElement body, ServedModel model, ServerOptions options)
    {
        var f = Root(body);
        if (f.Bool("echo") == true) throw ApiException.BadRequest("'echo' is not supported", "echo", "unsupported_value");
        if (f.Integer("best_of") is > 1) throw ApiException.BadRequest("'best_of' greater than 1 is not supported", "best_of", "unsupported_value");
        if (f.String("suffix") is { Length: > 0 }) throw ApiException.BadRequest("'suffix' is not supported", "suffix", "unsupported_value");
        int logprobs = (int)(f.Integer("logprobs", 0, 20) ?? -1);
        var prompt = Prompt(f, model);
        return Finish(f, Endpoint.Completion, prompt, "prompt", logprobs, model, options);
    }

    private static JsonFields Root(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest("the request body must be a JSON object", null, "invalid_type");
        var f = new JsonFields(body);
        if (f.Integer("n") is { } n && n != 1)
            throw ApiException.BadRequest($"'n' must be 1 (several choices per request are not supported), got {n}", "n", "unsupported_value");
        return f;
    }

    /// <summary>The fields both endpoints share: limits, stop strings, streaming and sampling.</summary>
    private static ParsedRequest Finish(
        JsonFields f, Endpoint kind, int[] prompt, string promptField, int logprobs, ServedModel model, ServerOptions options)
    {
        int context = model.Model.ContextLength;
        if (prompt.Length == 0) throw ApiException.BadRequest($"'{promptField}' is empty", promptField, "invalid_value");
        if (prompt.Length >= context)
            throw ApiException.BadRequest(
                $"'{promptField}' comes to {prompt.Length} tokens, which does not fit the context of {context} tokens (one is kept for the reply)",
                promptField, "context_length_exceeded");
        string maxField = f.Get("max_completion_tokens") is not null ? "max_completion_tokens" : "max_tokens";
        long? max = f.Integer(maxField, 1, int.MaxValue);
        if (max > options.MaxTokensCap)
            throw ApiException.BadRequest($"'{maxField}' is {max}, more than this server allows ({options.MaxTokensCap})", maxField, "invalid_value");
        if (max > context - prompt.Length)
            throw ApiException.BadRequest($"'{maxField}' is {max}, but the context of {context} tokens leaves {context - prompt.Length} after the " +
                $"{prompt.Length}-token prompt", maxField, "context_length_exceeded");

        bool stream = f.Bool("stream") ?? false;
        bool usage = false;
        if (f.Get("stream_options") is { } so)
        {
            if (so.ValueKind != JsonValueKind.Object) throw f.Wrong("stream_options", "an object");
            usage = new JsonFields(so, "stream_options.").Bool("include_usage") ?? false;
        }
        var generation = new GenerationRequest
        {
            Prompt = prompt,
            MaxTokens = (int)(max ?? Math.Min(options.MaxTokensCap, context - prompt.Length)),
            Stop = Stops(f),
            Sampling = Sampling(f) with { Grammar = StructuredOutput.Grammar(f, GrammarCache.For(model.Tokenizer)) },
            IgnoreEos = f.Bool("ignore_eos") ?? false,
            TopLogprobs = logprobs,
            LogitBias = LogitBias(f, model.Model.VocabSize),
        };
        return new ParsedRequest(kind, generation, stream, usage, logprobs);
    }

    private static SamplerOptions Sampling(JsonFields f)
    {
        var d = new SamplerOptions();
        return new SamplerOptions
        {
            Temperature = f.Number("temperature", 0, 100) ?? d.Temperature,
            TopP = f.Number("top_p", 0, 1) ?? d.TopP,
            TopK = (int)(f.Integer("top_k", 0, int.MaxValue) ?? d.TopK),
            MinP = f.Number("min_p", 0, 1) ?? d.MinP,
            PresencePenalty = f.Number("presence_penalty", -2, 2) ?? d.PresencePenalty,
            FrequencyPenalty = f.Number("frequency_penalty", -2, 2) ?? d.FrequencyPenalty,
            RepeatPenalty = f.Number("repeat_penalty", 1e-6, 100) ?? d.RepeatPenalty,
            RepeatLastN = (int)(f.Integer("repeat_last_n", -1, 1 << 20) ?? d.RepeatLastN),
            Seed = f.Get("seed") is null ? d.Seed : unchecked((ulong)f.Integer("seed")!.Value),
        };
    }

    private static string[] Stops(JsonFields f)
    {
        if (f.Get("stop") is not { } v) return [];
        if (v.ValueKind == JsonValueKind.String) return [v.GetString()!];
        if (v.ValueKind != JsonValueKind.Array) throw f.Wrong("stop", "a string or an array of strings");
        if (v.GetArrayLength() > MaxStops) throw ApiException.BadRequest($"'stop' holds at most {MaxStops} strings", "stop", "invalid_value");
        var stops = new string[v.GetArrayLength()];
        int i = 0;
        foreach (var s in v.EnumerateArray())
            stops[i++] = s.ValueKind == JsonValueKind.String ? s.GetString()! : throw f.Wrong("stop", "a string or an array of strings");
        return stops;
    }

    /// <summary>OpenAI's logit_bias: an object from token ids (as strings) to a bias between -100 and 100.</summary>
    private static TokenBias[] LogitBias(JsonFields f, int vocabSize)
    {
        if (f.Get("logit_bias") is not { } v) return [];
        if (v.ValueKind != JsonValueKind.Object) throw f.Wrong("logit_bias", "an object from token ids to biases");
        var biases = new List<TokenBias>();
        foreach (var p in v.EnumerateObject())
        {
            if (!int.TryParse(p.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id)
                || id >= vocabSize)
                throw ApiException.BadRequest($"'logit_bias' keys must be token ids in 0..{vocabSize - 1}, got \"{p.Name}\"", "logit_bias",
                    "invalid_value");
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetDouble(out double bias) || bias is < -100 or > 100)
                throw ApiException.BadRequest($"'logit_bias.{p.Name}' must be a number between -100 and 100", "logit_bias", "invalid_value");
            biases.Add(new TokenBias(id, (float)bias));
        }
        return [.. biases];
    }

    /// <summary>The messages as the template sees them: role, content as one string, other fields (tool calls, names) passed through.</summary>
    private static List<IReadOnlyDictionary<string, object?>> Messages(JsonFields f)
    {
        if (f.Get("messages") is not { } list) throw ApiException.BadRequest("'messages' is required", "messages", "missing_field");
        if (list.ValueKind != JsonValueKind.Array) throw f.Wrong("messages", "an array");
        if (list.GetArrayLength() == 0) throw ApiException.BadRequest("'messages' must hold at least one message", "messages", "invalid_value");
        var result = new List<IReadOnlyDictionary<string, object?>>();
        int i = 0;
        foreach (var m in list.EnumerateArray())
        {
            string at = $"messages[{i++}]";
            if (m.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest($"'{at}' must be an object", at, "invalid_type");
            var mf = new JsonFields(m, at + ".");
            string role = mf.String("role") ?? throw ApiException.BadRequest($"'{at}.role' is required", at + ".role", "missing_field");
            if (!Roles.Contains(role))
                throw ApiException.BadRequest($"'{at}.role' is \"{role}\"; expected system, developer, user, assistant or tool", at + ".role",
                    "invalid_value");
            var msg = new Dictionary<string, object?>(StringComparer.Ordinal) { ["role"] = role == "developer" ? "system" : role };
            msg["content"] = Content(mf, at, required: !(role == "assistant" && mf.Get("tool_calls") is not null));
            foreach (var p in m.EnumerateObject())
                if (p.Name is not ("role" or "content")) msg[p.Name] = p.Name == "tool_calls" ? ToolCalls(p.Value) : p.Value;
            result.Add(msg);
        }
        return result;
    }

    /// <summary>
    /// Tool calls with their <c>arguments</c> as objects: OpenAI sends them as JSON text, while chat templates (written for
    /// transformers) expect a mapping and print it with tojson. Arguments that are not a JSON object stay text.
    /// </summary>
    private static object ToolCalls(JsonElement calls)
    {
        if (calls.ValueKind != JsonValueKind.Array) return calls;
        var list = JsonNode.Parse(calls.GetRawText())!.AsArray();
        foreach (var call in list)
        {
            if (call?["function"] is not JsonObject function || function["arguments"] is not JsonValue v || !v.TryGetValue(out string? text))
                continue;
            try
            {
                if (JsonNode.Parse(text) is JsonObject parsed) function["arguments"] = parsed;
            }
            catch (JsonException)
            {
                // not JSON: the template gets the text
            }
        }
        return list;
    }

    private static string? Content(JsonFields mf, string at, bool required)
    {
        if (mf.Get("content") is not { } c)
            return required ? throw ApiException.BadRequest($"'{at}.content' is required", at + ".content", "missing_field") : null;
        if (c.ValueKind == JsonValueKind.String) return c.GetString();
        if (c.ValueKind != JsonValueKind.Array) throw mf.Wrong("content", "a string or an array of content parts");
        var text = new System.Text.StringBuilder();
        int j = 0;
        foreach (var part in c.EnumerateArray())
        {
            string p = $"{at}.content[{j++}]";
            if (part.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest($"'{p}' must be an object", p, "invalid_type");
            var pf = new JsonFields(part, p + ".");
            string type = pf.String("type") ?? "text";
            if (type != "text")
                throw ApiException.BadRequest($"'{p}.type' is \"{type}\"; only text content is supported", p + ".type", "unsupported_value");
            text.Append(pf.String("text") ?? throw ApiException.BadRequest($"'{p}.text' is required", p + ".text", "missing_field"));
        }
        return text.ToString();
    }

    /// <summary>A completion prompt: a string, a list of token ids, or a list holding one of those.</summary>
    private static int[] Prompt(JsonFields f, ServedModel model)
    {
        if (f.Get("prompt") is not { } p) throw ApiException.BadRequest("'prompt' is required", "prompt", "missing_field");
        if (p.ValueKind == JsonValueKind.Array && p.GetArrayLength() == 1 && p[0].ValueKind is JsonValueKind.String or JsonValueKind.Array) p = p[0];
        if (p.ValueKind == JsonValueKind.String) return model.Prompt.TokenizeText(p.GetString()!);
        if (p.ValueKind != JsonValueKind.Array) throw f.Wrong("prompt", "a string or an array of token ids");
        var ids = new int[p.GetArrayLength()];
        int i = 0;
        foreach (var e in p.EnumerateArray())
        {
            if (e.ValueKind is JsonValueKind.String or JsonValueKind.Array)
                throw ApiException.BadRequest("several prompts in one request are not supported", "prompt", "unsupported_value");
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out ids[i]) || (uint)ids[i] >= (uint)model.Model.VocabSize)
                throw ApiException.BadRequest($"'prompt[{i}]' must be a token id in 0..{model.Model.VocabSize - 1}", $"prompt[{i}]", "invalid_value");
            i++;
        }
        return ids;
    }
}
