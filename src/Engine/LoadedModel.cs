using Infer.Runtime.Gguf;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Runtime.Sampling;
using Infer.Runtime.Tokenizers;
using Infer.Templates;

namespace Infer.Engine;

/// <summary>
/// A model file opened for inference: the mapping, its tokenizer and chat template, and the model bound to its backends.
/// The one way the CLI, the server and an in-process chat client start: <see cref="Load"/>, then sessions or chats.
/// </summary>
public sealed class LoadedModel : IDisposable
{
    private ChatTemplate? _template;

    private LoadedModel(GgufFile file, Tokenizer tokenizer, LlamaModel model)
    {
        File = file;
        Tokenizer = tokenizer;
        Model = model;
    }

    public GgufFile File { get; }
    public Tokenizer Tokenizer { get; }
    public LlamaModel Model { get; }
    public ModelConfig Config => Model.Config;

    /// <summary>The file's <c>tokenizer.chat_template</c>, or null when it carries none (<see cref="Template"/> is then the fallback).</summary>
    public string? TemplateText => ChatSession.TemplateFromGguf(File);

    /// <summary>
    /// The file's chat template, or <see cref="ChatSession.FallbackTemplate"/> when it has none. Parsed on first use, so a
    /// model whose template our Jinja engine rejects still loads and runs plain prompts.
    /// </summary>
    /// <exception cref="TemplateException">the file's template does not parse.</exception>
    public ChatTemplate Template => _template ??= ChatTemplate.Parse(TemplateText ?? ChatSession.FallbackTemplate);

    /// <summary>
    /// Opens <see cref="ModelLoadOptions.Path"/>, reads its tokenizer, picks the backends and loads the weights onto them.
    /// </summary>
    /// <exception cref="Infer.Runtime.ModelFormatException">the file is missing, not GGUF, malformed or unsupported.</exception>
    /// <exception cref="NotEnoughMemoryException">the CPU backend's KV cache for the context would not fit in memory.</exception>
    public static LoadedModel Load(ModelLoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var file = GgufFile.Open(options.Path);
        LlamaModel? model = null;
        try
        {
            var tokenizer = Tokenizer.FromGguf(file);
            var config = ModelConfig.FromGguf(file);
            int layers = config.BlockCount;
            if (options.ContextLength > config.ContextLength)
                options.Log?.Invoke($"warning: a context of {options.ContextLength} tokens is beyond the {config.ContextLength} "
                    + "the model was trained for; expect worse text past that");
            var backends = BackendSet.Create(
                options.Device, options.GpuLayers, layers, options.Threads, options.BatchSize, options.Repack, options.Log);
            if (backends.Cpu is not null)
            {
                int context = options.ContextLength > 0 ? options.ContextLength : Math.Min(config.ContextLength, 4096);
                int threads = options.Threads > 0 ? options.Threads : Environment.ProcessorCount;
                try
                {
                    MemoryBudget.Check(config, layers - (backends.Gpu is null ? 0 : backends.GpuLayers), context, options.Sequences,
                        threads, options.AvailableMemory ?? MemoryBudget.AvailableBytes());
                }
                catch
                {
                    backends.Dispose();
                    throw;
                }
            }
            var progress = backends.Gpu is not null ? Both(options.Progress, options.UploadProgress) : options.Progress;
            model = backends.Load(file, new ModelOptions(options.ContextLength, options.BatchSize, options.Sequences), progress);
            if (backends.Gpu is not null)
                options.Log?.Invoke($"offloaded {Math.Min(backends.GpuLayers, layers)}/{layers} layers: {model.DescribePlacement()}");
            return new LoadedModel(file, tokenizer, model);
        }
        catch
        {
            model?.Dispose();
            file.Dispose();
            throw;
        }
    }

    /// <summary>A KV-cache sequence of this model (0 to <see cref="LlamaModel.Sequences"/> - 1) to evaluate tokens in.</summary>
    public Session CreateSession(int sequence = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sequence);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(sequence, Model.Sequences);
        return new Session(Model, sequence);
    }

    /// <summary>A conversation on sequence 0, rendered with <paramref name="template"/> (default: <see cref="Template"/>).</summary>
    /// <param name="sampling">the sampler of every reply (a grammar in it constrains every reply).</param>
    /// <param name="systemPrompt">the system message that opens every rendering; null or empty for none.</param>
    /// <param name="template">another template than the model's (<c>--chat-template-file</c>).</param>
    /// <param name="overflow">what a full context does: stop, or drop the oldest turns.</param>
    /// <param name="maxReplyTokens">most tokens per reply; -1 until the context is full.</param>
    public ChatSession CreateChat(SamplerOptions sampling, string? systemPrompt = null, ChatTemplate? template = null,
        ContextOverflowPolicy overflow = ContextOverflowPolicy.Stop, int maxReplyTokens = -1) =>
        new(Model, Tokenizer, template ?? Template, sampling, systemPrompt) { OverflowPolicy = overflow, MaxReplyTokens = maxReplyTokens };

    public void Dispose()
    {
        Model.Dispose();
        File.Dispose();
    }

    private static IProgress<double>? Both(IProgress<double>? a, IProgress<double>? b) =>
        a is null ? b : b is null ? a : new TeeProgress(a, b);

    private sealed class TeeProgress(IProgress<double> a, IProgress<double> b) : IProgress<double>
    {
        public void Report(double value)
        {
            a.Report(value);
            b.Report(value);
        }
    }
}
