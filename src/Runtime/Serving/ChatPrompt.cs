using Infer.Runtime.Tokenizers;
using Infer.Templates;

namespace Infer.Runtime.Serving;

/// <summary>
/// Turns a conversation into prompt tokens the way <c>infer chat</c> does: the model's chat template renders the messages (and
/// tools, where the template takes them) with the generation prompt, special-token text is parsed, and BOS is added only if the
/// model wants one and the template did not write it. Thread-safe.
/// </summary>
public sealed class ChatPrompt(Tokenizer tokenizer, ChatTemplate template)
{
    private readonly string _bos = tokenizer.BosId >= 0 ? tokenizer.TokenText(tokenizer.BosId) : "";
    private readonly string _eos = tokenizer.EosId >= 0 ? tokenizer.TokenText(tokenizer.EosId) : "";

    public ChatTemplate Template => template;

    /// <summary>
    /// Renders <paramref name="messages"/> (each a dictionary with at least "role" and "content"; other keys such as
    /// "tool_calls" pass through to the template) and <paramref name="tools"/> (null: none).
    /// </summary>
    /// <exception cref="TemplateException">the template failed or refused the conversation (raise_exception).</exception>
    public string Render(IReadOnlyList<IReadOnlyDictionary<string, object?>> messages, object? tools = null, bool addGenerationPrompt = true)
    {
        var vars = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = messages,
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = _bos,
            ["eos_token"] = _eos,
        };
        if (tools is not null) vars["tools"] = tools;
        return template.Render(vars);
    }

    /// <summary>Tokens of a rendered conversation (as <see cref="Inference.ChatSession.Tokenize"/>).</summary>
    public int[] Tokenize(string rendered)
    {
        var ids = tokenizer.Encode(rendered, addSpecial: false, parseSpecial: true);
        if (tokenizer.AddBos && tokenizer.BosId >= 0 && (ids.Length == 0 || ids[0] != tokenizer.BosId))
            ids = [tokenizer.BosId, .. ids];
        return ids;
    }

    /// <summary>A plain text prompt as <c>infer run</c> tokenizes it: special tokens added, special-token text parsed.</summary>
    public int[] TokenizeText(string prompt) => tokenizer.Encode(prompt, addSpecial: true, parseSpecial: true);
}
