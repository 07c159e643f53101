using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>Q2_K weights, multiplied with Q8_K activations.</summary>
public static unsafe class Q2_K
{
    /// <summary>
    /// Q2_K · Q8_K as ggml: per block d_a·d_w·Σ_g (sc_g &amp; 15)·Σ q·y − d_a·dmin_w·Σ_g (sc_g &gt;&gt; 4)·bsums_g, the integer sums exact.
    /// </summary>
    public static float DotRef(int n, byte* w, byte* a)
    {
        int nb = n / Q2_KFormat.BlockSize;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ2_K*)(w + (nint)i * Q2_KFormat.TypeSize);
            var y = (BlockQ8_K*)(a + (nint)i * Q8_KFormat.TypeSize);
            int isum = 0, summs = 0;
            for (int g = 0; g < 16; g++)
            {
                summs += (x->Scales[g] >> 4) * y->BSums[g];
                int dot = 0;
                for (int l = 0; l < 16; l++)
                {
                    int e = 16 * g + l;
                    int q = (x->Qs[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;
                    dot += q * y->Qs[e];
                }
                isum += (x->Scales[g] & 0xF) * dot;
            }
            float dall = y->D * HalfBits.ToFloat(x->D), dmin = y->D * HalfBits.ToFloat(x->DMin);
            sumf += dall * isum - dmin * summs;
        }
        return sumf;
    }

    internal static void Dot4Ref(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotRef(n, w, a + r * aStride);
    }

    /// <summary>The 16 scales (low nibbles) and mins (high nibbles) of a block as int16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<short> Scales, Vector256<short> Mins) ScalesMins(byte* x)
    {
        Vector128<byte> sc = Vector128.Load(x + Q2_KFormat.ScalesOffset);
        var m0F = Vector128.Create((byte)0x0F);
        return (Avx2.ConvertToVector256Int16(sc & m0F), Avx2.ConvertToVector256Int16(Vector128.ShiftRightLogical(sc.AsUInt16(), 4).AsByte() & m0F));
    }

    /// <summary>
    /// The four 32-byte vectors of one 128-element half: the four 2-bit fields of each qs byte are elements l, l + 32, l + 64, l + 96,
    /// two groups of 16 per vector (the low and high 128-bit lanes).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<byte> Q0, Vector256<byte> Q1, Vector256<byte> Q2, Vector256<byte> Q3) Unpack(Vector256<byte> qs)
    {
        var m3 = Vector256.Create((byte)3);
        Vector256<ushort> q = qs.AsUInt16();
        return (qs & m3, Vector256.ShiftRightLogical(q, 2).AsByte() & m3, Vector256.ShiftRightLogical(q, 4).AsByte() & m3,
            Vector256.ShiftRightLogical(q, 6).AsByte() & m3);
    }

