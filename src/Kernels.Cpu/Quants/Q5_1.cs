using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>Q5_1 weights, multiplied with Q8_1 activations.</summary>
public static unsafe class Q5_1
{
    /// <summary>ggml's <c>ggml_vec_dot_q5_1_q8_1</c> (generic).</summary>
    public static float DotRef(int n, byte* w, byte* a)
    {
        int nb = n / Q5_1Format.BlockSize;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ5_1*)(w + (nint)i * Q5_1Format.TypeSize);
            var y = (BlockQ8_1*)(a + (nint)i * Q8_1Format.TypeSize);
            uint qh = *(uint*)x->Qh;
            int sumi0 = 0, sumi1 = 0;
            for (int j = 0; j < Q5_1Format.BlockSize / 2; j++)
            {
                int xh0 = (int)(((qh >> j) << 4) & 0x10);
                int xh1 = (int)((qh >> (j + 12)) & 0x10);
                sumi0 += ((x->Qs[j] & 0x0F) | xh0) * y->Qs[j];
                sumi1 += ((x->Qs[j] >> 4) | xh1) * y->Qs[j + Q5_1Format.BlockSize / 2];
            }
            sumf += (sumi0 + sumi1) * (HalfBits.ToFloat(x->D) * HalfBits.ToFloat(y->D))
                + HalfBits.ToFloat(x->M) * HalfBits.ToFloat(y->S);
        }
        return sumf;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        int nb = n / Q5_1Format.BlockSize;
        Vector256<float> acc = default;
        float summs = 0;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * Q5_1Format.TypeSize, y = a + (nint)i * Q8_1Format.TypeSize;
            Vector256<byte> u = Simd.BytesFromNibbles32(x + Q5_1Format.QsOffset)
                | (Simd.BytesFromBits32(*(uint*)(x + Q5_1Format.QhOffset)) & Vector256.Create((byte)0x10));
            Vector256<int> sumi = T.DotU8S8(Vector256<int>.Zero, u, Vector256.Load((sbyte*)(y + Q8_1Format.QsOffset)));
            acc = Simd.MulAdd(sumi, HalfBits.ToFloat(*(ushort*)x) * HalfBits.ToFloat(*(ushort*)y), acc);
            summs += HalfBits.ToFloat(*(ushort*)(x + Q5_1Format.MOffset)) * HalfBits.ToFloat(*(ushort*)(y + Q8_1Format.SOffset));
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
