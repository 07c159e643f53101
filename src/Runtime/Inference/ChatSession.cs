using System.Diagnostics;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;
using Infer.Runtime.Sampling;
using Infer.Runtime.Tokenizers;
using Infer.Templates;

namespace Infer.Runtime.Inference;

/// <summary>What to do when a conversation no longer fits in the context.</summary>
public enum ContextOverflowPolicy
{
    /// <summary>Refuse the turn and say the context is full.</summary>
    Stop,

    /// <summary>Drop the oldest turns after the system prompt, re-evaluate, and say so.</summary>
    Shift,
}

/// <summary>The outcome of one reply.</summary>
/// <param name="Text">the reply as decoded text.</param>
/// <param name="PromptTokens">tokens evaluated before generation (only the part not already in the cache).</param>
/// <param name="GeneratedTokens">tokens sampled for the reply, the end-of-generation token not counted.</param>
/// <param name="PromptSeconds">wall time of evaluating the new prompt tokens.</param>
/// <param name="GenerationSeconds">wall time of sampling and evaluating the reply, from the first sample to the end.</param>
/// <param name="DroppedTurns">turns removed by the shift policy before this reply (0 when none).</param>
/// <param name="StopReason">"eog", "limit", "cancelled" or "context".</param>
public sealed record ChatReply(
    string Text, int PromptTokens, int GeneratedTokens, double PromptSeconds, double GenerationSeconds, int DroppedTurns, string StopReason)
{
    public double GenerationTokensPerSecond => GeneratedTokens / Math.Max(GenerationSeconds, 1e-9);
}

/// <summary>
/// A multi-turn conversation over one KV-cache sequence. Each turn renders the whole conversation with the model's chat
/// template, tokenizes it, and evaluates only the part after the prefix already in the cache.
/// </summary>
public sealed class ChatSession
{
    /// <summary>Used when a model carries no chat template: plain role-prefixed turns.</summary>
    public const string FallbackTemplate =
        "{% for m in messages %}"
        + "{% if m.role == 'system' %}{{ m.content }}\n\n"
        + "{% elif m.role == 'user' %}User: {{ m.content }}\n"
        + "{% else %}Assistant: {{ m.content }}\n{% endif %}"
        + "{% endfor %}"
        + "{% if add_generation_prompt %}Assistant:{% endif %}";

    private readonly Session _session;
    private readonly Tokenizer _tokenizer;
    private readonly ChatTemplate _template;
    private readonly Sampler _sampler;
    private readonly List<ChatMessage> _messages = [];
    private readonly string _bos, _eos;
    private string? _system;

    public ChatSession(LlamaModel model, Tokenizer tokenizer, ChatTemplate template, SamplerOptions sampling, string? systemPrompt = null)
    {
        _session = new Session(model);
        _tokenizer = tokenizer;
        _template = template;
        _sampler = new Sampler(model.VocabSize, sampling);
        _system = systemPrompt;
        _bos = tokenizer.BosId >= 0 ? tokenizer.TokenText(tokenizer.BosId) : "";
        _eos = tokenizer.EosId >= 0 ? tokenizer.TokenText(tokenizer.EosId) : "";
    }

    /// <summary>The template a GGUF file carries in <c>tokenizer.chat_template</c>, or null.</summary>
    public static string? TemplateFromGguf(GgufFile file) => file.TryGetString("tokenizer.chat_template");

    public ContextOverflowPolicy OverflowPolicy { get; init; } = ContextOverflowPolicy.Stop;

    /// <summary>Most tokens per reply (-1: until the context is full).</summary>
    public int MaxReplyTokens { get; init; } = -1;

    /// <summary>Tokens kept free for the reply when deciding whether a prompt fits.</summary>
    public int ReplyReserve { get; init; } = 64;

    public IReadOnlyList<ChatMessage> Messages => _messages;

    public Session Session => _session;

    /// <summary>The conversation as rendered for the next reply (with the generation prompt).</summary>
    public string Render(IReadOnlyList<ChatMessage> turns, bool addGenerationPrompt) =>
        _template.RenderChat(WithSystem(turns), addGenerationPrompt, _bos, _eos);

