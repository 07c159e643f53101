using System.Globalization;
using Infer.Runtime.Backend;
using Infer.Runtime.Model;

namespace Infer.Engine;

/// <summary>
/// A model's context needs more memory than the machine has: thrown before anything is allocated, with how much the KV
/// cache needs and how much there is, so the user can pick a smaller <c>-c</c>.
/// </summary>
public sealed class NotEnoughMemoryException(string message, long requiredBytes, long availableBytes) : Exception(message)
{
    public long RequiredBytes { get; } = requiredBytes;
    public long AvailableBytes { get; } = availableBytes;
}

/// <summary>What a context costs in host memory, checked against what is available before the model allocates it.</summary>
public static class MemoryBudget
{
    /// <summary>
    /// Bytes of the CPU backend's KV cache: K and V in their types for every layer it holds, sequence and position
    /// ((sequences, layers, kvHeads, context) rows of headDim elements, twice), plus one row of attention scores per position
    /// and thread.
    /// </summary>
    public static long KvCacheBytes(ModelConfig config, int layers, int context, int sequences, int threads,
        KvCacheType kType = KvCacheType.F32, KvCacheType vType = KvCacheType.F32)
    {
        long kv = new KvCacheConfig(layers, sequences, context, config.HeadCountKv, config.HeadDim, kType, vType).Bytes;
        long scores = (long)context * Math.Max(threads, 1) * sizeof(float);
        return kv + scores;
    }

    /// <summary>
    /// Memory the process can still take: the kernel's MemAvailable on Linux (free memory plus reclaimable cache), capped by
    /// the GC's limit (a container's), else the GC's view of physical memory.
    /// </summary>
    public static long AvailableBytes()
    {
        long limit = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        long? meminfo = ReadMemAvailable();
        return meminfo is long m && m > 0 ? Math.Min(m, limit) : limit;
    }

    /// <exception cref="NotEnoughMemoryException">the KV cache of <paramref name="layers"/> CPU layers does not fit.</exception>
    internal static void Check(ModelConfig config, int layers, int context, int sequences, int threads, long available,
        KvCacheType kType = KvCacheType.F32, KvCacheType vType = KvCacheType.F32)
    {
        long need = KvCacheBytes(config, layers, context, sequences, threads, kType, vType);
        if (need <= available) return;
        long kRow = KvCacheTypes.RowBytes(kType, config.HeadDim), vRow = KvCacheTypes.RowBytes(vType, config.HeadDim);
        string types = kType == vType ? KvCacheTypes.Name(kType) : $"{KvCacheTypes.Name(kType)} K, {KvCacheTypes.Name(vType)} V";
        throw new NotEnoughMemoryException(
            $"a context of {context} tokens needs {FormatGiB(need)} for the KV cache ({layers} layers x {config.HeadCountKv} KV heads x "
            + $"({kRow} + {vRow}) bytes per token, {types}{(sequences > 1 ? $", {sequences} sequences" : "")}), but only "
            + $"{FormatGiB(available)} of memory is available: use a smaller -c "
            + $"(at most about {MaxContext(config, layers, sequences, threads, available, kType, vType)})",
            need, available);
    }

    private static long MaxContext(ModelConfig config, int layers, int sequences, int threads, long available, KvCacheType kType,
        KvCacheType vType)
    {
        long perToken = KvCacheBytes(config, layers, 1, sequences, threads, kType, vType);
        return Math.Max(available / perToken / 1024 * 1024, 0);
    }

    private static string FormatGiB(long bytes) =>
        bytes >= 1L << 30 ? string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F1} GiB")
        : string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):F1} MiB");

    private static long? ReadMemAvailable()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal)) continue;
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return parts.Length >= 2 && long.TryParse(parts[1], CultureInfo.InvariantCulture, out long kb) ? kb * 1024 : null;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return null;
    }
}
