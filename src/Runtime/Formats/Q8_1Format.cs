using System.Runtime.InteropServices;

namespace Infer.Runtime.Formats;

/// <summary>ggml <c>block_q8_1</c>: 32 values = d (fp16) * qs[i]; s (fp16) = d * Σqs, used by the Q4_1 / Q5_1 dots for the min term.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ8_1
{
    public ushort D;
    public ushort S;
    public fixed sbyte Qs[32];
}

/// <summary>Q8_1: as Q8_0 plus s = d · Σqs (fp16); the activation format of Q4_1 and Q5_1 weights.</summary>
public static unsafe class Q8_1Format
{
    public const int BlockSize = 32;
    /// <summary>Bytes per block (<c>sizeof(block_q8_1)</c>).</summary>
    public const int TypeSize = 36;

    // byte offsets of the block fields (a test checks them against BlockQ8_1)
    public const int DOffset = 0;  // d (fp16)
    public const int SOffset = 2;  // s (fp16)
    public const int QsOffset = 4; // qs[32] (int8)

    /// <summary>ggml's <c>quantize_row_q8_1_ref</c>.</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ8_1*)(y + (nint)i * TypeSize);
            float amax = 0;
            for (int j = 0; j < BlockSize; j++) amax = MathF.Max(amax, MathF.Abs(xb[j]));
            float d = amax / 127;
            float id = d != 0 ? 1.0f / d : 0.0f;
            yb->D = HalfBits.FromFloat(d);
            int sum = 0;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                sbyte q0 = (sbyte)GgmlRounding.RoundF(xb[j] * id);
                sbyte q1 = (sbyte)GgmlRounding.RoundF(xb[BlockSize / 2 + j] * id);
                yb->Qs[j] = q0;
                yb->Qs[BlockSize / 2 + j] = q1;
                sum += q0 + q1;
            }
            yb->S = HalfBits.FromFloat(sum * d);
        }
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ8_1*)(x + (nint)i * TypeSize);
            float d = HalfBits.ToFloat(xb->D);
            for (int j = 0; j < BlockSize; j++) y[(nint)i * BlockSize + j] = xb->Qs[j] * d;
        }
    }
}
