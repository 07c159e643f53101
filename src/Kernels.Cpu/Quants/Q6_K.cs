using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>Q6_K weights, multiplied with Q8_K activations.</summary>
public static unsafe class Q6_K
{
    /// <summary>Q6_K · Q8_K: Σ_blocks d_w d_a Σ_g sc_g Σ (q - 32)·y over the 16 groups.</summary>
    public static float DotRef(int n, byte* w, byte* a)
    {
        int nb = n / Q6_KFormat.BlockSize;
        float sumf = 0;
        int* q = stackalloc int[Q6_KFormat.BlockSize];
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ6_K*)(w + (nint)i * Q6_KFormat.TypeSize);
            var y = (BlockQ8_K*)(a + (nint)i * Q8_KFormat.TypeSize);
            for (int h = 0; h < 2; h++)
            {
                byte* ql = x->Ql + 64 * h;
                byte* qh = x->Qh + 32 * h;
                for (int l = 0; l < 32; ++l)
                {
                    q[128 * h + l + 0] = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    q[128 * h + l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    q[128 * h + l + 64] = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    q[128 * h + l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                }
            }
            int isum = 0;
            for (int g = 0; g < 16; g++)
            {
                int dot = 0;
                for (int l = 0; l < 16; l++) dot += q[16 * g + l] * y->Qs[16 * g + l];
                isum += x->Scales[g] * dot;
            }
            sumf += HalfBits.ToFloat(x->D) * y->D * isum;
        }
        return sumf;
    }

    /// <summary>Per int32 lane k: sc[2k]·bsums[2k] + sc[2k+1]·bsums[2k+1]; the lanes sum to the -32 offset term Σ_g sc_g · bsums_g.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> ScalesTimesBsums(Vector256<short> sc16, short* bsums) =>
        Avx2.MultiplyAddAdjacent(sc16, Vector256.Load(bsums));

    /// <summary>int16 lanes 0..7 = scale 2k of the half, lanes 8..15 = scale 2k+1 (the two 16-groups one 32-byte vector spans).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> PairScales(Vector256<byte> halfScales, int k) =>
        Avx2.Shuffle(halfScales, Vector256.Create(
            Vector128.Create((ushort)(4 * k | ((4 * k + 1) << 8))),
            Vector128.Create((ushort)((4 * k + 2) | ((4 * k + 3) << 8)))).AsByte()).AsInt16();

