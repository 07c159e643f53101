namespace Infer.Runtime.Formats;

/// <summary>F16: one IEEE half per element (<see cref="HalfBits"/>).</summary>
public static unsafe class F16Format
{
    public const int BlockSize = 1;
    public const int TypeSize = 2;

    /// <summary>ggml's <c>ggml_fp32_to_fp16_row</c>: round to nearest even.</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        var h = (ushort*)y;
        for (int i = 0; i < n; i++) h[i] = HalfBits.FromFloat(x[i]);
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        var h = (ushort*)x;
        for (int i = 0; i < n; i++) y[i] = HalfBits.ToFloat(h[i]);
    }
}
