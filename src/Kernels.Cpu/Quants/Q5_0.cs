using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>ggml <c>block_q5_0</c>: 32 values = d * (q - 16), q in 0..31: low 4 bits in qs (Q4_0 layout), bit 4 of element j in bit j of qh.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ5_0
{
    public ushort D;
    public fixed byte Qh[4];
    public fixed byte Qs[16];
}

/// <summary>Q5_0 weights, multiplied with Q8_0 activations.</summary>
public static unsafe class Q5_0
{
    public const int BlockSize = 32;
    public const int TypeSize = 22;

    /// <summary>ggml's <c>quantize_row_q5_0_ref</c>: d = max/-16, q = min(31, (int8)(x/d + 16.5)).</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ5_0*)(y + (nint)i * TypeSize);
            float amax = 0, max = 0;
            for (int j = 0; j < BlockSize; j++)
            {
                float v = xb[j];
                if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
            }
            float d = max / -16;
            float id = d != 0 ? 1.0f / d : 0.0f;
            yb->D = Fp16.FromFloat(d);
            uint qh = 0;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                float x0 = xb[j] * id;
                float x1 = xb[BlockSize / 2 + j] * id;
                uint xi0 = (uint)Math.Min(31, Scalar.TruncToInt8(x0 + 16.5f));
                uint xi1 = (uint)Math.Min(31, Scalar.TruncToInt8(x1 + 16.5f));
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
            var xb = (BlockQ5_0*)(x + (nint)i * TypeSize);
            float d = Fp16.ToFloat(xb->D);
            uint qh = *(uint*)xb->Qh;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int xh0 = (int)(((qh >> j) << 4) & 0x10);
                int xh1 = (int)((qh >> (j + 12)) & 0x10);
                y[(nint)i * BlockSize + j] = (((xb->Qs[j] & 0x0F) | xh0) - 16) * d;
                y[(nint)i * BlockSize + j + BlockSize / 2] = (((xb->Qs[j] >> 4) | xh1) - 16) * d;
            }
        }
    }

    /// <summary>ggml's <c>ggml_vec_dot_q5_0_q8_0</c> (generic).</summary>
    public static float DotRef(int n, byte* w, byte* a)
    {
        int nb = n / BlockSize;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ5_0*)(w + (nint)i * TypeSize);
            var y = (BlockQ8_0*)(a + (nint)i * Q8_0.TypeSize);
            uint qh = *(uint*)x->Qh;
            int sumi0 = 0, sumi1 = 0;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int xh0 = (int)(((qh & (1u << j)) >> j) << 4);
                int xh1 = (int)((qh & (1u << (j + 16))) >> (j + 12));
                sumi0 += (((x->Qs[j] & 0x0F) | xh0) - 16) * y->Qs[j];
                sumi1 += (((x->Qs[j] >> 4) | xh1) - 16) * y->Qs[j + BlockSize / 2];
            }
            sumf += (sumi0 + sumi1) * (Fp16.ToFloat(x->D) * Fp16.ToFloat(y->D));
        }
        return sumf;
    }

    /// <summary>5-bit u = nibble | (bit ? 16 : 0); Σ(u-16)·y = Σu·y - Σ16·y.</summary>
    internal static float DotSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        int nb = n / BlockSize;
        Vector256<float> acc = default;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * TypeSize, y = a + (nint)i * Q8_0.TypeSize;
            Vector256<byte> u = Simd.BytesFromNibbles32(x + 6) | (Simd.BytesFromBits32(*(uint*)(x + 2)) & Vector256.Create((byte)0x10));
            Vector256<sbyte> qy = Vector256.Load((sbyte*)(y + 2));
            Vector256<int> sumi = T.DotU8S8(Vector256<int>.Zero, u, qy) - T.DotU8S8(Vector256<int>.Zero, Vector256.Create((byte)16), qy);
            acc = Simd.MulAdd(sumi, Fp16.ToFloat(*(ushort*)x) * Fp16.ToFloat(*(ushort*)y), acc);
        }
        return Simd.HSum(acc);
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
