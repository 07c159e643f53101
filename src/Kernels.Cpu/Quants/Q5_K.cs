using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>
/// ggml <c>block_q5_K</c>: as Q4_K with q in 0..31; bit 4 of element 64c + l is bit 2c of qh[l], of element 64c + 32 + l bit 2c+1.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ5_K
{
    public ushort D;
    public ushort DMin;
    public fixed byte Scales[12];
    public fixed byte Qh[32];
    public fixed byte Qs[128];
}

/// <summary>Q5_K weights, multiplied with Q8_K activations.</summary>
public static unsafe class Q5_K
{
    public const int BlockSize = 256;
    public const int TypeSize = 176;

    /// <summary>ggml's <c>quantize_row_q5_K_ref</c> (make_qkx2_quants with nmax 31, rmin -0.5, rdelta 0.1, 15 steps).</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        byte* L = stackalloc byte[BlockSize];
        for (int i = 0; i < nb; i++)
        {
            var yb = (BlockQ5_K*)(y + (nint)i * TypeSize);
            KQuants.QuantizeScaleMinSuperBlock(x + (nint)i * BlockSize, 31, -0.5f, 0.1f, 15, L, yb->Scales, out yb->D, out yb->DMin);
            byte* qh = yb->Qh;
            byte* ql = yb->Qs;
            for (int k = 0; k < 32; k++) qh[k] = 0;
            byte m1 = 1, m2 = 2;
            for (int nn = 0; nn < BlockSize; nn += 64)
            {
                for (int j = 0; j < 32; ++j)
                {
                    int l1 = L[nn + j];
                    if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                    int l2 = L[nn + j + 32];
                    if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                    ql[j] = (byte)(l1 | (l2 << 4));
                }
                m1 <<= 2; m2 <<= 2;
                ql += 32;
            }
        }
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ5_K*)(x + (nint)i * TypeSize);
            float d = Fp16.ToFloat(xb->D), min = Fp16.ToFloat(xb->DMin);
            byte* ql = xb->Qs;
            byte* qh = xb->Qh;
            int isub = 0;
            byte u1 = 1, u2 = 2;
            for (int j = 0; j < BlockSize; j += 64)
            {
                KQuants.GetScaleMinK4(isub + 0, xb->Scales, out byte sc, out byte m);
                float d1 = d * sc, m1 = min * m;
                KQuants.GetScaleMinK4(isub + 1, xb->Scales, out sc, out m);
                float d2 = d * sc, m2 = min * m;
                for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - m1;
                for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - m2;
                ql += 32; isub += 2;
                u1 <<= 2; u2 <<= 2;
            }
        }
    }

    public static float DotRef(int n, byte* w, byte* a)
    {
        int nb = n / BlockSize;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ5_K*)(w + (nint)i * TypeSize);
            var y = (BlockQ8_K*)(a + (nint)i * Q8_K.TypeSize);
            float d = Fp16.ToFloat(x->D) * y->D;
            float dmin = Fp16.ToFloat(x->DMin) * y->D;
            int isum = 0, summ = 0;
            for (int j = 0; j < 8; j++)
            {
                KQuants.GetScaleMinK4(j, x->Scales, out byte sc, out byte m);
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

    internal static float DotSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        int nb = n / BlockSize;
        Vector256<float> acc = default;
        Vector128<float> accMins = default;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * TypeSize;
            Simd.Prefetch(x + Q4_0x8.PrefetchDistance, TypeSize); // decode streams the rows from DRAM
            byte* y = a + (nint)i * Q8_K.TypeSize;
            float yd = *(float*)y;
            float d = Fp16.ToFloat(*(ushort*)x) * yd;
            float dmin = Fp16.ToFloat(*(ushort*)(x + 2)) * yd;
            Vector256<short> scalesMins = Q4_K.UnpackScalesMins(x + 4);
            accMins = Fma.MultiplyAdd(Sse2.ConvertToVector128Single(Q4_K.MinsTimesBsums(scalesMins, (short*)(y + 260))), Vector128.Create(dmin), accMins);
            Vector256<byte> scales = Vector256.Create(scalesMins.GetLower(), scalesMins.GetLower()).AsByte();

            Vector256<ushort> qh = Vector256.Load((ushort*)(x + 16));
            byte* qs = x + 48;
            sbyte* q8 = (sbyte*)(y + 4);
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

    /// <summary>Sub-blocks 2c and 2c + 1 (c a constant after inlining): 5-bit weights (4 bits from qs, bit 2c / 2c + 1 of qh as bit 4) · Q8_K, times their scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlockPair<T>(byte* qs, sbyte* q8, Vector256<ushort> qh, Vector256<byte> scales, int c, ref Vector256<int> sumLo, ref Vector256<int> sumHi)
        where T : struct, IIntDot
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

    internal static void Dot4Simd<T>(int n, byte* w, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        for (int r = 0; r < 4; r++) result[r] = DotSimd<T>(n, w, a + r * aStride);
    }
}
