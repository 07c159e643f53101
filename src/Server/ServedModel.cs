using Infer.Engine;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Runtime.Serving;
using Infer.Runtime.Tokenizers;
using Infer.Templates;

namespace Infer.Server;

/// <summary>
/// What the server and <c>infer batch</c> serve: a model loaded with one sequence per slot, its
/// tokenizer and chat template, and the name clients see. <see cref="From"/> takes it from the engine's <see cref="LoadedModel"/>.
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

    /// <summary>What <see cref="Dispose"/> releases instead of the bare model (a <see cref="LoadedModel"/>: model and file).</summary>
    public IDisposable? Owner { get; }

    /// <summary>
    /// A loaded model (load it with <see cref="ModelLoadOptions.Sequences"/> = the slots wanted), served under
    /// <paramref name="name"/> (default: the file name) with <paramref name="template"/> (default: the file's). Disposing
    /// the result disposes <paramref name="model"/>.
    /// </summary>
    public static ServedModel From(LoadedModel model, string? name = null, ChatTemplate? template = null) =>
        new(model.Model, model.Tokenizer, template ?? model.Template, name ?? Path.GetFileNameWithoutExtension(model.File.Path), model);

    public void Dispose()
    {
        if (Owner is not null) Owner.Dispose();
        else Model.Dispose();
    }
}
