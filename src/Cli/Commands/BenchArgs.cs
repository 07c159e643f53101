using System.Globalization;
using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;

namespace Infer.Cli.Commands;

/// <summary>
/// The options of <c>infer bench</c>, read in this one place. As llama-bench, -p, -n, -d, -t, -ctk and -ctv take comma lists
/// (<c>-p 128,512 -d 0,4096 -t 1,2</c>) and every combination runs in turn.
/// </summary>
/// <param name="Prompt">-p: prompt lengths of the pp tests (0: none).</param>
/// <param name="Gen">-n: tokens of the tg tests (0: none).</param>
/// <param name="Depth">-d: tokens already in the KV cache before each test.</param>
/// <param name="Threads">-t: CPU threads (0: every core).</param>
/// <param name="TypeK">-ctk: K cache types; null is the default (f16 on the CPU, f32 on a GPU).</param>
/// <param name="TypeV">-ctv: V cache types.</param>
/// <param name="Output">-o: md, json, jsonl or csv.</param>
internal sealed record BenchArgs(ModelSource Source, int[] Prompt, int[] Gen, int[] Depth, int[] Threads, KvCacheType?[] TypeK,
    KvCacheType?[] TypeV, int Repetitions, string Output, bool NoBandwidth, bool Repack, bool Profile, DeviceRequest Device, int? GpuLayers)
{
    /// <summary>The flags bench takes (options without a value).</summary>
    public static readonly string[] Flags = ["--no-bandwidth", "--profile"];

    public static BenchArgs Read(Args a)
    {
        var o = new BenchArgs(
            ModelSource.Read(a),
            Ints(a, 512, "-p", "--n-prompt"),
            Ints(a, 128, "-n", "--n-gen"),
            Ints(a, 0, "-d", "--n-depth"),
            Ints(a, 0, "-t", "--threads"),
            CacheTypes(a, ModelArgs.CacheTypeKNames),
            CacheTypes(a, ModelArgs.CacheTypeVNames),
            a.Int(5, "-r", "--repetitions"),
            a.String("-o", "--output") ?? "md",
            a.Flag("--no-bandwidth"),
            !a.Flag("--no-repack"),
            a.Flag("--profile"),
            ModelArgs.ReadDevice(a),
            ModelArgs.ReadGpuLayers(a));
        if (o.Repetitions < 1) throw new UsageException("-r must be >= 1");
        if (o.Output is not ("md" or "json" or "jsonl" or "csv")) throw new UsageException($"-o must be md, json, jsonl or csv, got '{o.Output}'");
        if (o.Prompt.All(p => p == 0) && o.Gen.All(n => n == 0)) throw new UsageException("nothing to run: -p and -n are all 0");
        return o;
    }

    /// <summary>A comma list of integers ≥ 0 (one value is a list of one).</summary>
    private static int[] Ints(Args a, int fallback, params string[] names)
    {
        string? s = a.String(names);
        if (s is null) return [fallback];
        var parts = s.Split(',', StringSplitOptions.TrimEntries);
        var values = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out values[i]) || values[i] < 0)
                throw new UsageException($"{names[0]} expects integers >= 0, separated by commas, got '{s}'");
        return values;
    }

    private static KvCacheType?[] CacheTypes(Args a, string[] names) =>
        ModelArgs.ReadCacheTypes(a, names, list: true) is { Length: > 0 } types ? [.. types.Select(t => (KvCacheType?)t)] : [null];
}
