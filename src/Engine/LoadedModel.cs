using Infer.Runtime.Backend;
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
    /// Opens <see cref="ModelLoadOptions.Path"/>, reads its tokenizer, picks the backends and loads the weights onto them. The
    /// tokenizer (a few hundred thousand strings for a 128k vocabulary: a quarter of a second) is built on another thread while
    /// the weights load and repack; its errors still come first.
    /// </summary>
    /// <exception cref="Infer.Runtime.ModelFormatException">the file is missing, not GGUF, malformed or unsupported.</exception>
    /// <exception cref="NotEnoughMemoryException">the CPU backend's KV cache for the context would not fit in memory.</exception>
    public static LoadedModel Load(ModelLoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var file = GgufFile.Open(options.Path);
        LlamaModel? model = null;
        var tokenizerTask = Task.Run(() => Tokenizer.FromGguf(file));
        try
        {
            var config = ModelConfig.FromGguf(file);
            int layers = config.BlockCount;
            if (options.ContextLength > config.ContextLength)
                options.Log?.Invoke($"warning: a context of {options.ContextLength} tokens is beyond the {config.ContextLength} "
                    + "the model was trained for; expect worse text past that");
            var backends = BackendSet.Create(
                options.Device, options.GpuLayers, layers, options.Threads, options.BatchSize, options.Repack, options.Log,
                options.RepackInBackground, file);
            if (options.WrapCpuBackend is { } wrap && backends.Cpu is { } cpu) backends = backends with { Cpu = wrap(cpu) };
            if (backends.Cpu is not null)
            {
                int context = options.ContextLength > 0 ? options.ContextLength : Math.Min(config.ContextLength, 4096);
                int threads = options.Threads > 0 ? options.Threads : Environment.ProcessorCount;
                try
                {
                    // the CPU backend stores every type, so its cache is what was asked, or the default
                    MemoryBudget.Check(config, layers - (backends.Gpu is null ? 0 : backends.GpuLayers), context, options.Sequences,
                        threads, options.AvailableMemory ?? MemoryBudget.AvailableBytes(),
                        options.CacheTypeK ?? KvCacheTypes.Default, options.CacheTypeV ?? KvCacheTypes.Default);
                }
                catch
                {
                    backends.Dispose();
                    throw;
                }
            }
            var progress = backends.Gpu is not null ? Both(options.Progress, options.UploadProgress) : options.Progress;
            model = backends.Load(file, new ModelOptions(options.ContextLength, options.BatchSize, options.Sequences,
                options.CacheTypeK, options.CacheTypeV), progress);
            if (backends.Gpu is not null)
            {
                options.Log?.Invoke($"offloaded {Math.Min(backends.GpuLayers, layers)}/{layers} layers: {model.DescribePlacement()}");
            }
            var loaded = new LoadedModel(file, tokenizerTask.GetAwaiter().GetResult(), model);
            ReturnLoadGarbage();
            return loaded;
        }
        catch (Exception error)
        {
            model?.Dispose();
            // the tokenizer's thread reads the file: let it finish first, and report its error as loading in order would have
            Exception? tokenizerError = null;
            try
            {
                tokenizerTask.GetAwaiter().GetResult();
            }
            catch (Exception e)
            {
                tokenizerError = e;
            }
            file.Dispose();
            if (tokenizerError is not null && !ReferenceEquals(tokenizerError, error))
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(tokenizerError);
            throw;
        }
    }

    /// <summary>
    /// One compacting collection once the model is loaded: parsing a 128k vocabulary and building its tokenizer leave tens of MB of
    /// temporary strings and lists that the GC would otherwise keep committed (about 20 MB of resident memory for 20 ms).
    /// </summary>
    internal static void ReturnLoadGarbage() => GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);

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
