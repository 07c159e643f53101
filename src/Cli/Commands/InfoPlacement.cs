using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;

namespace Infer.Cli.Commands;

/// <summary>
/// The placement lines of <c>infer info</c>: which device <c>--device</c> would pick (listed, not opened) and where
/// <c>-ngl N</c> puts each part of the model, with its weight and KV-cache bytes; no weight is loaded.
/// </summary>
internal static class InfoPlacement
{
    /// <param name="file">the model file; only its tensor table is read.</param>
    /// <param name="config">the model's hyperparameters (layer count, KV heads, context).</param>
    /// <param name="device">the <c>--device</c> value.</param>
    /// <param name="gpuLayers"><c>-ngl</c>: layers on the GPU; null for all, 0 for the CPU only.</param>
    /// <param name="contextLength"><c>-c</c>: KV positions (0: the model's own, at most 4096).</param>
    /// <param name="listDevices">the accelerators present (<see cref="GpuContextFactory.ListDevices"/>; tests pass their own).</param>
    public static IEnumerable<string> Lines(GgufFile file, ModelConfig config, DeviceRequest device, int? gpuLayers, int contextLength,
        Func<IReadOnlyList<GpuDeviceInfo>> listDevices)
    {
        GpuDeviceInfo? gpu = null;
        string? why = null;
        if (gpuLayers == 0) why = "-ngl 0";
        else if (device.Kind == DeviceKind.Cpu) why = "--device cpu";
        else
        {
            try
            {
                (gpu, why) = GpuContextFactory.Choose(device, listDevices());
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                why = $"GPU discovery failed: {e.Message}";
            }
        }
        if (gpu is not null && device.Kind == DeviceKind.Auto
            && Infer.Engine.BackendSet.GpuRefusal(file, Math.Min(gpuLayers ?? config.BlockCount, config.BlockCount)) is { } refusal)
            (gpu, why) = (null, $"{refusal}; --device auto takes the CPU backend");
        int n = gpu is null ? 0 : Math.Min(gpuLayers ?? config.BlockCount, config.BlockCount);
        int ctx = contextLength > 0 ? contextLength : Math.Min(config.ContextLength, 4096);
        var parts = ModelPlacement.Plan(file, config, n, ctx, kType: KvCacheTypes.Default, vType: KvCacheTypes.Default);
        string head = gpu is null ? $"CPU backend ({why?.Replace("; running on the CPU backend", "")})"
            : $"{gpu.Id} {gpu.Name} ({Units.FormatSize(gpu.MemoryBytes)}), {n}/{config.BlockCount} layers";
        yield return $"placement:       {head}; KV cache of {ctx} positions";
        foreach (var p in parts)
        {
            bool onGpu = gpu is not null && p.IsFirst;
            string where = onGpu ? gpu!.Id : "cpu";
            yield return $"  {where,-13} {p.Describe()}: {Units.FormatSize(p.WeightBytes)} of weights{(onGpu ? "" : " (mapped)")}"
                + $" + {Units.FormatSize(p.KvCacheBytes)} KV cache";
            if (!onGpu) continue;
            var unsupported = p.Tensors.Where(t => !GpuBackend.IsSupported(t.Type)).ToList();
            if (unsupported.Count > 0)
                yield return $"  the GPU backend does not run {string.Join(", ", unsupported.Select(t => GgmlTypeInfo.Name(t.Type)).Distinct())} "
                    + $"('{unsupported[0].Name}'{(unsupported.Count > 1 ? $" and {unsupported.Count - 1} more" : "")}): loading would fail; "
                    + "use -ngl 0 or --device cpu";
            long needed = p.WeightBytes + p.KvCacheBytes;
            if (needed > gpu!.MemoryBytes)
                yield return $"  {Units.FormatSize(needed)} do not fit in {gpu.Id}'s {Units.FormatSize(gpu.MemoryBytes)}: "
                    + "lower -ngl or -c";
        }
    }
}
