using Infer.Runtime.Gguf;

namespace Infer.Runtime.Formats;

/// <summary>
/// Float32 rows ↔ any format of this layer, keyed by <see cref="GgmlType"/>, through the scalar references (byte-identical to ggml's
/// <c>quantize_row_*_ref</c> and <c>dequantize_row_*</c>): for the converter, host-side decoding of small tensors, and tests.
/// </summary>
public static unsafe class RowCodec
{
    /// <summary>The types <see cref="Quantize"/> and <see cref="Dequantize"/> accept.</summary>
    public static readonly IReadOnlyList<GgmlType> Types =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS, GgmlType.Q8_1,
        GgmlType.Q8_K,
    ];

    public static bool IsSupported(GgmlType type) => Types.Contains(type);

    /// <summary>
    /// Quantizes <paramref name="src"/> (whole blocks of <paramref name="type"/>) with ggml's reference quantizer.
    /// <paramref name="dst"/> must hold exactly the quantized bytes.
    /// </summary>
    /// <exception cref="NotSupportedException">The type is not one of <see cref="Types"/>; the message names it.</exception>
    /// <exception cref="ArgumentException">The lengths are not whole blocks, or do not match each other.</exception>
    public static void Quantize(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        var (bs, ts) = Layout(type);
        CheckSizes(type, src.Length, dst.Length, bs, ts);
        if (src.Length == 0) return;
        fixed (float* x = src)
        fixed (byte* y = dst)
        {
            int n = src.Length;
            switch (type)
            {
                case GgmlType.F32: F32Format.QuantizeRef(x, y, n); break;
                case GgmlType.F16: F16Format.QuantizeRef(x, y, n); break;
                case GgmlType.BF16: BF16Format.QuantizeRef(x, y, n); break;
                case GgmlType.Q8_0: Q8_0Format.QuantizeRef(x, y, n); break;
                case GgmlType.Q8_1: Q8_1Format.QuantizeRef(x, y, n); break;
                case GgmlType.Q8_K: Q8_KFormat.QuantizeRef(x, y, n); break;
                case GgmlType.Q4_0: Q4_0Format.QuantizeRef(x, y, n); break;
                case GgmlType.Q4_1: Q4_1Format.QuantizeRef(x, y, n); break;
                case GgmlType.Q5_0: Q5_0Format.QuantizeRef(x, y, n); break;
                case GgmlType.Q5_1: Q5_1Format.QuantizeRef(x, y, n); break;
                case GgmlType.Q2_K: Q2_KFormat.QuantizeRef(x, y, n); break;
                case GgmlType.Q3_K: Q3_KFormat.QuantizeRef(x, y, n); break;
                case GgmlType.Q4_K: Q4_KFormat.QuantizeRef(x, y, n); break;
                case GgmlType.Q5_K: Q5_KFormat.QuantizeRef(x, y, n); break;
                case GgmlType.Q6_K: Q6_KFormat.QuantizeRef(x, y, n); break;
                case GgmlType.IQ4_NL: IQ4Format.QuantizeNl(x, y, n); break;
                case GgmlType.IQ4_XS: IQ4Format.QuantizeXs(x, y, n); break;
            }
        }
    }

    /// <summary>
    /// Quantizes whole rows of <paramref name="rowLength"/> values as ggml's <c>quantize_*</c> does with an importance matrix
    /// (<c>quant_weights</c>): <paramref name="importance"/> holds one weight per column, the same for every row. Empty, or a type
    /// ggml quantizes without weights (floats, Q8_0), gives the reference quantizer of <see cref="Quantize"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The lengths do not fit whole rows, or the weights do not fit a row.</exception>
    public static void QuantizeWeighted(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst, int rowLength, ReadOnlySpan<float> importance)
    {
        if (importance.IsEmpty || !UsesImportance(type))
        {
            Quantize(type, src, dst);
            return;
        }
        var (bs, ts) = Layout(type);
        CheckSizes(type, src.Length, dst.Length, bs, ts);
        if (rowLength <= 0 || rowLength % bs != 0 || src.Length % rowLength != 0)
            throw new ArgumentException($"{GgmlTypeInfo.Name(type)}: {src.Length} elements are not whole rows of {rowLength}");
        if (importance.Length != rowLength)
            throw new ArgumentException($"{GgmlTypeInfo.Name(type)}: {importance.Length} importance weights for rows of {rowLength}");
        int rowBytes = rowLength / bs * ts;
        fixed (float* x0 = src)
        fixed (byte* y0 = dst)
        fixed (float* qw = importance)
        {
            for (int r = 0; r < src.Length / rowLength; r++)
            {
                float* x = x0 + (nint)r * rowLength;
                byte* y = y0 + (nint)r * rowBytes;
                switch (type)
                {
                    case GgmlType.Q4_0: Q4_0Format.QuantizeWeighted(x, y, rowLength, qw); break;
                    case GgmlType.Q4_1: Q4_1Format.QuantizeWeighted(x, y, rowLength, qw); break;
                    case GgmlType.Q5_0: Q5_0Format.QuantizeWeighted(x, y, rowLength, qw); break;
                    case GgmlType.Q5_1: Q5_1Format.QuantizeWeighted(x, y, rowLength, qw); break;
                    case GgmlType.Q2_K: Q2_KFormat.QuantizeWeighted(x, y, rowLength, qw); break;
                    case GgmlType.Q3_K: Q3_KFormat.QuantizeWeighted(x, y, rowLength, qw); break;
                    case GgmlType.Q4_K: Q4_KFormat.QuantizeWeighted(x, y, rowLength, qw); break;
                    case GgmlType.Q5_K: Q5_KFormat.QuantizeWeighted(x, y, rowLength, qw); break;
                    case GgmlType.Q6_K: Q6_KFormat.QuantizeWeighted(x, y, rowLength, qw); break;
                    case GgmlType.IQ4_NL: IQ4Format.QuantizeNlWeighted(x, y, rowLength, qw); break;
                    case GgmlType.IQ4_XS: IQ4Format.QuantizeXsWeighted(x, y, rowLength, qw); break;
                }
            }
        }
    }

    /// <summary>Whether ggml's quantizer of <paramref name="type"/> uses an importance matrix (floats and Q8_0 ignore it).</summary>
    public static bool UsesImportance(GgmlType type) => type is GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.IQ4_NL or GgmlType.IQ4_XS;

    /// <summary>
    /// Dequantizes <paramref name="src"/> (whole blocks of <paramref name="type"/>) into <paramref name="dst"/>, which must hold
    /// exactly the elements.
    /// </summary>
    /// <exception cref="NotSupportedException">The type is not one of <see cref="Types"/>; the message names it.</exception>
    /// <exception cref="ArgumentException">The lengths are not whole blocks, or do not match each other.</exception>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        var (bs, ts) = Layout(type);
        CheckSizes(type, dst.Length, src.Length, bs, ts);
        if (dst.Length == 0) return;
        fixed (byte* x = src)
        fixed (float* y = dst)
        {
            int n = dst.Length;
            switch (type)
            {
                case GgmlType.F32: F32Format.DequantizeRef(x, y, n); break;
                case GgmlType.F16: F16Format.DequantizeRef(x, y, n); break;
                case GgmlType.BF16: BF16Format.DequantizeRef(x, y, n); break;
                case GgmlType.Q8_0: Q8_0Format.DequantizeRef(x, y, n); break;
                case GgmlType.Q8_1: Q8_1Format.DequantizeRef(x, y, n); break;
                case GgmlType.Q8_K: Q8_KFormat.DequantizeRef(x, y, n); break;
                case GgmlType.Q4_0: Q4_0Format.DequantizeRef(x, y, n); break;
                case GgmlType.Q4_1: Q4_1Format.DequantizeRef(x, y, n); break;
                case GgmlType.Q5_0: Q5_0Format.DequantizeRef(x, y, n); break;
                case GgmlType.Q5_1: Q5_1Format.DequantizeRef(x, y, n); break;
                case GgmlType.Q2_K: Q2_KFormat.DequantizeRef(x, y, n); break;
                case GgmlType.Q3_K: Q3_KFormat.DequantizeRef(x, y, n); break;
                case GgmlType.Q4_K: Q4_KFormat.DequantizeRef(x, y, n); break;
                case GgmlType.Q5_K: Q5_KFormat.DequantizeRef(x, y, n); break;
                case GgmlType.Q6_K: Q6_KFormat.DequantizeRef(x, y, n); break;
                case GgmlType.IQ4_NL: IQ4Format.DequantizeNl(x, y, n); break;
                case GgmlType.IQ4_XS: IQ4Format.DequantizeXs(x, y, n); break;
            }
        }
    }

    private static (int BlockSize, int TypeSize) Layout(GgmlType type)
    {
        if (!IsSupported(type))
            throw new NotSupportedException(
                $"cannot (de)quantize type {GgmlTypeInfo.Name(type)} (supported: {string.Join(", ", Types)})");
        GgmlTypeInfo.TryGetLayout(type, out int bs, out int ts);
        return (bs, ts);
    }

    private static void CheckSizes(GgmlType type, int elements, int bytes, int bs, int ts)
    {
        if (elements % bs != 0)
            throw new ArgumentException($"{GgmlTypeInfo.Name(type)}: {elements} elements is not a multiple of the block size {bs}");
        long expected = (long)elements / bs * ts;
        if (bytes != expected)
            throw new ArgumentException($"{GgmlTypeInfo.Name(type)}: {elements} elements need {expected} bytes, the buffer has {bytes}");
    }
}
