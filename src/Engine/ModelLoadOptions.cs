using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;

namespace Infer.Engine;

/// <summary>
/// How <see cref="LoadedModel.Load"/> opens a model: the file, the backends (device, <c>-ngl</c> split, threads,
/// repacking) and the model's buffers (context, batch, sequences). The defaults are the CLI's.
/// </summary>
/// <param name="Path">A GGUF file on disk (resolving <c>-hf</c> references is the caller's business).</param>
public sealed record ModelLoadOptions(string Path)
{
    /// <summary>CPU backend worker threads; 0 uses every core.</summary>
    public int Threads { get; init; }

    /// <summary>KV-cache positions per sequence; 0 takes the model's context length, at most 4096.</summary>
    public int ContextLength { get; init; }

    /// <summary>Most tokens one forward pass evaluates (prompts are fed in chunks of this size).</summary>
    public int BatchSize { get; init; } = 512;

    /// <summary>KV-cache sequences (independent conversations) the model holds at once.</summary>
    public int Sequences { get; init; } = 1;

    /// <summary>Repack quantized weights at load into the CPU kernels' interleaved 8-row layout.</summary>
    public bool Repack { get; init; } = true;

    /// <summary>
    /// Make the repacked copies on a background thread after the load, not during it (the default): the model answers at once,
    /// its matmuls on the file's layout until each weight's copy is ready (the same results; prompts run slower meanwhile).
    /// False makes the load wait for every copy, as benchmarks want.
    /// </summary>
    public bool RepackInBackground { get; init; } = true;

    /// <summary>
    /// How the KV cache stores keys (llama.cpp's <c>--cache-type-k</c>). Null: f16, llama.cpp's default, on either backend; an
    /// explicit type the chosen backend cannot keep fails the load with <see cref="NotSupportedException"/> before any weight
    /// is read (both backends keep f32, f16 and q8_0).
    /// </summary>
    public KvCacheType? CacheTypeK { get; init; }

    /// <summary>How the KV cache stores values (<c>--cache-type-v</c>), as <see cref="CacheTypeK"/>.</summary>
    public KvCacheType? CacheTypeV { get; init; }

    /// <summary>Where to run: <c>auto</c> tries CUDA, then OpenCL, then falls back to the CPU backend.</summary>
    public DeviceRequest Device { get; init; } = DeviceRequest.Auto;

    /// <summary>
    /// As llama.cpp's <c>-ngl</c>: the token embedding and the first N layers on the GPU, the rest on the CPU; 0 runs on
    /// the CPU only and never looks for a GPU; null (or at least the layer count) puts every layer on the GPU.
    /// </summary>
    public int? GpuLayers { get; init; }

    /// <summary>
    /// Optional: a decorator put around the CPU backend before any weight loads (<see cref="Infer.Runtime.Imatrix.ImatrixBackend"/>
    /// for <c>infer imatrix</c>); the model then runs through what it returns.
    /// </summary>
    public Func<IBackend, IBackend>? WrapCpuBackend { get; init; }

    /// <summary>Load progress from 0 to 1: the fraction of the weight bytes handed to the backends, after each tensor.</summary>
    public IProgress<double>? Progress { get; init; }

    /// <summary>
    /// The same reports as <see cref="Progress"/>, but only when a GPU takes layers: for callers that show progress only
    /// for the slow upload to a device.
    /// </summary>
    public IProgress<double>? UploadProgress { get; init; }

    /// <summary>
    /// One-line notices for the user: why a GPU that was asked for is not used, which layers went where, and that the GPU keeps
    /// an f32 KV cache where the default is f16.
    /// </summary>
    public Action<string>? Log { get; init; }

    /// <summary>Host memory the KV cache may take; null measures what the machine has available.</summary>
    public long? AvailableMemory { get; init; }

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(Path); // an empty or bad path is GgufFile.Open's to report
        ArgumentOutOfRangeException.ThrowIfNegative(Threads);
        ArgumentOutOfRangeException.ThrowIfNegative(ContextLength);
        ArgumentOutOfRangeException.ThrowIfLessThan(BatchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(Sequences, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(GpuLayers ?? 0, nameof(GpuLayers));
    }
}
