using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>Q5_K weights, multiplied with Q8_K activations.</summary>
public static unsafe class Q5_K
{
    public static float DotRef(int n, byte* w, byte* a)
    {
        int nb = n / Q5_KFormat.BlockSize;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ5_K*)(w + (nint)i * Q5_KFormat.TypeSize);
            var y = (BlockQ8_K*)(a + (nint)i * Q8_KFormat.TypeSize);
            float d = HalfBits.ToFloat(x->D) * y->D;
            float dmin = HalfBits.ToFloat(x->DMin) * y->D;
            int isum = 0, summ = 0;
            for (int j = 0; j < 8; j++)
            {
                ScaleMinK4.Get(j, x->Scales, out byte sc, out byte m);
                summ += m * (y->BSums[2 * j] + y->BSums[2 * j + 1]);
                int dot = 0;
                int shift = (j & 1) * 4;
                for (int l = 0; l < 32; l++)
                {
                    int q = ((x->Qs[(j >> 1) * 32 + l] >> shift) & 0xF) | (((x->Qh[l] >> j) & 1) << 4);
                    dot += q * y->Qs[j * 32 + l];
                }
                isum += sc * dot;
            }
            sumf += d * isum - dmin * summ;
        }
        return sumf;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        int nb = n / Q5_KFormat.BlockSize;
        Vector256<float> acc = default;
        Vector128<float> accMins = default;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * Q5_KFormat.TypeSize;
            Simd.Prefetch(x + Q4_0x8.PrefetchDistance, Q5_KFormat.TypeSize); // decode streams the rows from DRAM
            byte* y = a + (nint)i * Q8_KFormat.TypeSize;
            float yd = *(float*)y;
            float d = HalfBits.ToFloat(*(ushort*)x) * yd;
            float dmin = HalfBits.ToFloat(*(ushort*)(x + Q5_KFormat.DMinOffset)) * yd;
            Vector256<short> scalesMins = Q4_K.UnpackScalesMins(x + Q5_KFormat.ScalesOffset);
            Vector128<int> mins = Q4_K.MinsTimesBsums(scalesMins, (short*)(y + Q8_KFormat.BSumsOffset));
            accMins = Fma.MultiplyAdd(Sse2.ConvertToVector128Single(mins), Vector128.Create(dmin), accMins);
            Vector256<byte> scales = Vector256.Create(scalesMins.GetLower(), scalesMins.GetLower()).AsByte();

            Vector256<ushort> qh = Vector256.Load((ushort*)(x + Q5_KFormat.QhOffset));
            byte* qs = x + Q5_KFormat.QsOffset;
            sbyte* q8 = (sbyte*)(y + Q8_KFormat.QsOffset);
            Vector256<int> sumLo = Vector256<int>.Zero, sumHi = Vector256<int>.Zero;
            // written out so every shift count and scale shuffle is a constant (the JIT does not unroll loops)
            SubBlockPair<T>(qs, q8, qh, scales, 0, ref sumLo, ref sumHi);
            SubBlockPair<T>(qs, q8, qh, scales, 1, ref sumLo, ref sumHi);
            SubBlockPair<T>(qs, q8, qh, scales, 2, ref sumLo, ref sumHi);
            SubBlockPair<T>(qs, q8, qh, scales, 3, ref sumLo, ref sumHi);
            acc = Simd.MulAdd(sumLo + sumHi, d, acc);
        }
        return Simd.HSum(acc) - Vector128.Sum(accMins);
    }

    /// <summary>
    /// Sub-blocks 2c and 2c + 1 (c a constant after inlining): 5-bit weights (4 bits from qs, bit 2c / 2c + 1 of qh as bit 4) · Q8_K,
    /// times their scales.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlockPair<T>(byte* qs, sbyte* q8, Vector256<ushort> qh, Vector256<byte> scales, int c,
        ref Vector256<int> sumLo, ref Vector256<int> sumHi) where T : struct, IIntDot
    {
        var bit4 = Vector256.Create((byte)0x10);
        Vector256<byte> q = Vector256.Load(qs + 32 * c);
        Vector256<byte> hLo = Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh, 2 * c), 4).AsByte() & bit4;
        Vector256<byte> hHi = Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh, 2 * c + 1), 4).AsByte() & bit4;
        Vector256<short> pLo = Avx2.MultiplyAddAdjacent(Simd.LowNibbles(q) | hLo, Vector256.Load(q8 + 64 * c));
        Vector256<short> pHi = Avx2.MultiplyAddAdjacent(Simd.HighNibbles(q) | hHi, Vector256.Load(q8 + 64 * c + 32));
        sumLo = T.MaddS16(sumLo, pLo, Q4_K.BroadcastScale(scales, 2 * c));
        sumHi = T.MaddS16(sumHi, pHi, Q4_K.BroadcastScale(scales, 2 * c + 1));
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
