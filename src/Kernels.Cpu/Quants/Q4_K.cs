using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>Q4_K weights, multiplied with Q8_K activations.</summary>
public static unsafe class Q4_K
{
    /// <summary>Q4_K · Q8_K: Σ_blocks d_w d_a Σ_j sc_j (q·y)_j - dmin_w d_a Σ_j m_j (bsum_2j + bsum_2j+1).</summary>
    public static float DotRef(int n, byte* w, byte* a)
    {
        int nb = n / Q4_KFormat.BlockSize;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ4_K*)(w + (nint)i * Q4_KFormat.TypeSize);
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
                for (int l = 0; l < 32; l++) dot += ((x->Qs[(j >> 1) * 32 + l] >> shift) & 0xF) * y->Qs[j * 32 + l];
                isum += sc * dot;
            }
            sumf += d * isum - dmin * summ;
        }
        return sumf;
    }

    /// <summary>
    /// The 8 scales (int16 lanes 0..7) and 8 mins (lanes 8..15) of a super-block, unpacked from the 12 packed bytes in registers
    /// (ggml's utmp trick: kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> UnpackScalesMins(byte* packed)
    {
        const uint kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
        uint a0 = *(uint*)packed, a1 = *(uint*)(packed + 4), a2 = *(uint*)(packed + 8);
        uint u0 = a0 & kmask1;
        uint u1 = (a2 & kmask2) | (((a0 >> 6) & kmask3) << 4);
        uint u2 = a1 & kmask1;
        uint u3 = ((a2 >> 4) & kmask2) | (((a1 >> 6) & kmask3) << 4);
        return Avx2.ConvertToVector256Int16(Vector128.Create(u0, u1, u2, u3).AsByte());
    }

    /// <summary>
    /// Per int32 lane k (0..3): m[2k]·(bsums[4k]+bsums[4k+1]) + m[2k+1]·(bsums[4k+2]+bsums[4k+3]); the lanes sum to
    /// Σ_j m_j (bsum_2j + bsum_2j+1).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<int> MinsTimesBsums(Vector256<short> scalesMins, short* bsums)
    {
        Vector256<short> b = Vector256.Load(bsums);
        Vector128<short> pairs = Ssse3.HorizontalAdd(b.GetLower(), b.GetUpper());
        return Sse2.MultiplyAddAdjacent(scalesMins.GetUpper(), pairs);
    }

    /// <summary>vpshufb controls that broadcast int16 lane s (s = 0..7) of a 128-bit half to every lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> BroadcastScale(Vector256<byte> scales, int s) =>
        Avx2.Shuffle(scales, Vector256.Create((ushort)(2 * s | ((2 * s + 1) << 8))).AsByte()).AsInt16();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        int nb = n / Q4_KFormat.BlockSize;
        Vector256<float> acc = default;
        Vector128<float> accMins = default;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * Q4_KFormat.TypeSize;
            byte* y = a + (nint)i * Q8_KFormat.TypeSize;
            float yd = *(float*)y;
            float d = HalfBits.ToFloat(*(ushort*)x) * yd;
            float dmin = HalfBits.ToFloat(*(ushort*)(x + Q4_KFormat.DMinOffset)) * yd;
            Vector256<short> scalesMins = UnpackScalesMins(x + Q4_KFormat.ScalesOffset);
            Vector128<int> mins = MinsTimesBsums(scalesMins, (short*)(y + Q8_KFormat.BSumsOffset));
            accMins = Fma.MultiplyAdd(Sse2.ConvertToVector128Single(mins), Vector128.Create(dmin), accMins);
            Vector256<byte> scales = Vector256.Create(scalesMins.GetLower(), scalesMins.GetLower()).AsByte();

            byte* qs = x + Q4_KFormat.QsOffset;
            sbyte* q8 = (sbyte*)(y + Q8_KFormat.QsOffset);
            Vector256<int> sumLo = Vector256<int>.Zero, sumHi = Vector256<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                Vector256<byte> q = Vector256.Load(qs + 32 * c);
                Vector256<short> pLo = Avx2.MultiplyAddAdjacent(Simd.LowNibbles(q), Vector256.Load(q8 + 64 * c));
                Vector256<short> pHi = Avx2.MultiplyAddAdjacent(Simd.HighNibbles(q), Vector256.Load(q8 + 64 * c + 32));
                sumLo = T.MaddS16(sumLo, pLo, BroadcastScale(scales, 2 * c));
                sumHi = T.MaddS16(sumHi, pHi, BroadcastScale(scales, 2 * c + 1));
            }
            acc = Simd.MulAdd(sumLo + sumHi, d, acc);
        }
        return Simd.HSum(acc) - Vector128.Sum(accMins);
    }

    /// <summary>One weight row against 4 Q8_K activation rows, unpacking each weight super-block once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4Simd<T>(int n, byte* w, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        int nb = n / Q4_KFormat.BlockSize;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Vector128<float> m0 = default, m1 = default, m2 = default, m3 = default;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * Q4_KFormat.TypeSize;
            nint o = (nint)i * Q8_KFormat.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            float xd = HalfBits.ToFloat(*(ushort*)x), xdmin = HalfBits.ToFloat(*(ushort*)(x + Q4_KFormat.DMinOffset));
            Vector256<short> scalesMins = UnpackScalesMins(x + Q4_KFormat.ScalesOffset);
            m0 = MinsTerm(scalesMins, xdmin, y0, m0);
            m1 = MinsTerm(scalesMins, xdmin, y1, m1);
            m2 = MinsTerm(scalesMins, xdmin, y2, m2);
            m3 = MinsTerm(scalesMins, xdmin, y3, m3);
            Vector256<byte> scales = Vector256.Create(scalesMins.GetLower(), scalesMins.GetLower()).AsByte();
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int c = 0; c < 4; c++)
            {
                Vector256<byte> q = Vector256.Load(x + Q4_KFormat.QsOffset + 32 * c);
                Vector256<byte> lo = Simd.LowNibbles(q), hi = Simd.HighNibbles(q);
                Vector256<short> scLo = BroadcastScale(scales, 2 * c), scHi = BroadcastScale(scales, 2 * c + 1);
                int off = Q8_KFormat.QsOffset + 64 * c;
                s0 = SubBlockPair<T>(s0, lo, hi, scLo, scHi, (sbyte*)(y0 + off));
                s1 = SubBlockPair<T>(s1, lo, hi, scLo, scHi, (sbyte*)(y1 + off));
                s2 = SubBlockPair<T>(s2, lo, hi, scLo, scHi, (sbyte*)(y2 + off));
                s3 = SubBlockPair<T>(s3, lo, hi, scLo, scHi, (sbyte*)(y3 + off));
            }
            acc0 = Simd.MulAdd(s0, xd * *(float*)y0, acc0);
            acc1 = Simd.MulAdd(s1, xd * *(float*)y1, acc1);
            acc2 = Simd.MulAdd(s2, xd * *(float*)y2, acc2);
            acc3 = Simd.MulAdd(s3, xd * *(float*)y3, acc3);
        }
        result[0] = Simd.HSum(acc0) - Vector128.Sum(m0); result[1] = Simd.HSum(acc1) - Vector128.Sum(m1);
        result[2] = Simd.HSum(acc2) - Vector128.Sum(m2); result[3] = Simd.HSum(acc3) - Vector128.Sum(m3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> MinsTerm(Vector256<short> scalesMins, float xdmin, byte* y, Vector128<float> acc)
    {
        Vector128<int> mins = MinsTimesBsums(scalesMins, (short*)(y + Q8_KFormat.BSumsOffset));
        return Fma.MultiplyAdd(Sse2.ConvertToVector128Single(mins), Vector128.Create(xdmin * *(float*)y), acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SubBlockPair<T>(Vector256<int> s, Vector256<byte> lo, Vector256<byte> hi, Vector256<short> scLo,
        Vector256<short> scHi, sbyte* q8) where T : struct, IIntDot
    {
        s = T.MaddS16(s, Avx2.MultiplyAddAdjacent(lo, Vector256.Load(q8)), scLo);
        return T.MaddS16(s, Avx2.MultiplyAddAdjacent(hi, Vector256.Load(q8 + 32)), scHi);
    }

    internal static void Dot4Ref(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotRef(n, w, a + r * aStride);
    }
}
