using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Runtime.Serving;
using Infer.Runtime.Templates;
using Infer.Runtime.Tokenizers;

namespace Infer.Server;

/// <summary>
/// What the server, <c>infer batch</c> and the in-process chat client serve: a model loaded with one sequence per slot, its
/// tokenizer and chat template, and the name clients see. The caller loads it (until the engine entry does); the owner, if
/// given, is disposed with it (the model file's mapping).
/// </summary>
public sealed class ServedModel : IDisposable
{
    public ServedModel(LlamaModel model, Tokenizer tokenizer, ChatTemplate? template, string name, IDisposable? owner = null)
    {
        Model = model;
        Tokenizer = tokenizer;
        Template = template ?? ChatTemplate.Parse(ChatSession.FallbackTemplate);
        Name = name;
        Owner = owner;
        Prompt = new ChatPrompt(tokenizer, Template);
    }

    public LlamaModel Model { get; }
    public Tokenizer Tokenizer { get; }
    public ChatTemplate Template { get; }
    public ChatPrompt Prompt { get; }

    /// <summary>The model id in responses and <c>/v1/models</c> (--alias, else the file name).</summary>
    public string Name { get; }

    public IDisposable? Owner { get; }

    public void Dispose()
    {
        Model.Dispose();
        Owner?.Dispose();
    }
}
