using Infer.Kernels.Cpu;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;
using Infer.Runtime.Tokenizers;

namespace Infer.Cli;

/// <summary>A model file opened for inference: the mapping, its tokenizer, and the model bound to a backend.</summary>
internal sealed class LoadedModel : IDisposable
{
    public required GgufFile File { get; init; }
    public required Tokenizer Tokenizer { get; init; }
    public required LlamaModel Model { get; init; }
    public ModelConfig Config => Model.Config;

    /// <summary>Common model options: -m FILE, -t THREADS, -c CONTEXT, -b BATCH.</summary>
    public static LoadedModel Load(Args args, TextWriter stderr, bool quiet = false)
    {
        string path = args.Required("MODEL", "-m", "--model");
        int threads = args.Int(0, "-t", "--threads");
        int ctx = args.Int(0, "-c", "--ctx-size");
        int batch = args.Int(512, "-b", "--batch-size");
        if (threads < 0) throw new UsageException("--threads must be positive");
        if (ctx < 0) throw new UsageException("--ctx-size must be positive");
        if (batch < 1) throw new UsageException("--batch-size must be positive");

        var file = GgufFile.Open(path);
        IBackend? backend = null;
        try
        {
            var tokenizer = Tokenizer.FromGguf(file);
            backend = new CpuBackend(threads, batch);
            var model = LlamaModel.Load(file, backend, new ModelOptions(ctx, batch));
            return new LoadedModel { File = file, Tokenizer = tokenizer, Model = model };
        }
        catch
        {
            backend?.Dispose();
            file.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Model.Dispose();
        File.Dispose();
    }
}
