namespace Infer.Runtime.Formats;

/// <summary>BF16: one bfloat16 per element (<see cref="BFloat16Bits"/>).</summary>
public static unsafe class BF16Format
{
    public const int BlockSize = 1;
    public const int TypeSize = 2;

    /// <summary>ggml's <c>ggml_fp32_to_bf16_row_ref</c>: round to nearest even, NaN forced quiet.</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        var b = (ushort*)y;
        for (int i = 0; i < n; i++) b[i] = BFloat16Bits.FromFloat(x[i]);
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        var b = (ushort*)x;
        for (int i = 0; i < n; i++) y[i] = BFloat16Bits.ToFloat(b[i]);
    }
}
