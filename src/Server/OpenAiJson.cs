using System.Text;
using System.Text.Json;
using Infer.Runtime.Serving;
using Infer.Runtime.Tokenizers;

namespace Infer.Server;

/// <summary>OpenAI's response objects: chat completions and their chunks, text completions, usage and log probabilities.</summary>
internal sealed class OpenAiJson(Tokenizer tokenizer, string model, Endpoint kind)
{
    public readonly string Id = (kind == Endpoint.Chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N")[..24];
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private int _textOffset;

    private void Header(Utf8JsonWriter w, string obj)
    {
        w.WriteString("id", Id);
        w.WriteString("object", obj);
        w.WriteNumber("created", _created);
        w.WriteString("model", model);
        w.WriteString("system_fingerprint", "infer");
    }

    /// <summary>The whole answer of a request that did not stream.</summary>
    public void Complete(Utf8JsonWriter w, string text, IReadOnlyList<GeneratedToken> tokens, GenerationResult r, int logprobs)
    {
        w.WriteStartObject();
        Header(w, kind == Endpoint.Chat ? "chat.completion" : "text_completion");
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        if (kind == Endpoint.Chat)
        {
            w.WriteStartObject("message");
            w.WriteString("role", "assistant");
            w.WriteString("content", text);
            w.WriteEndObject();
        }
        else
        {
            w.WriteString("text", text);
        }
        WriteLogprobs(w, tokens, logprobs);
        w.WriteString("finish_reason", r.OpenAiFinishReason);
        w.WriteEndObject();
        w.WriteEndArray();
        Usage(w, r);
        w.WriteEndObject();
    }

    /// <summary>One streamed chunk: text of a token (or the role, first), its log probabilities, or the finish reason.</summary>
    public void Chunk(Utf8JsonWriter w, string? text, GeneratedToken? token, int logprobs, string? finish, bool role = false)
    {
        w.WriteStartObject();
        Header(w, kind == Endpoint.Chat ? "chat.completion.chunk" : "text_completion");
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        if (kind == Endpoint.Chat)
        {
            w.WriteStartObject("delta");
            if (role) w.WriteString("role", "assistant");
            if (text is not null) w.WriteString("content", text);
            w.WriteEndObject();
        }
        else
        {
            w.WriteString("text", text ?? "");
        }
        if (token is { } t && logprobs >= 0) WriteLogprobs(w, [t], logprobs);
        else w.WriteNull("logprobs");
        if (finish is null) w.WriteNull("finish_reason");
        else w.WriteString("finish_reason", finish);
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>The last chunk of a stream with stream_options.include_usage: no choices, the usage.</summary>
    public void UsageChunk(Utf8JsonWriter w, GenerationResult r)
    {
        w.WriteStartObject();
        Header(w, kind == Endpoint.Chat ? "chat.completion.chunk" : "text_completion");
        w.WriteStartArray("choices");
        w.WriteEndArray();
        Usage(w, r);
        w.WriteEndObject();
    }

    private static void Usage(Utf8JsonWriter w, GenerationResult r)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", r.PromptTokens);
        w.WriteNumber("completion_tokens", r.GeneratedTokens);
        w.WriteNumber("total_tokens", r.PromptTokens + r.GeneratedTokens);
        w.WriteStartObject("prompt_tokens_details");
        w.WriteNumber("cached_tokens", r.CachedTokens);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private void WriteLogprobs(Utf8JsonWriter w, IReadOnlyList<GeneratedToken> tokens, int top)
    {
        if (top < 0)
        {
            w.WriteNull("logprobs");
            return;
        }
        w.WriteStartObject("logprobs");
        if (kind == Endpoint.Chat)
        {
            w.WriteStartArray("content");
            foreach (var t in tokens)
            {
                w.WriteStartObject();
                TokenEntry(w, t.Token, t.Logprob);
                w.WriteStartArray("top_logprobs");
                foreach (var alt in t.TopLogprobs ?? [])
                {
                    w.WriteStartObject();
                    TokenEntry(w, alt.Token, alt.Logprob);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        else
        {
            // The legacy completions layout: parallel arrays, and a map of alternatives per token.
            w.WriteStartArray("tokens");
            foreach (var t in tokens) w.WriteStringValue(TokenString(t.Token));
            w.WriteEndArray();
            w.WriteStartArray("token_logprobs");
            foreach (var t in tokens) w.WriteNumberValue(t.Logprob);
            w.WriteEndArray();
            w.WriteStartArray("top_logprobs");
            foreach (var t in tokens)
            {
                w.WriteStartObject();
                foreach (var alt in t.TopLogprobs ?? []) w.WriteNumber(TokenString(alt.Token), alt.Logprob);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("text_offset");
            foreach (var t in tokens)
            {
                w.WriteNumberValue(_textOffset);
                _textOffset += TokenString(t.Token).Length;
            }
            w.WriteEndArray();
        }
        w.WriteEndObject();
    }

    private void TokenEntry(Utf8JsonWriter w, int token, float logprob)
    {
        var bytes = tokenizer.TokenBytes(token);
        w.WriteString("token", TokenString(token));
        w.WriteNumber("logprob", logprob);
        w.WriteStartArray("bytes");
        foreach (byte b in bytes) w.WriteNumberValue(b);
        w.WriteEndArray();
    }

    /// <summary>A token's text (its bytes as UTF-8; a byte that is part of a longer character shows as U+FFFD).</summary>
    private string TokenString(int token) => Encoding.UTF8.GetString(tokenizer.TokenBytes(token));
}
