using System.CommandLine;
using Infer.Cli.Options;
using Infer.Engine;
using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;

namespace Infer.Cli;

/// <summary>The common model options of <c>run</c>, <c>chat</c> and <c>logits</c>, read before anything is loaded.</summary>
/// <param name="Source">where the model file comes from (<c>-m</c> or <c>-hf</c>).</param>
/// <param name="Threads"><c>-t</c>: CPU worker threads.</param>
/// <param name="Context"><c>-c</c>: KV positions per sequence (0: the model's own).</param>
/// <param name="Batch"><c>-b</c>: most prompt tokens per forward pass.</param>
/// <param name="Repack">repack quantized weights into the 8-row layout at load (false with <c>--no-repack</c>).</param>
/// <param name="Device"><c>--device</c>.</param>
/// <param name="GpuLayers"><c>-ngl</c>: layers on the GPU; null for all.</param>
/// <param name="Sequences">independent KV-cache sequences: the server's slots (-np); 1 elsewhere.</param>
/// <param name="CacheTypeK">-ctk; null: the engine's default (f16).</param>
/// <param name="CacheTypeV">-ctv; null: the engine's default.</param>
internal sealed record ModelArgs(
    ModelSource Source, int Threads, int Context, int Batch, bool Repack, DeviceRequest Device, int? GpuLayers, int Sequences = 1,
    KvCacheType? CacheTypeK = null, KvCacheType? CacheTypeV = null)
{
    public static ModelArgs Read(ParseResult r, ModelSourceOptions source, RuntimeOptions runtime) =>
        new(source.Read(r), r.GetValue(runtime.Threads), r.GetValue(runtime.Context), r.GetValue(runtime.Batch), !r.GetValue(runtime.NoRepack),
            runtime.ReadDevice(r), runtime.ReadGpuLayers(r), CacheTypeK: runtime.ReadCacheTypeK(r), CacheTypeV: runtime.ReadCacheTypeV(r));

    /// <summary>
    /// Resolves the model (downloading an -hf one) and loads it through the engine; its notices go to
    /// <paramref name="stderr"/>. Without a caller's <paramref name="progress"/>, uploading to a GPU shows a bar when
    /// stderr is a terminal.
    /// </summary>
    /// <param name="stderr">notices.</param>
    /// <param name="progress">the load's progress, or null.</param>
    /// <param name="wrapCpu">a decorator around the CPU backend (<see cref="ModelLoadOptions.WrapCpuBackend"/>), or null.</param>
    /// <param name="repackInBackground">false: the load waits for the repacked copies (a batch job, not an interactive one).</param>
    public LoadedModel Load(TextWriter stderr, IProgress<double>? progress = null, Func<IBackend, IBackend>? wrapCpu = null,
        bool repackInBackground = true)
    {
        RuntimeOptions.WarnAboutThreads(Threads, stderr);
        string path = Source.Resolve(stderr);
        bool bar = progress is null && ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected;
        return LoadedModel.Load(new ModelLoadOptions(path)
        {
            Threads = Threads,
            ContextLength = Context,
            BatchSize = Batch,
            Sequences = Sequences,
            Repack = Repack,
            RepackInBackground = repackInBackground,
            Device = Device,
            GpuLayers = GpuLayers,
            CacheTypeK = CacheTypeK,
            CacheTypeV = CacheTypeV,
            Progress = progress,
            // The model reports the fraction of weight bytes loaded after each tensor: shown against the file's size.
            UploadProgress = bar ? ProgressBar.ForStandardError().Fraction("uploading to the GPU", new FileInfo(path).Length) : null,
            Log = stderr.WriteLine,
            WrapCpuBackend = wrapCpu,
        });
    }
}
