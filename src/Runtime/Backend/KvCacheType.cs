namespace Infer.Runtime.Backend;

/// <summary>How the KV cache stores each element of K (or V): llama.cpp's <c>--cache-type-k</c> / <c>--cache-type-v</c>.</summary>
public enum KvCacheType
{
    /// <summary>float32: exact.</summary>
    F32,

    /// <summary>IEEE half (round to nearest even): half the bytes of F32, llama.cpp's default.</summary>
    F16,

    /// <summary>ggml's Q8_0 blocks along the head (32 int8 values and one fp16 scale): 34 bytes per 32 values.</summary>
    Q8_0,
}

/// <summary>Names and sizes of the <see cref="KvCacheType"/>s.</summary>
public static class KvCacheTypes
{
    /// <summary>The cache type of a model loaded without an explicit choice (llama.cpp's default).</summary>
    public const KvCacheType Default = KvCacheType.F16;

    /// <summary>The names the options take, in llama.cpp's spelling.</summary>
    public static IReadOnlyList<string> Names { get; } = ["f32", "f16", "q8_0"];

    public static string Name(KvCacheType type) => type switch
    {
        KvCacheType.F32 => "f32",
        KvCacheType.F16 => "f16",
        KvCacheType.Q8_0 => "q8_0",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown KV cache type"),
    };

    /// <summary>A type from its name (case-insensitive); false for anything else.</summary>
    public static bool TryParse(string? name, out KvCacheType type)
    {
        switch (name?.Trim().ToLowerInvariant())
        {
            case "f32": type = KvCacheType.F32; return true;
            case "f16": type = KvCacheType.F16; return true;
            case "q8_0": type = KvCacheType.Q8_0; return true;
            default: type = default; return false;
        }
    }

    /// <summary>Bytes of one cached row of <paramref name="headDim"/> elements (one position of one KV head).</summary>
    public static long RowBytes(KvCacheType type, int headDim) => type switch
    {
        KvCacheType.F32 => 4L * headDim,
        KvCacheType.F16 => 2L * headDim,
        KvCacheType.Q8_0 => headDim / 32 * 34L,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown KV cache type"),
    };

    /// <summary>Why <paramref name="type"/> cannot hold heads of <paramref name="headDim"/> elements, or null when it can.</summary>
    public static string? Unsupported(KvCacheType type, int headDim) =>
        type == KvCacheType.Q8_0 && headDim % 32 != 0
            ? $"a q8_0 KV cache needs a head size that is a multiple of 32 (its block), and this model's is {headDim}; use f16 or f32"
            : null;
}
