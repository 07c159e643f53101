using Infer.Kernels.Cpu;
using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;
using Infer.Runtime.Tokenizers;

namespace Infer.Cli;

internal sealed record ModelArgs(ModelSource Source, int Threads, int Context, int Batch, bool Repack, DeviceRequest Device);

/// <summary>A model file opened for inference: the mapping, its tokenizer, and the model bound to a backend.</summary>
internal sealed class LoadedModel : IDisposable
{
    public required GgufFile File { get; init; }
    public required Tokenizer Tokenizer { get; init; }
    public required LlamaModel Model { get; init; }
    public ModelConfig Config => Model.Config;

    /// <summary>Reads the common model options (-m FILE, -t THREADS, -c CONTEXT, -b BATCH) before anything is loaded.</summary>
    public static ModelArgs ReadArgs(Args args)
    {
        var m = new ModelArgs(ModelSource.Read(args), args.Int(0, "-t", "--threads"), args.Int(0, "-c", "--ctx-size"), args.Int(512, "-b", "--batch-size"), !args.Flag("--no-repack"), ReadDevice(args));
        if (m.Threads < 0) throw new UsageException("--threads must be positive");
        if (m.Context < 0) throw new UsageException("--ctx-size must be positive");
        if (m.Batch < 1) throw new UsageException("--batch-size must be positive");
        return m;
    }

    /// <summary>--device auto|cpu|cuda[:N]|opencl[:N]|cpu-ilgpu[:N]; auto when absent.</summary>
    public static DeviceRequest ReadDevice(Args args)
    {
        string? device = args.String("--device", "-dev");
        if (device is null) return DeviceRequest.Auto;
        return DeviceRequest.TryParse(device, out var request, out string? error) ? request : throw new UsageException($"--device: {error}");
    }

    public static LoadedModel Load(ModelArgs args, TextWriter stderr, IProgress<double>? progress = null)
    {
        var (source, threads, ctx, batch, repack, device) = args;
        string path = source.Resolve(stderr);
        var file = GgufFile.Open(path);
        IBackend? backend = null;
        try
        {
            var tokenizer = Tokenizer.FromGguf(file);
            backend = CreateBackend(device, threads, batch, repack, stderr);
            var model = LlamaModel.Load(file, backend, new ModelOptions(ctx, batch), progress);
            return new LoadedModel { File = file, Tokenizer = tokenizer, Model = model };
        }
        catch
        {
            backend?.Dispose();
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The backend for <c>--device</c>: a GPU through ILGPU when one is asked for (or, by default, found), otherwise the
    /// CPU backend. When a GPU was wanted but none is usable, one line says so and the run continues on the CPU.
    /// </summary>
    public static IBackend CreateBackend(DeviceRequest device, int threads, int batch, bool repack, TextWriter stderr)
    {
        if (device.Kind != DeviceKind.Cpu)
        {
            DeviceSelection? selection = null;
            try
            {
                selection = GpuContextFactory.Select(device);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                stderr.WriteLine($"GPU unavailable ({e.GetType().Name}: {e.Message}); running on the CPU backend");
            }
            if (selection?.Device is { } gpu)
                return new GpuBackend(gpu, new GpuBackendOptions(MaxBatch: Math.Max(batch, 1)));
            if (selection?.Message is { } message) stderr.WriteLine(message);
        }
        return new CpuBackend(threads, batch, repack);
    }

    public void Dispose()
    {
        Model.Dispose();
        File.Dispose();
    }
}
