using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>ggml <c>block_q5_1</c>: 32 values = d * q + m, q in 0..31 (bit layout as Q5_0).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ5_1
{
    public ushort D;
    public ushort M;
    public fixed byte Qh[4];
    public fixed byte Qs[16];
}

/// <summary>Q5_1 weights, multiplied with Q8_1 activations.</summary>
public static unsafe class Q5_1
{
    public const int BlockSize = 32;
    public const int TypeSize = 24;

    /// <summary>ggml's <c>quantize_row_q5_1_ref</c>: d = (max-min)/31, m = min, q = (uint8)((x-min)/d + 0.5).</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ5_1*)(y + (nint)i * TypeSize);
            float min = float.MaxValue, max = -float.MaxValue;
            for (int j = 0; j < BlockSize; j++)
            {
                float v = xb[j];
                if (v < min) min = v;
                if (v > max) max = v;
            }
            float d = (max - min) / ((1 << 5) - 1);
            float id = d != 0 ? 1.0f / d : 0.0f;
            yb->D = Fp16.FromFloat(d);
            yb->M = Fp16.FromFloat(min);
            uint qh = 0;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                float x0 = (xb[j] - min) * id;
                float x1 = (xb[BlockSize / 2 + j] - min) * id;
                uint xi0 = (byte)(int)(x0 + 0.5f);
                uint xi1 = (byte)(int)(x1 + 0.5f);
                yb->Qs[j] = (byte)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
                qh |= ((xi0 & 0x10u) >> 4) << j;
                qh |= ((xi1 & 0x10u) >> 4) << (j + BlockSize / 2);
            }
            *(uint*)yb->Qh = qh;
        }
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ5_1*)(x + (nint)i * TypeSize);
            float d = Fp16.ToFloat(xb->D), m = Fp16.ToFloat(xb->M);
            uint qh = *(uint*)xb->Qh;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int xh0 = (int)(((qh >> j) << 4) & 0x10);
                int xh1 = (int)((qh >> (j + 12)) & 0x10);
                y[(nint)i * BlockSize + j] = ((xb->Qs[j] & 0x0F) | xh0) * d + m;
                y[(nint)i * BlockSize + j + BlockSize / 2] = ((xb->Qs[j] >> 4) | xh1) * d + m;
            }
        }
    }

    /// <summary>ggml's <c>ggml_vec_dot_q5_1_q8_1</c> (generic).</summary>
    public static float DotRef(int n, byte* w, byte* a)
    {
        int nb = n / BlockSize;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ5_1*)(w + (nint)i * TypeSize);
            var y = (BlockQ8_1*)(a + (nint)i * Q8_1.TypeSize);
            uint qh = *(uint*)x->Qh;
            int sumi0 = 0, sumi1 = 0;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int xh0 = (int)(((qh >> j) << 4) & 0x10);
                int xh1 = (int)((qh >> (j + 12)) & 0x10);
                sumi0 += ((x->Qs[j] & 0x0F) | xh0) * y->Qs[j];
                sumi1 += ((x->Qs[j] >> 4) | xh1) * y->Qs[j + BlockSize / 2];
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
            Vector256<byte> u = Simd.BytesFromNibbles32(x + 8) | (Simd.BytesFromBits32(*(uint*)(x + 4)) & Vector256.Create((byte)0x10));
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
