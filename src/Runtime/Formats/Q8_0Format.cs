using System.Runtime.InteropServices;

namespace Infer.Runtime.Formats;

/// <summary>ggml <c>block_q8_0</c>: 32 values = d (fp16) * qs[i] (int8).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ8_0
{
    public ushort D;
    public fixed sbyte Qs[32];
}

/// <summary>Q8_0: 32 values per block as one fp16 scale and 32 int8 quants (also the activation format of Q4_0, Q5_0 and Q8_0 weights).</summary>
public static unsafe class Q8_0Format
{
    public const int BlockSize = 32;
    /// <summary>Bytes per block (<c>sizeof(block_q8_0)</c>).</summary>
    public const int TypeSize = 34;
    /// <summary>Bytes of qs: 32 int8 quants, one per value.</summary>
    public const int QsBytes = 32;

    // byte offsets of the block fields (a test checks them against BlockQ8_0)
    public const int DOffset = 0;  // d (fp16)
    public const int QsOffset = 2; // qs[32] (int8)

    /// <summary>ggml's <c>quantize_row_q8_0_ref</c>: d = amax/127, q = roundf(x/d) (half away from zero).</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ8_0*)(y + (nint)i * TypeSize);
            float amax = 0;
            for (int j = 0; j < BlockSize; j++) amax = MathF.Max(amax, MathF.Abs(xb[j]));
            float d = amax / 127;
            float id = d != 0 ? 1.0f / d : 0.0f;
            yb->D = HalfBits.FromFloat(d);
            for (int j = 0; j < BlockSize; j++) yb->Qs[j] = (sbyte)GgmlRounding.RoundF(xb[j] * id);
        }
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ8_0*)(x + (nint)i * TypeSize);
            float d = HalfBits.ToFloat(xb->D);
            for (int j = 0; j < BlockSize; j++) y[(nint)i * BlockSize + j] = xb->Qs[j] * d;
        }
    }
}
