namespace Infer.Runtime.Formats;

/// <summary>F32: one float32 per element, stored as it is.</summary>
public static unsafe class F32Format
{
    public const int BlockSize = 1;
    public const int TypeSize = 4;

    public static void QuantizeRef(float* x, byte* y, int n) => Buffer.MemoryCopy(x, y, (long)n * 4, (long)n * 4);

    public static void DequantizeRef(byte* x, float* y, int n) => Buffer.MemoryCopy(x, y, (long)n * 4, (long)n * 4);
}
