using Infer.Kernels.Cpu;
using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;

namespace Infer.Engine;

/// <summary>
/// The backends chosen for a model: <paramref name="Gpu"/> runs the first <paramref name="GpuLayers"/> layers (all when it
/// is the only one), <paramref name="Cpu"/> the rest; either may be null, not both.
/// </summary>
public sealed record BackendSet(GpuBackend? Gpu, IBackend? Cpu, int GpuLayers) : IDisposable
{
    /// <summary>
    /// The backends for <paramref name="device"/> and <paramref name="gpuLayers"/> (as <see cref="ModelLoadOptions"/>) for
    /// a model of <paramref name="layers"/> layers: the GPU alone when it takes every layer (or <paramref name="gpuLayers"/>
    /// is null), the GPU and the CPU when it takes some, the CPU alone when it takes none, when the device is the CPU, or
    /// when no GPU is usable (<paramref name="log"/> then gets one line saying why, unless the request was a plain auto, without a
    /// layer count, on a machine with no GPU at all). <paramref name="repackInBackground"/>: as
    /// <see cref="ModelLoadOptions.RepackInBackground"/>. With <paramref name="file"/> given and an auto device, a model with tensors
    /// the GPU backend cannot run (none of the CPU backend's types today; a type the CPU kernels gain first) goes to the CPU backend
    /// after one line naming them (<see cref="GpuRefusal"/>)
    /// instead of failing to load; an explicit device still fails.
    /// </summary>
    public static BackendSet Create(DeviceRequest device, int? gpuLayers, int layers, int threads, int batch, bool repack,
        Action<string>? log = null, bool repackInBackground = false, GgufFile? file = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(gpuLayers ?? 0, nameof(gpuLayers));
        if (gpuLayers == 0) return new BackendSet(null, new CpuBackend(threads, batch, repack, repackInBackground), 0);
        var gpu = OpenGpu(device, batch, gpuLayers is not null ? log : null, log);
        if (gpu is null) return new BackendSet(null, new CpuBackend(threads, batch, repack, repackInBackground), 0);
        int n = Math.Min(gpuLayers ?? layers, layers);
        if (device.Kind == DeviceKind.Auto && file is not null && GpuRefusal(file, n) is { } refusal)
        {
            gpu.Dispose();
            log?.Invoke($"{refusal}; running on the CPU backend");
            return new BackendSet(null, new CpuBackend(threads, batch, repack, repackInBackground), 0);
        }
        if (n == layers) return new BackendSet(gpu, null, n);
        try
        {
            return new BackendSet(gpu, new CpuBackend(threads, batch, repack, repackInBackground), n);
        }
        catch
        {
            gpu.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Why the GPU backend cannot take the first <paramref name="gpuLayers"/> layers of <paramref name="file"/> (the types of the
    /// tensors they hold that it has no kernels for, and the first such tensor), or null when it can.
    /// </summary>
    public static string? GpuRefusal(GgufFile file, int gpuLayers)
    {
        var part = ModelPlacement.Plan(file, ModelConfig.FromGguf(file), gpuLayers).FirstOrDefault(p => p.IsFirst);
        var unsupported = part?.Tensors.Where(t => !GpuBackend.IsSupported(t.Type)).ToList() ?? [];
        if (unsupported.Count == 0) return null;
        string types = string.Join(", ", unsupported.Select(t => GgmlTypeInfo.Name(t.Type)).Distinct());
        string more = unsupported.Count > 1 ? $" and {unsupported.Count - 1} more" : "";
        return $"the GPU backend does not run {types} yet ('{unsupported[0].Name}'{more})";
    }

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

    /// <summary>
    /// The GPU backend <paramref name="device"/> asks for, or null after one line saying why; <paramref name="noGpuLog"/> gets the
    /// line instead when the request is auto and the machine has no GPU at all (null: say nothing, as a CPU build of llama.cpp).
    /// </summary>
    private static GpuBackend? OpenGpu(DeviceRequest device, int batch, Action<string>? noGpuLog, Action<string>? log)
    {
        if (device.Kind == DeviceKind.Cpu) return null;
        DeviceSelection? selection = null;
        try
        {
            selection = GpuContextFactory.Select(device);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            log?.Invoke($"GPU unavailable ({e.GetType().Name}: {e.Message}); running on the CPU backend");
        }
        if (selection?.Device is { } gpu)
            return new GpuBackend(gpu, GpuBackendOptions.ForRun(Math.Max(batch, 1)));
        if (selection?.Message is { } message)
            (device.Kind == DeviceKind.Auto && selection.NoneFound ? noGpuLog : log)?.Invoke(message);
        return null;
    }
}
