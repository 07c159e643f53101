using Infer.Kernels.Cpu;
using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;
using Infer.Runtime.Tokenizers;

namespace Infer.Cli;

internal sealed record ModelArgs(ModelSource Source, int Threads, int Context, int Batch, bool Repack, DeviceRequest Device, int? GpuLayers);

/// <summary>
/// The backends chosen for a model: <paramref name="Gpu"/> runs the first <paramref name="GpuLayers"/> layers (all when it
/// is the only one), <paramref name="Cpu"/> the rest; either may be null, not both.
/// </summary>
internal sealed record BackendSet(GpuBackend? Gpu, IBackend? Cpu, int GpuLayers)
{
    /// <summary>Loads the model on these backends; the model owns them from here on (disposed here if loading fails).</summary>
    public LlamaModel Load(GgufFile file, ModelOptions options, IProgress<double>? progress = null)
    {
        try
        {
            return (Gpu, Cpu) switch
            {
                ({ } gpu, { } cpu) => LlamaModel.LoadSplit(file, gpu, GpuLayers, cpu, options, progress),
                ({ } gpu, null) => LlamaModel.Load(file, gpu, options, progress),
                (null, { } cpu) => LlamaModel.Load(file, cpu, options, progress),
                _ => throw new InvalidOperationException("no backend"),
            };
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Gpu?.Dispose();
        Cpu?.Dispose();
    }
}

/// <summary>A model file opened for inference: the mapping, its tokenizer, and the model bound to a backend.</summary>
internal sealed class LoadedModel : IDisposable
{
    public required GgufFile File { get; init; }
    public required Tokenizer Tokenizer { get; init; }
    public required LlamaModel Model { get; init; }
    public ModelConfig Config => Model.Config;

    /// <summary>Reads the common model options (-m FILE, -t THREADS, -c CONTEXT, -b BATCH, --device, -ngl N) before anything is loaded.</summary>
    public static ModelArgs ReadArgs(Args args)
    {
        var m = new ModelArgs(ModelSource.Read(args), args.Int(0, "-t", "--threads"), args.Int(0, "-c", "--ctx-size"), args.Int(512, "-b", "--batch-size"), !args.Flag("--no-repack"), ReadDevice(args), ReadGpuLayers(args));
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

    /// <summary>
    /// --gpu-layers N (-ngl N, as llama.cpp): the first N layers on the GPU, the rest on the CPU; 0 runs on the CPU only.
    /// Null when absent: every layer on the GPU, if there is one.
    /// </summary>
    public static int? ReadGpuLayers(Args args)
    {
        string[] names = ["--gpu-layers", "-ngl", "--n-gpu-layers"];
        if (args.String(names) is null) return null;
        int n = args.Int(0, names);
        if (n < 0) throw new UsageException($"--gpu-layers must be 0 (CPU only) or a number of layers to offload, got {n}");
        return n;
    }

    public static LoadedModel Load(ModelArgs args, TextWriter stderr, IProgress<double>? progress = null)
    {
        var (source, threads, ctx, batch, repack, device, gpuLayers) = args;
        string path = source.Resolve(stderr);
        var file = GgufFile.Open(path);
        try
        {
            var tokenizer = Tokenizer.FromGguf(file);
            int layers = ModelConfig.FromGguf(file).BlockCount;
            var backends = CreateBackends(device, gpuLayers, layers, threads, batch, repack, stderr);
            // Uploading to a GPU takes a while: without a caller's progress, a per-layer bar when stderr is a terminal.
            var bar = progress is null && backends.Gpu is not null && ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected
                ? new UploadBar(stderr, file.Tensors.Sum(t => t.ByteSize)) : null;
            var model = backends.Load(file, new ModelOptions(ctx, batch), progress ?? bar);
            bar?.Done();
            if (backends.Gpu is not null) stderr.WriteLine($"offloaded {Math.Min(backends.GpuLayers, layers)}/{layers} layers: {model.DescribePlacement()}");
            return new LoadedModel { File = file, Tokenizer = tokenizer, Model = model };
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The backends for <c>--device</c> and <c>--gpu-layers</c> for a model of <paramref name="layers"/> layers: the GPU
    /// alone when it takes every layer (or <paramref name="gpuLayers"/> is null), the GPU and the CPU when it takes some,
    /// the CPU alone when it takes none, when <c>--device cpu</c> is given, or when no GPU is usable (one line says so).
    /// </summary>
    public static BackendSet CreateBackends(DeviceRequest device, int? gpuLayers, int layers, int threads, int batch, bool repack, TextWriter stderr)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(gpuLayers ?? 0, nameof(gpuLayers)); // ReadGpuLayers has told the user already
        if (gpuLayers == 0) return new BackendSet(null, new CpuBackend(threads, batch, repack), 0);
        var gpu = OpenGpu(device, batch, stderr);
        if (gpu is null) return new BackendSet(null, new CpuBackend(threads, batch, repack), 0);
        int n = Math.Min(gpuLayers ?? layers, layers);
        if (n == layers) return new BackendSet(gpu, null, n);
        try
        {
            return new BackendSet(gpu, new CpuBackend(threads, batch, repack), n);
        }
        catch
        {
            gpu.Dispose();
            throw;
        }
    }

    /// <summary>The GPU backend <paramref name="device"/> asks for, or null (after one line saying why, when one was wanted).</summary>
    private static GpuBackend? OpenGpu(DeviceRequest device, int batch, TextWriter stderr)
    {
        if (device.Kind == DeviceKind.Cpu) return null;
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
        return null;
    }

    /// <summary>
    /// "uploading [#####.....]  50%  1.20 GiB / 2.40 GiB" redrawn in place; the model reports the fraction of weight bytes
    /// loaded after each tensor, so the bar moves with the bytes (a large output matrix is not one layer's step).
    /// </summary>
    internal sealed class UploadBar(TextWriter w, long totalBytes) : IProgress<double>
    {
        private int _shown = -1;

        public void Report(double value)
        {
            int permille = (int)Math.Clamp(value * 1000, 0, 1000);
            if (permille == _shown) return;
            _shown = permille;
            int filled = permille * 30 / 1000;
            string done = Terminal.ProgressBar.FormatSize((long)(value * totalBytes));
            w.Write($"\ruploading [{new string('#', filled)}{new string('.', 30 - filled)}] {permille / 10,3}%  {done} / "
                + $"{Terminal.ProgressBar.FormatSize(totalBytes)}   ");
            w.Flush();
        }

        public void Done() => w.WriteLine();
    }

    public void Dispose()
    {
        Model.Dispose();
        File.Dispose();
    }
}
