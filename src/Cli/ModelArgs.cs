using Infer.Engine;
using Infer.Kernels.Gpu;

namespace Infer.Cli;

/// <summary>The common model options of <c>run</c>, <c>chat</c> and <c>logits</c>, read before anything is loaded.</summary>
/// <param name="Sequences">independent KV-cache sequences: the server's slots (-np); 1 elsewhere.</param>
internal sealed record ModelArgs(
    ModelSource Source, int Threads, int Context, int Batch, bool Repack, DeviceRequest Device, int? GpuLayers, int Sequences = 1)
{
    /// <summary>-m FILE (or -hf REPO), -t THREADS, -c CONTEXT, -b BATCH, --no-repack, --device, -ngl N.</summary>
    public static ModelArgs Read(Args args)
    {
        var m = new ModelArgs(ModelSource.Read(args), args.Int(0, "-t", "--threads"), args.Int(0, "-c", "--ctx-size"),
            args.Int(512, "-b", "--batch-size"), !args.Flag("--no-repack"), ReadDevice(args), ReadGpuLayers(args));
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

    /// <summary>
    /// Resolves the model (downloading an -hf one) and loads it through the engine; its notices go to
    /// <paramref name="stderr"/>. Without a caller's <paramref name="progress"/>, uploading to a GPU shows a bar when
    /// stderr is a terminal.
    /// </summary>
    public LoadedModel Load(TextWriter stderr, IProgress<double>? progress = null)
    {
        string path = Source.Resolve(stderr);
        bool bar = progress is null && ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected;
        return LoadedModel.Load(new ModelLoadOptions(path)
        {
            Threads = Threads,
            ContextLength = Context,
            BatchSize = Batch,
            Sequences = Sequences,
            Repack = Repack,
            Device = Device,
            GpuLayers = GpuLayers,
            Progress = progress,
            UploadProgress = bar ? new UploadBar(stderr, new FileInfo(path).Length) : null,
            Log = stderr.WriteLine,
        });
    }

    /// <summary>
    /// "uploading [#####.....]  50%  1.20 GiB / 2.40 GiB" redrawn in place; the model reports the fraction of weight bytes
    /// loaded after each tensor, so the bar moves with the bytes (a large output matrix is not one layer's step). The line
    /// ends at 100%.
    /// </summary>
    /// <param name="totalBytes">the model file's size, shown as the total.</param>
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
            // The model reports 1.0 once, after the last weights: end the line before the "offloaded" notice follows.
            if (permille == 1000) w.WriteLine();
            w.Flush();
        }
    }
}