    /// <summary>
    /// One 128-element half (<see cref="Unpack"/>) against 32-byte activation vectors at <paramref name="q8"/> with its group scales.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Half<T>(Vector256<int> s, Vector256<byte> qs, Vector256<byte> halfScales, sbyte* q8) where T : struct, IIntDot
    {
        var (q0, q1, q2, q3) = Unpack(qs);
        return Q6_K.Quad<T>(s, q0, q1, q2, q3, Q6_K.PairScales(halfScales, 0), Q6_K.PairScales(halfScales, 1),
            Q6_K.PairScales(halfScales, 2), Q6_K.PairScales(halfScales, 3), q8);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        int nb = n / Q2_KFormat.BlockSize;
        Vector256<float> acc = default, accMin = default;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * Q2_KFormat.TypeSize;
            byte* y = a + (nint)i * Q8_KFormat.TypeSize;
            var (scales, mins) = ScalesMins(x);
            float yd = *(float*)y;
            accMin = Simd.MulAdd(Q6_K.ScalesTimesBsums(mins, (short*)(y + Q8_KFormat.BSumsOffset)),
                yd * HalfBits.ToFloat(*(ushort*)(x + Q2_KFormat.DMinOffset)), accMin);
            Vector256<int> s = Half<T>(default, Vector256.Load(x + Q2_KFormat.QsOffset), Q6_K.HalfScales(scales, 0),
                (sbyte*)(y + Q8_KFormat.QsOffset));
            s = Half<T>(s, Vector256.Load(x + Q2_KFormat.QsOffset + 32), Q6_K.HalfScales(scales, 1), (sbyte*)(y + Q8_KFormat.QsOffset + 128));
            acc = Simd.MulAdd(s, yd * HalfBits.ToFloat(*(ushort*)(x + Q2_KFormat.DOffset)), acc);
        }
        return Simd.HSum(acc - accMin);
    }

    /// <summary>One weight row against 4 Q8_K activation rows, each block's scales and quants unpacked once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4Simd<T>(int n, byte* w, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        int nb = n / Q2_KFormat.BlockSize;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * Q2_KFormat.TypeSize;
            nint o = (nint)i * Q8_KFormat.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            var (scales, mins) = ScalesMins(x);
            float d = HalfBits.ToFloat(*(ushort*)(x + Q2_KFormat.DOffset)), dmin = HalfBits.ToFloat(*(ushort*)(x + Q2_KFormat.DMinOffset));
            acc0 = Mins(acc0, mins, y0, dmin);
            acc1 = Mins(acc1, mins, y1, dmin);
            acc2 = Mins(acc2, mins, y2, dmin);
            acc3 = Mins(acc3, mins, y3, dmin);
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int h = 0; h < 2; h++)
            {
                var (q0, q1, q2, q3) = Unpack(Vector256.Load(x + Q2_KFormat.QsOffset + 32 * h));
                Vector256<byte> hs = Q6_K.HalfScales(scales, h);
                Vector256<short> c0 = Q6_K.PairScales(hs, 0), c1 = Q6_K.PairScales(hs, 1), c2 = Q6_K.PairScales(hs, 2), c3 = Q6_K.PairScales(hs, 3);
                int off = Q8_KFormat.QsOffset + 128 * h;
                s0 = Q6_K.Quad<T>(s0, q0, q1, q2, q3, c0, c1, c2, c3, (sbyte*)(y0 + off));
                s1 = Q6_K.Quad<T>(s1, q0, q1, q2, q3, c0, c1, c2, c3, (sbyte*)(y1 + off));
                s2 = Q6_K.Quad<T>(s2, q0, q1, q2, q3, c0, c1, c2, c3, (sbyte*)(y2 + off));
                s3 = Q6_K.Quad<T>(s3, q0, q1, q2, q3, c0, c1, c2, c3, (sbyte*)(y3 + off));
            }
            acc0 = Simd.MulAdd(s0, d * *(float*)y0, acc0);
            acc1 = Simd.MulAdd(s1, d * *(float*)y1, acc1);
            acc2 = Simd.MulAdd(s2, d * *(float*)y2, acc2);
            acc3 = Simd.MulAdd(s3, d * *(float*)y3, acc3);
        }
        result[0] = Simd.HSum(acc0); result[1] = Simd.HSum(acc1); result[2] = Simd.HSum(acc2); result[3] = Simd.HSum(acc3);
    }

    /// <summary>
    /// The scaled part of a Q2_K row as Q8_0, value for value: d8 = d, q8 = (sc &amp; 15)·q in 0..45 (the prompt GEMM runs Q2_K weights
    /// as Q8_0 through this, with <see cref="RowMins"/> added per 16-element group).
    /// </summary>
    public static void ToQ8_0Ref(byte* src, byte* dst, int n)
    {
        int nb = n / Q2_KFormat.BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ2_K*)(src + (nint)i * Q2_KFormat.TypeSize);
            for (int b = 0; b < 8; b++)
            {
                byte* block = dst + ((nint)i * 8 + b) * Q8_0Format.TypeSize;
                *(ushort*)(block + Q8_0Format.DOffset) = x->D;
                for (int l = 0; l < 32; l++)
                {
                    int q = (x->Qs[32 * (b / 4) + l] >> (2 * (b % 4))) & 3;
                    block[Q8_0Format.QsOffset + l] = (byte)((x->Scales[2 * b + l / 16] & 0xF) * q);
                }
            }
        }
    }

    /// <inheritdoc cref="ToQ8_0Ref"/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void ToQ8_0(byte* src, byte* dst, int n)
    {
        int nb = n / Q2_KFormat.BlockSize;
        short* scales = stackalloc short[16];
        var m3 = Vector256.Create((byte)3);
        for (int i = 0; i < nb; i++)
        {
            byte* x = src + (nint)i * Q2_KFormat.TypeSize;
            ScalesMins(x).Scales.Store(scales);
            ushort d = *(ushort*)(x + Q2_KFormat.DOffset);
            byte* o = dst + (nint)i * 8 * Q8_0Format.TypeSize;
            for (int h = 0; h < 2; h++)
            {
                Vector256<byte> qs = Vector256.Load(x + Q2_KFormat.QsOffset + 32 * h);
                Vector256<ushort> q = qs.AsUInt16();
                Q3_K.Q8_0Block(o, 4 * h, (qs & m3).AsSByte(), scales, d);
                Q3_K.Q8_0Block(o, 4 * h + 1, (Vector256.ShiftRightLogical(q, 2).AsByte() & m3).AsSByte(), scales, d);
                Q3_K.Q8_0Block(o, 4 * h + 2, (Vector256.ShiftRightLogical(q, 4).AsByte() & m3).AsSByte(), scales, d);
                Q3_K.Q8_0Block(o, 4 * h + 3, (Vector256.ShiftRightLogical(q, 6).AsByte() & m3).AsSByte(), scales, d);
            }
        }
    }

    /// <summary>What <see cref="ToQ8_0"/> leaves out: per 16-element group g, −dmin·(sc_g &gt;&gt; 4), the offset of its every value.</summary>
    public static void RowMins(byte* src, float* mins, int n)
    {
        int nb = n / Q2_KFormat.BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ2_K*)(src + (nint)i * Q2_KFormat.TypeSize);
            float dmin = HalfBits.ToFloat(x->DMin);
            for (int g = 0; g < 16; g++) mins[i * 16 + g] = -(dmin * (x->Scales[g] >> 4));
        }
    }

    /// <summary>acc − d_a·dmin·Σ_g m_g·bsums_g (per lane pair).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Mins(Vector256<float> acc, Vector256<short> mins, byte* y, float dmin) =>
        Simd.MulAdd(Q6_K.ScalesTimesBsums(mins, (short*)(y + Q8_KFormat.BSumsOffset)), -dmin * *(float*)y, acc);
}
