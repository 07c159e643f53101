using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>Q5_0 weights, multiplied with Q8_0 activations.</summary>
public static unsafe class Q5_0
{
    /// <summary>ggml's <c>ggml_vec_dot_q5_0_q8_0</c> (generic).</summary>
    public static float DotRef(int n, byte* w, byte* a)
    {
        int nb = n / Q5_0Format.BlockSize;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ5_0*)(w + (nint)i * Q5_0Format.TypeSize);
            var y = (BlockQ8_0*)(a + (nint)i * Q8_0Format.TypeSize);
            uint qh = *(uint*)x->Qh;
            int sumi0 = 0, sumi1 = 0;
            for (int j = 0; j < Q5_0Format.BlockSize / 2; j++)
            {
                int xh0 = (int)(((qh & (1u << j)) >> j) << 4);
                int xh1 = (int)((qh & (1u << (j + 16))) >> (j + 12));
                sumi0 += (((x->Qs[j] & 0x0F) | xh0) - 16) * y->Qs[j];
                sumi1 += (((x->Qs[j] >> 4) | xh1) - 16) * y->Qs[j + Q5_0Format.BlockSize / 2];
            }
            sumf += (sumi0 + sumi1) * (HalfBits.ToFloat(x->D) * HalfBits.ToFloat(y->D));
        }
        return sumf;
    }

    /// <summary>5-bit u = nibble | (bit ? 16 : 0); x = u - 16 signed, Σx·y as |x|·(y with x's sign) (one u8·s8 dot per block).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        int nb = n / Q5_0Format.BlockSize;
        Vector256<float> acc = default;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * Q5_0Format.TypeSize, y = a + (nint)i * Q8_0Format.TypeSize;
            Vector256<byte> u = Simd.BytesFromNibbles32(x + Q5_0Format.QsOffset)
                | (Simd.BytesFromBits32(*(uint*)(x + Q5_0Format.QhOffset)) & Vector256.Create((byte)0x10));
            Vector256<sbyte> qy = Vector256.Load((sbyte*)(y + Q8_0Format.QsOffset));
            Vector256<int> sumi = Simd.DotS8S8<T>(Vector256<int>.Zero, (u - Vector256.Create((byte)16)).AsSByte(), qy);
            acc = Simd.MulAdd(sumi, HalfBits.ToFloat(*(ushort*)x) * HalfBits.ToFloat(*(ushort*)y), acc);
        }
        return Simd.HSum(acc);
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
