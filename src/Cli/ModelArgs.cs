using Infer.CommandLine;
using Infer.Engine;
using Infer.Kernels.Gpu;

namespace Infer.Cli;

/// <summary>The common model options of <c>run</c>, <c>chat</c> and <c>logits</c>, read before anything is loaded.</summary>
internal sealed record ModelArgs(ModelSource Source, int Threads, int Context, int Batch, bool Repack, DeviceRequest Device, int? GpuLayers)
{
    /// <summary>-m FILE (or -hf REPO), -t THREADS, -c CONTEXT, -b BATCH, --no-repack, --device, -ngl N.</summary>
    public static ModelArgs Read(Args args)
    {
        var m = new ModelArgs(ModelSource.Read(args), args.Int(0, "-t", "--threads"), args.Int(0, "-c", "--ctx-size"),
            args.Int(512, "-b", "--batch-size"), !args.Flag("--no-repack"), ReadDevice(args), ReadGpuLayers(args));
        CheckThreads(m.Threads);
        if (m.Context < 0) throw new UsageException("--ctx-size must be positive");
        if (m.Batch < 1) throw new UsageException("--batch-size must be positive");
        return m;
    }

    /// <summary>ggml's limit (GGML_MAX_N_THREADS): more threads than this is a typing mistake, not a configuration.</summary>
    public const int MaxThreads = 512;

    /// <summary>-t: 0 (every core) up to <see cref="MaxThreads"/>.</summary>
    public static void CheckThreads(int threads)
    {
        if (threads is < 0 or > MaxThreads)
            throw new UsageException($"--threads must be between 1 and {MaxThreads} (0 or absent: one per core, {Environment.ProcessorCount} here), got {threads}");
    }

    /// <summary>One line when -t asks for more threads than logical cores: they take turns on the cores and every step waits for the slowest.</summary>
    public static void WarnAboutThreads(int threads, TextWriter stderr)
    {
        if (threads > Environment.ProcessorCount)
            stderr.WriteLine($"warning: -t {threads} is more than the {Environment.ProcessorCount} logical cores of this machine; "
                + "the extra threads make generation slower, not faster");
    }

    /// <summary>-n/--n-predict: a count of tokens, or -1 for no limit (until the context is full or the model stops).</summary>
    public static int ReadPredict(Args a, int fallback)
    {
        int n = a.Int(fallback, "-n", "--n-predict");
        if (n < -1) throw new UsageException($"-n must be a number of tokens, or -1 for no limit; got {n}");
        return n;
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

    /// <summary>
    /// Resolves the model (downloading an -hf one) and loads it through the engine; its notices go to
    /// <paramref name="stderr"/>. Without a caller's <paramref name="progress"/>, uploading to a GPU shows a bar when
    /// stderr is a terminal.
    /// </summary>
    public LoadedModel Load(TextWriter stderr, IProgress<double>? progress = null)
    {
        WarnAboutThreads(Threads, stderr);
        string path = Source.Resolve(stderr);
        bool bar = progress is null && ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected;
        return LoadedModel.Load(new ModelLoadOptions(path)
        {
            Threads = Threads,
            ContextLength = Context,
            BatchSize = Batch,
            Repack = Repack,
            Device = Device,
            GpuLayers = GpuLayers,
            Progress = progress,
            UploadProgress = bar ? ProgressBar.ForStandardError().Fraction("uploading to the GPU") : null,
            Log = stderr.WriteLine,
        });
    }
}
