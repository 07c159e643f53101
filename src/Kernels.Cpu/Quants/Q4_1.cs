using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>Q4_1 weights, multiplied with Q8_1 activations.</summary>
public static unsafe class Q4_1
{
    /// <summary>ggml's <c>ggml_vec_dot_q4_1_q8_1</c> (generic): Σ d_x d_y Σq·y + m_x s_y.</summary>
    public static float DotRef(int n, byte* w, byte* a)
    {
        int nb = n / Q4_1Format.BlockSize;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ4_1*)(w + (nint)i * Q4_1Format.TypeSize);
            var y = (BlockQ8_1*)(a + (nint)i * Q8_1Format.TypeSize);
            int sumi0 = 0, sumi1 = 0;
            for (int j = 0; j < Q4_1Format.BlockSize / 2; j++)
            {
                sumi0 += (x->Qs[j] & 0x0F) * y->Qs[j];
                sumi1 += (x->Qs[j] >> 4) * y->Qs[j + Q4_1Format.BlockSize / 2];
            }
            sumf += (sumi0 + sumi1) * (HalfBits.ToFloat(x->D) * HalfBits.ToFloat(y->D))
                + HalfBits.ToFloat(x->M) * HalfBits.ToFloat(y->S);
        }
        return sumf;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        int nb = n / Q4_1Format.BlockSize;
        Vector256<float> acc = default;
        float summs = 0;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * Q4_1Format.TypeSize, y = a + (nint)i * Q8_1Format.TypeSize;
            Vector256<byte> u = Simd.BytesFromNibbles32(x + Q4_1Format.QsOffset);
            Vector256<int> sumi = T.DotU8S8(Vector256<int>.Zero, u, Vector256.Load((sbyte*)(y + Q8_1Format.QsOffset)));
            acc = Simd.MulAdd(sumi, HalfBits.ToFloat(*(ushort*)x) * HalfBits.ToFloat(*(ushort*)y), acc);
            summs += HalfBits.ToFloat(*(ushort*)(x + Q4_1Format.MOffset)) * HalfBits.ToFloat(*(ushort*)(y + Q8_1Format.SOffset));
        }
        return Simd.HSum(acc) + summs;
    }

    internal static void Dot4Ref(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotRef(n, w, a + r * aStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4Simd<T>(int n, byte* w, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        for (int r = 0; r < 4; r++) result[r] = DotSimd<T>(n, w, a + r * aStride);
    }
}
