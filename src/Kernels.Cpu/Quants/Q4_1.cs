using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>ggml <c>block_q4_1</c>: 32 values = d * q + m, q in 0..15 (nibble layout as Q4_0).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ4_1
{
    public ushort D;
    public ushort M;
    public fixed byte Qs[16];
}

/// <summary>Q4_1 weights, multiplied with Q8_1 activations.</summary>
public static unsafe class Q4_1
{
    public const int BlockSize = 32;
    public const int TypeSize = 20;

    /// <summary>ggml's <c>quantize_row_q4_1_ref</c>: d = (max-min)/15, m = min, q = min(15, (int8)((x-min)/d + 0.5)).</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ4_1*)(y + (nint)i * TypeSize);
            float min = float.MaxValue, max = -float.MaxValue;
            for (int j = 0; j < BlockSize; j++)
            {
                float v = xb[j];
                if (v < min) min = v;
                if (v > max) max = v;
            }
            float d = (max - min) / ((1 << 4) - 1);
            float id = d != 0 ? 1.0f / d : 0.0f;
            yb->D = Fp16.FromFloat(d);
            yb->M = Fp16.FromFloat(min);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                float x0 = (xb[j] - min) * id;
                float x1 = (xb[BlockSize / 2 + j] - min) * id;
                int xi0 = Math.Min(15, Scalar.TruncToInt8(x0 + 0.5f));
                int xi1 = Math.Min(15, Scalar.TruncToInt8(x1 + 0.5f));
                yb->Qs[j] = (byte)(xi0 | (xi1 << 4));
            }
        }
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ4_1*)(x + (nint)i * TypeSize);
            float d = Fp16.ToFloat(xb->D), m = Fp16.ToFloat(xb->M);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                y[(nint)i * BlockSize + j] = (xb->Qs[j] & 0x0F) * d + m;
                y[(nint)i * BlockSize + j + BlockSize / 2] = (xb->Qs[j] >> 4) * d + m;
            }
        }
    }

    /// <summary>ggml's <c>ggml_vec_dot_q4_1_q8_1</c> (generic): Σ d_x d_y Σq·y + m_x s_y.</summary>
    public static float DotRef(int n, byte* w, byte* a)
    {
        int nb = n / BlockSize;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ4_1*)(w + (nint)i * TypeSize);
            var y = (BlockQ8_1*)(a + (nint)i * Q8_1.TypeSize);
            int sumi0 = 0, sumi1 = 0;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                sumi0 += (x->Qs[j] & 0x0F) * y->Qs[j];
                sumi1 += (x->Qs[j] >> 4) * y->Qs[j + BlockSize / 2];
            }
            sumf += (sumi0 + sumi1) * (Fp16.ToFloat(x->D) * Fp16.ToFloat(y->D)) + Fp16.ToFloat(x->M) * Fp16.ToFloat(y->S);
        }
        return sumf;
    }

    internal static float DotSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        int nb = n / BlockSize;
        Vector256<float> acc = default;
        float summs = 0;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * TypeSize, y = a + (nint)i * Q8_1.TypeSize;
            Vector256<byte> u = Simd.BytesFromNibbles32(x + 4);
            Vector256<int> sumi = T.DotU8S8(Vector256<int>.Zero, u, Vector256.Load((sbyte*)(y + 4)));
            acc = Simd.MulAdd(sumi, Fp16.ToFloat(*(ushort*)x) * Fp16.ToFloat(*(ushort*)y), acc);
            summs += Fp16.ToFloat(*(ushort*)(x + 2)) * Fp16.ToFloat(*(ushort*)(y + 2));
        }
        return Simd.HSum(acc) + summs;
    }

    internal static void Dot4Ref(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotRef(n, w, a + r * aStride);
    }

    internal static void Dot4Simd<T>(int n, byte* w, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        for (int r = 0; r < 4; r++) result[r] = DotSimd<T>(n, w, a + r * aStride);
    }
}
