using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>Q4_0 weights, multiplied with Q8_0 activations.</summary>
public static unsafe class Q4_0
{
    /// <summary>ggml's <c>ggml_vec_dot_q4_0_q8_0</c> (generic): Q4_0 weights · Q8_0 activations.</summary>
    public static float DotRef(int n, byte* w, byte* a)
    {
        int nb = n / Q4_0Format.BlockSize;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ4_0*)(w + (nint)i * Q4_0Format.TypeSize);
            var y = (BlockQ8_0*)(a + (nint)i * Q8_0Format.TypeSize);
            int sumi0 = 0, sumi1 = 0;
            for (int j = 0; j < Q4_0Format.BlockSize / 2; j++)
            {
                sumi0 += ((x->Qs[j] & 0x0F) - 8) * y->Qs[j];
                sumi1 += ((x->Qs[j] >> 4) - 8) * y->Qs[j + Q4_0Format.BlockSize / 2];
            }
            sumf += (sumi0 + sumi1) * (HalfBits.ToFloat(x->D) * HalfBits.ToFloat(y->D));
        }
        return sumf;
    }

    /// <summary>Q4_0 · Q8_0: x = u - 8 (-8..7) signed, Σx·y as |x|·(y with x's sign): one u8·s8 dot per block, as ggml's AVX2 path.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        int nb = n / Q4_0Format.BlockSize;
        Vector256<float> acc0 = default, acc1 = default;
        int i = 0;
        for (; i + 1 < nb; i += 2)
        {
            byte* x = w + (nint)i * Q4_0Format.TypeSize, y = a + (nint)i * Q8_0Format.TypeSize;
            acc0 = BlockDot<T>(x, y, acc0);
            acc1 = BlockDot<T>(x + Q4_0Format.TypeSize, y + Q8_0Format.TypeSize, acc1);
        }
        if (i < nb) acc0 = BlockDot<T>(w + (nint)i * Q4_0Format.TypeSize, a + (nint)i * Q8_0Format.TypeSize, acc0);
        return Simd.HSum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockDot<T>(byte* x, byte* y, Vector256<float> acc) where T : struct, IIntDot
    {
        Vector256<sbyte> q = Signed(x);
        return Column<T>(Avx2.Abs(q), q, HalfBits.ToFloat(*(ushort*)x), y, acc);
    }

    /// <summary>The block's 32 weights as signed bytes: nibble - 8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Signed(byte* x) => (Simd.BytesFromNibbles32(x + Q4_0Format.QsOffset) - Vector256.Create((byte)8)).AsSByte();

    /// <summary>acc + dx·dy·Σq·y for one activation block, given |q| (<paramref name="aq"/>) and q.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Column<T>(Vector256<byte> aq, Vector256<sbyte> q, float dx, byte* y, Vector256<float> acc)
        where T : struct, IIntDot
    {
        Vector256<sbyte> qy = Vector256.Load((sbyte*)(y + Q8_0Format.QsOffset));
        Vector256<int> sumi = T.DotU8S8(Vector256<int>.Zero, aq, Avx2.Sign(qy, q));
        return Simd.MulAdd(sumi, dx * HalfBits.ToFloat(*(ushort*)y), acc);
    }

    /// <summary>
    /// One weight row against 4 activation rows (<paramref name="a"/> + r * <paramref name="aStride"/> bytes), unpacking each weight
    /// block once.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4Simd<T>(int n, byte* w, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        int nb = n / Q4_0Format.BlockSize;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        byte* a0 = a, a1 = a + aStride, a2 = a + 2 * aStride, a3 = a + 3 * aStride;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * Q4_0Format.TypeSize;
            nint o = (nint)i * Q8_0Format.TypeSize;
            Vector256<sbyte> q = Signed(x);
            Vector256<byte> aq = Avx2.Abs(q);
            float dx = HalfBits.ToFloat(*(ushort*)x);
            acc0 = Column<T>(aq, q, dx, a0 + o, acc0);
            acc1 = Column<T>(aq, q, dx, a1 + o, acc1);
            acc2 = Column<T>(aq, q, dx, a2 + o, acc2);
            acc3 = Column<T>(aq, q, dx, a3 + o, acc3);
        }
        result[0] = Simd.HSum(acc0); result[1] = Simd.HSum(acc1); result[2] = Simd.HSum(acc2); result[3] = Simd.HSum(acc3);
    }

    internal static void Dot4Ref(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotRef(n, w, a + r * aStride);
    }
}