    /// <summary>The 8 int16 scales of half h in both 128-bit lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> HalfScales(Vector256<short> sc16, int h)
    {
        Vector128<short> half = h == 0 ? sc16.GetLower() : sc16.GetUpper();
        return Vector256.Create(half, half).AsByte();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        int nb = n / Q6_KFormat.BlockSize;
        Vector256<float> acc = default, accOffset = default;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * Q6_KFormat.TypeSize;
            byte* y = a + (nint)i * Q8_KFormat.TypeSize;
            Vector256<short> sc16 = Avx2.ConvertToVector256Int16((sbyte*)(x + Q6_KFormat.ScalesOffset));
            float d = HalfBits.ToFloat(*(ushort*)(x + Q6_KFormat.DOffset)) * *(float*)y;
            accOffset = Simd.MulAdd(ScalesTimesBsums(sc16, (short*)(y + Q8_KFormat.BSumsOffset)), 32 * d, accOffset);
            Vector256<int> sum0 = Half<T>(x, x + Q6_KFormat.QhOffset, HalfScales(sc16, 0), (sbyte*)(y + Q8_KFormat.QsOffset));
            Vector256<int> sum1 = Half<T>(x + 64, x + Q6_KFormat.QhOffset + 32, HalfScales(sc16, 1),
                (sbyte*)(y + Q8_KFormat.QsOffset + 128));
            acc = Simd.MulAdd(sum0 + sum1, d, acc);
        }
        return Simd.HSum(acc - accOffset);
    }

    /// <summary>
    /// Q6_K · Q8_K with 512-bit AVX-512BW (<c>vpmaddubsw</c>/<c>vpmaddwd</c> on zmm; no 512-bit VNNI is needed): each 128-element half is
    /// two zmm vectors of 6-bit q, built with per-256-bit-half variable shifts of the broadcast high bits, about 40% fewer instructions
    /// than <see cref="DotSimd{T}"/>. The -32 offset goes through the block sums as there, folded into the integer sum (|32·Σsc·bsum| &lt; 2^28).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static float DotAvx512(int n, byte* w, byte* a)
    {
        int nb = n / Q6_KFormat.BlockSize;
        Vector512<float> acc = default;
        var m0F = Vector512.Create((byte)0x0F);
        var m30 = Vector512.Create((byte)0x30);
        // word shift counts: low 256 bits build q1 (qh << 4) and q3 (qh), high 256 bits q2 (qh << 2) and q4 (qh >> 2)
        var shl = Vector512.Create(Vector256.Create((ushort)4), Vector256.Create((ushort)2));
        var shr = Vector512.Create(Vector256.Create((ushort)0), Vector256.Create((ushort)2));
        // int16 scale lanes for vpmaddwd: group 2k (lanes 16k..16k+7) and 2k+1 (16k+8..16k+15) of the four 32-element vectors q1..q4
        Vector512<short> idx01 = ScaleIndex(0), idx23 = ScaleIndex(4), idx45 = ScaleIndex(8), idx67 = ScaleIndex(12);
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * Q6_KFormat.TypeSize;
            byte* y = a + (nint)i * Q8_KFormat.TypeSize;
            sbyte* q8 = (sbyte*)(y + Q8_KFormat.QsOffset);
            Vector256<short> sc16 = Avx2.ConvertToVector256Int16((sbyte*)(x + Q6_KFormat.ScalesOffset));
            Vector512<short> sc = sc16.ToVector512Unsafe();
            Vector256<int> offset = ScalesTimesBsums(sc16, (short*)(y + Q8_KFormat.BSumsOffset));
            Vector512<int> sum = HalfAvx512(x, x + Q6_KFormat.QhOffset, q8, sc, idx01, idx23, shl, shr, m0F, m30);
            sum += HalfAvx512(x + 64, x + Q6_KFormat.QhOffset + 32, q8 + 128, sc, idx45, idx67, shl, shr, m0F, m30);
            Vector256<int> sum8 = sum.GetLower() + sum.GetUpper() - (offset << 5);
            float d = HalfBits.ToFloat(*(ushort*)(x + Q6_KFormat.DOffset)) * *(float*)y;
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(sum8.ToVector512Unsafe()), Vector512.Create(d), acc);
        }
        return Simd.HSum(acc.GetLower());
    }

    /// <summary>vpermw indices: int16 lanes 0..7 → scale g, 8..15 → g+1, 16..23 → g+2, 24..31 → g+3.</summary>
    private static Vector512<short> ScaleIndex(int g) => Vector512.Create(
        Vector256.Create(Vector128.Create((short)g), Vector128.Create((short)(g + 1))),
        Vector256.Create(Vector128.Create((short)(g + 2)), Vector128.Create((short)(g + 3))));

    /// <summary>One 128-element half with zmm vectors: (q1 | q2) and (q3 | q4), each against 64 activations with four group scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> HalfAvx512(byte* ql, byte* qhp, sbyte* q8, Vector512<short> sc, Vector512<short> idxLow, Vector512<short> idxHigh,
        Vector512<ushort> shl, Vector512<ushort> shr, Vector512<byte> m0F, Vector512<byte> m30)
    {
        Vector512<byte> l = Vector512.Load(ql);
        // not Avx512F.BroadcastVector256ToVector512: in optimized code the .NET 10 JIT here emits it with a 128-bit memory operand
        // (wrong results; DotKernelTests caught it once this method was compiled optimized from the first call)
        Vector256<ushort> qh256 = Vector256.Load((ushort*)qhp);
        Vector512<ushort> qh = Vector512.Create(qh256, qh256);
        Vector512<byte> q12 = (l & m0F) | (Avx512BW.ShiftLeftLogicalVariable(qh, shl).AsByte() & m30);
        Vector512<byte> q34 = (Vector512.ShiftRightLogical(l.AsUInt16(), 4).AsByte() & m0F)
            | (Avx512BW.ShiftRightLogicalVariable(qh, shr).AsByte() & m30);
        Vector512<int> s = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(q12, Vector512.Load(q8)), Avx512BW.PermuteVar32x16(sc, idxLow));
        return s + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(q34, Vector512.Load(q8 + 64)), Avx512BW.PermuteVar32x16(sc, idxHigh));
    }

    /// <summary>One 128-element half: four 32-byte vectors of 6-bit q (unsigned, 0..63), each against 32 activations with two group scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Half<T>(byte* ql, byte* qhp, Vector256<byte> scales, sbyte* q8) where T : struct, IIntDot
    {
        Vector256<byte> ql0 = Vector256.Load(ql), ql1 = Vector256.Load(ql + 32);
        Vector256<ushort> qh = Vector256.Load((ushort*)qhp);
        var m30 = Vector256.Create((byte)0x30);
        Vector256<byte> q1 = Simd.LowNibbles(ql0) | (Vector256.ShiftLeft(qh, 4).AsByte() & m30);
        Vector256<byte> q2 = Simd.LowNibbles(ql1) | (Vector256.ShiftLeft(qh, 2).AsByte() & m30);
        Vector256<byte> q3 = Simd.HighNibbles(ql0) | (qh.AsByte() & m30);
        Vector256<byte> q4 = Simd.HighNibbles(ql1) | (Vector256.ShiftRightLogical(qh, 2).AsByte() & m30);
        Vector256<int> s01 = T.MaddS16(Vector256<int>.Zero, Avx2.MultiplyAddAdjacent(q1, Vector256.Load(q8)), PairScales(scales, 0));
        Vector256<int> s23 = T.MaddS16(Vector256<int>.Zero, Avx2.MultiplyAddAdjacent(q2, Vector256.Load(q8 + 32)), PairScales(scales, 1));
        s01 = T.MaddS16(s01, Avx2.MultiplyAddAdjacent(q3, Vector256.Load(q8 + 64)), PairScales(scales, 2));
        s23 = T.MaddS16(s23, Avx2.MultiplyAddAdjacent(q4, Vector256.Load(q8 + 96)), PairScales(scales, 3));
        return s01 + s23;
    }

    /// <summary>One weight row against 4 Q8_K activation rows, unpacking each weight half once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4Simd<T>(int n, byte* w, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        int nb = n / Q6_KFormat.BlockSize;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        var m30 = Vector256.Create((byte)0x30);
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * Q6_KFormat.TypeSize;
            nint o = (nint)i * Q8_KFormat.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            Vector256<short> sc16 = Avx2.ConvertToVector256Int16((sbyte*)(x + Q6_KFormat.ScalesOffset));
            float xd = HalfBits.ToFloat(*(ushort*)(x + Q6_KFormat.DOffset));
            float d0 = xd * *(float*)y0, d1 = xd * *(float*)y1, d2 = xd * *(float*)y2, d3 = xd * *(float*)y3;
            // -32 offset term, folded into the integer sums: s = Σ sc·(q·y) - 32 Σ sc·bsums
            Vector256<int> s0 = Offset(sc16, y0), s1 = Offset(sc16, y1), s2 = Offset(sc16, y2), s3 = Offset(sc16, y3);
            for (int h = 0; h < 2; h++)
            {
                Vector256<byte> ql0 = Vector256.Load(x + 64 * h), ql1 = Vector256.Load(x + 64 * h + 32);
                Vector256<ushort> qh = Vector256.Load((ushort*)(x + Q6_KFormat.QhOffset + 32 * h));
                Vector256<byte> q1 = Simd.LowNibbles(ql0) | (Vector256.ShiftLeft(qh, 4).AsByte() & m30);
                Vector256<byte> q2 = Simd.LowNibbles(ql1) | (Vector256.ShiftLeft(qh, 2).AsByte() & m30);
                Vector256<byte> q3 = Simd.HighNibbles(ql0) | (qh.AsByte() & m30);
                Vector256<byte> q4 = Simd.HighNibbles(ql1) | (Vector256.ShiftRightLogical(qh, 2).AsByte() & m30);
                Vector256<byte> hs = HalfScales(sc16, h);
                Vector256<short> c1 = PairScales(hs, 0), c2 = PairScales(hs, 1), c3 = PairScales(hs, 2), c4 = PairScales(hs, 3);
                int off = Q8_KFormat.QsOffset + 128 * h;
                s0 = Quad<T>(s0, q1, q2, q3, q4, c1, c2, c3, c4, (sbyte*)(y0 + off));
                s1 = Quad<T>(s1, q1, q2, q3, q4, c1, c2, c3, c4, (sbyte*)(y1 + off));
                s2 = Quad<T>(s2, q1, q2, q3, q4, c1, c2, c3, c4, (sbyte*)(y2 + off));
                s3 = Quad<T>(s3, q1, q2, q3, q4, c1, c2, c3, c4, (sbyte*)(y3 + off));
            }
            acc0 = Simd.MulAdd(s0, d0, acc0);
            acc1 = Simd.MulAdd(s1, d1, acc1);
            acc2 = Simd.MulAdd(s2, d2, acc2);
            acc3 = Simd.MulAdd(s3, d3, acc3);
        }
        result[0] = Simd.HSum(acc0); result[1] = Simd.HSum(acc1); result[2] = Simd.HSum(acc2); result[3] = Simd.HSum(acc3);
    }

    /// <summary>
    /// -32 · (sc·bsums per lane pair): the offset that turns Σ sc·(q·y) with unsigned q into Σ sc·((q-32)·y). Fits int32
    /// (|·| ≤ 32·2·128·2032).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Offset(Vector256<short> sc16, byte* y) =>
        Vector256<int>.Zero - (ScalesTimesBsums(sc16, (short*)(y + Q8_KFormat.BSumsOffset)) << 5);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> Quad<T>(Vector256<int> s, Vector256<byte> q1, Vector256<byte> q2, Vector256<byte> q3, Vector256<byte> q4,
        Vector256<short> c1, Vector256<short> c2, Vector256<short> c3, Vector256<short> c4, sbyte* q8) where T : struct, IIntDot
    {
        s = T.MaddS16(s, Avx2.MultiplyAddAdjacent(q1, Vector256.Load(q8)), c1);
        s = T.MaddS16(s, Avx2.MultiplyAddAdjacent(q2, Vector256.Load(q8 + 32)), c2);
        s = T.MaddS16(s, Avx2.MultiplyAddAdjacent(q3, Vector256.Load(q8 + 64)), c3);
        return T.MaddS16(s, Avx2.MultiplyAddAdjacent(q4, Vector256.Load(q8 + 96)), c4);
    }

    internal static void Dot4Ref(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotRef(n, w, a + r * aStride);
    }
}