    private List<ChatMessage> WithSystem(IReadOnlyList<ChatMessage> turns)
    {
        var all = new List<ChatMessage>(turns.Count + 1);
        if (!string.IsNullOrEmpty(_system)) all.Add(new ChatMessage("system", _system));
        all.AddRange(turns);
        return all;
    }

    /// <summary>
    /// Tokens of a rendered conversation: special-token text is parsed; BOS is added only if the model wants one and the
    /// template did not write it.
    /// </summary>
    public int[] Tokenize(string rendered)
    {
        var ids = _tokenizer.Encode(rendered, addSpecial: false, parseSpecial: true);
        if (_tokenizer.AddBos && _tokenizer.BosId >= 0 && (ids.Length == 0 || ids[0] != _tokenizer.BosId))
            ids = [_tokenizer.BosId, .. ids];
        return ids;
    }

    /// <summary>Forgets the conversation (the system prompt stays) and the cache.</summary>
    public void Reset()
    {
        _messages.Clear();
        _session.Clear();
        _sampler.Reset();
    }

    /// <summary>Replaces the system prompt; the next reply re-evaluates from the first token that changed.</summary>
    public void SetSystemPrompt(string? text) => _system = string.IsNullOrWhiteSpace(text) ? null : text;

    /// <summary>
    /// Adds a user turn and generates the assistant's reply, streaming decoded text to <paramref name="onText"/>
    /// (never half a UTF-8 character). Cancellation stops the reply within one token; the partial reply is kept.
    /// </summary>
    /// <exception cref="ContextFullException">
    /// the conversation does not fit and the policy is <see cref="ContextOverflowPolicy.Stop"/> (the turn is not added).
    /// </exception>
    public ChatReply Respond(string userText, Action<string> onText, CancellationToken cancel = default)
    {
        _messages.Add(new ChatMessage("user", userText));
        int[] prompt;
        int dropped = 0;
        while (true)
        {
            prompt = Tokenize(Render(_messages, addGenerationPrompt: true));
            int room = _session.ContextLength - Math.Min(ReplyReserve, _session.ContextLength / 4);
            if (prompt.Length <= room) break;
            // Too long: under Shift drop the oldest turn pair (keeping the system prompt and the new user turn).
            if (OverflowPolicy == ContextOverflowPolicy.Shift && _messages.Count > 1)
            {
                int remove = Math.Min(2, _messages.Count - 1);
                _messages.RemoveRange(0, remove);
                dropped += remove;
                continue;
            }
            _messages.RemoveAt(_messages.Count - 1);
            throw new ContextFullException(_session.ContextLength);
        }

        long t0 = Stopwatch.GetTimestamp();
        int evaluated = _session.Sync(prompt);
        double promptSeconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        _sampler.Reset();
        foreach (int t in prompt.AsSpan(Math.Max(0, prompt.Length - 64))) _sampler.Accept(t);

        var decoder = _tokenizer.CreateStreamingDecoder();
        var reply = new System.Text.StringBuilder();
        string reason = "limit";
        int generated = 0;
        long t1 = Stopwatch.GetTimestamp();
        while (MaxReplyTokens < 0 || generated < MaxReplyTokens)
        {
            if (cancel.IsCancellationRequested) { reason = "cancelled"; break; }
            int next = _sampler.Sample(_session.Logits);
            if (_tokenizer.IsEndOfGeneration(next)) { reason = "eog"; break; }
            _sampler.Accept(next);
            string piece = decoder.Append(next);
            reply.Append(piece);
            if (piece.Length > 0) onText(piece);
            generated++;
            if (_session.Count >= _session.ContextLength) { reason = "context"; break; }
            _session.Append(next);
        }
        string tail = decoder.Flush();
        if (tail.Length > 0) { reply.Append(tail); onText(tail); }
        double genSeconds = Stopwatch.GetElapsedTime(t1).TotalSeconds;
        _messages.Add(new ChatMessage("assistant", reply.ToString()));
        return new ChatReply(reply.ToString(), evaluated, generated, promptSeconds, genSeconds, dropped, reason);
    }
}
