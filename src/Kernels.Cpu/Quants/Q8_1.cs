using System.Runtime.InteropServices;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>ggml <c>block_q8_1</c>: 32 values = d (fp16) * qs[i]; s (fp16) = d * Σqs, used by the Q4_1 / Q5_1 dots for the min term.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ8_1
{
    public ushort D;
    public ushort S;
    public fixed sbyte Qs[32];
}

/// <summary>Q8_1: the activation format of Q4_1 and Q5_1 weights (ggml has no Q8_1 weight dot).</summary>
public static unsafe class Q8_1
{
    public const int BlockSize = 32;
    public const int TypeSize = 36;

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
            yb->D = Fp16.FromFloat(d);
            int sum = 0;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                sbyte q0 = (sbyte)Scalar.RoundF(xb[j] * id);
                sbyte q1 = (sbyte)Scalar.RoundF(xb[BlockSize / 2 + j] * id);
                yb->Qs[j] = q0;
                yb->Qs[BlockSize / 2 + j] = q1;
                sum += q0 + q1;
            }
            yb->S = Fp16.FromFloat(sum * d);
        }
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ8_1*)(x + (nint)i * TypeSize);
            float d = Fp16.ToFloat(xb->D);
            for (int j = 0; j < BlockSize; j++) y[(nint)i * BlockSize + j] = xb->Qs[j] * d;
        }
    }
}
