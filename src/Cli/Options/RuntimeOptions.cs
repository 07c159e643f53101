using System.CommandLine;
using System.Globalization;
using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;

namespace Infer.Cli.Options;

/// <summary>How a model runs: threads, context, batch, repacking, device, the <c>-ngl</c> split and the KV cache types.</summary>
internal sealed class RuntimeOptions
{
    /// <summary>ggml's limit (GGML_MAX_N_THREADS): more threads than this is a typing mistake, not a configuration.</summary>
    public const int MaxThreads = 512;

    public Option<int> Threads { get; } = new Option<int>("--threads", "-t")
    {
        Description = $"CPU threads; 0 uses one per logical core ({Environment.ProcessorCount} here)", HelpName = "N", DefaultValueFactory = _ => 0,
    }.Check(CheckThreads);

    public Option<int> Context { get; } = new Option<int>("--ctx-size", "-c")
    {
        Description = "context length in tokens; 0 takes the model's, at most 4096", HelpName = "N", DefaultValueFactory = _ => 0,
    }.Check(v => v >= 0 ? null : $"--ctx-size must be 0 (the model's) or a number of tokens, got {v}");

    public Option<int> Batch { get; } = new Option<int>("--batch-size", "-b")
    {
        Description = "most tokens one forward pass evaluates", HelpName = "N", DefaultValueFactory = _ => 512,
    }.Check(v => v >= 1 ? null : $"--batch-size must be positive, got {v}");

    public Option<bool> NoRepack { get; } = new("--no-repack") { Description = "keep quantized weights in the file's layout (no 8-row interleave)" };

    public Option<string?> Device { get; } = new Option<string?>("--device", "-dev")
    {
        Description = "where to run: auto tries CUDA, then OpenCL, then the CPU [default: auto]", HelpName = "auto|cpu|cuda[:N]|opencl[:N]",
    }.Check(v => v is null || DeviceRequest.TryParse(v, out _, out string? error) ? null : $"--device: {error}")
     .Suggest("auto", "cpu", "cuda", "opencl");

    public Option<string?> GpuLayers { get; } = new Option<string?>("--gpu-layers", "-ngl", "--n-gpu-layers")
    {
        Description = "the first N layers on the GPU, the rest on the CPU; 0: CPU only; all (the default): every layer",
        HelpName = "N|all",
    }.Check(v => v is null || ParseGpuLayers(v, out _) ? null
        : $"--gpu-layers must be 0 (CPU only), a number of layers to offload or all, got {v}").Suggest("all", "0");

    public Option<string?> CacheTypeK { get; } = CacheTypeOption("--cache-type-k", "-ctk", "keys");

    public Option<string?> CacheTypeV { get; } = CacheTypeOption("--cache-type-v", "-ctv", "values");

    /// <summary>llama.cpp's -ctk / -ctv: f32, f16 or q8_0 (bench takes comma lists of them through its own options).</summary>
    private static Option<string?> CacheTypeOption(string name, string alias, string what) => new Option<string?>(name, alias)
    {
        Description = $"how the KV cache stores {what}: f16 (half the bytes of f32), f32 (exact) or q8_0 (a quarter) "
            + "[default: f16]",
        HelpName = "f32|f16|q8_0",
    }.Check(v => v is null || ParseCacheTypes(v, list: false, out _) ? null
        : $"{alias} must be {string.Join(", ", KvCacheTypes.Names)}, got '{v}'").Suggest([.. KvCacheTypes.Names]);

    /// <summary>A cache type, or (where <paramref name="list"/>) a comma list of them.</summary>
    public static bool ParseCacheTypes(string text, bool list, out KvCacheType[] types)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        types = new KvCacheType[parts.Length];
        if (parts.Length > 1 && !list) return false;
        for (int i = 0; i < parts.Length; i++)
            if (!KvCacheTypes.TryParse(parts[i], out types[i])) return false;
        return true;
    }

    /// <summary>The K cache type asked for, or null for the engine's default.</summary>
    public KvCacheType? ReadCacheTypeK(ParseResult r) => ReadCacheType(r, CacheTypeK);

    public KvCacheType? ReadCacheTypeV(ParseResult r) => ReadCacheType(r, CacheTypeV);

    private static KvCacheType? ReadCacheType(ParseResult r, Option<string?> option) =>
        r.GetValue(option) is { } text && ParseCacheTypes(text, list: false, out var types) ? types[0] : null;

    public static string? CheckThreads(int threads) => threads is >= 0 and <= MaxThreads ? null
        : $"--threads must be between 1 and {MaxThreads} (0 or absent: one per core, {Environment.ProcessorCount} here), got {threads}";

    /// <summary>"all" (llama.cpp's -ngl all) or a non-negative count; null stands for every layer.</summary>
    public static bool ParseGpuLayers(string text, out int? layers)
    {
        layers = null;
        if (text is "all" or "auto") return true;
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) || n < 0) return false;
        layers = n;
        return true;
    }

    /// <summary>
    /// The options <c>run</c>, <c>chat</c> and <c>logits</c> take; <c>bench</c> leaves out context and batch (it sets them) and has
    /// its own list forms of threads and the cache types.
    /// </summary>
    public void AddTo(Command command, bool contextAndBatch = true, bool threadsAndCacheTypes = true)
    {
        if (threadsAndCacheTypes) command.Options.Add(Threads);
        if (contextAndBatch)
        {
            command.Options.Add(Context);
            command.Options.Add(Batch);
        }
        command.Options.Add(NoRepack);
        command.Options.Add(Device);
        command.Options.Add(GpuLayers);
        if (threadsAndCacheTypes)
        {
            command.Options.Add(CacheTypeK);
            command.Options.Add(CacheTypeV);
        }
    }

    public DeviceRequest ReadDevice(ParseResult r) =>
        r.GetValue(Device) is { } d && DeviceRequest.TryParse(d, out var request, out _) ? request : DeviceRequest.Auto;

    public int? ReadGpuLayers(ParseResult r) => r.GetValue(GpuLayers) is { } text && ParseGpuLayers(text, out int? n) ? n : null;

    /// <summary>
    /// One line when -t asks for more threads than logical cores: they take turns on the cores and every step waits for
    /// the slowest.
    /// </summary>
    public static void WarnAboutThreads(int threads, TextWriter stderr)
    {
        if (threads > Environment.ProcessorCount)
            stderr.WriteLine($"warning: -t {threads} is more than the {Environment.ProcessorCount} logical cores of this machine; "
                + "the extra threads make generation slower, not faster");
    }
}
