using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>Q3_K weights, multiplied with Q8_K activations.</summary>
public static unsafe class Q3_K
{
    /// <summary>Q3_K · Q8_K as ggml: per block d_w·d_a·Σ_g (sc_g − 32)·Σ (q − 4)·y, the integer sum exact.</summary>
    public static float DotRef(int n, byte* w, byte* a)
    {
        int nb = n / Q3_KFormat.BlockSize;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ3_K*)(w + (nint)i * Q3_KFormat.TypeSize);
            var y = (BlockQ8_K*)(a + (nint)i * Q8_KFormat.TypeSize);
            int isum = 0;
            for (int g = 0; g < 16; g++)
            {
                int dot = 0;
                for (int l = 0; l < 16; l++)
                {
                    int e = 16 * g + l;
                    int low = (x->Qs[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;
                    int high = (x->HMask[e % 32] >> (e / 32)) & 1;
                    dot += (low + 4 * high - 4) * y->Qs[e];
                }
                isum += Q3_KFormat.Scale(x->Scales, g) * dot;
            }
            sumf += HalfBits.ToFloat(x->D) * y->D * isum;
        }
        return sumf;
    }

    internal static void Dot4Ref(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotRef(n, w, a + r * aStride);
    }

    /// <summary>The 16 scales of a block, minus 32, as int16 lanes (ggml's unpacking of the 12 bytes into four words).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Scales(byte* x)
    {
        byte* p = x + Q3_KFormat.ScalesOffset;
        uint a0 = *(uint*)p, a1 = *(uint*)(p + 4), tmp = *(uint*)(p + 8);
        const uint low = 0x0F0F0F0F, high = 0x03030303;
        var v = Vector128.Create((a0 & low) | ((tmp & high) << 4), (a1 & low) | (((tmp >> 2) & high) << 4),
            ((a0 >> 4) & low) | (((tmp >> 4) & high) << 4), ((a1 >> 4) & low) | (((tmp >> 6) & high) << 4));
        return Avx2.ConvertToVector256Int16((v.AsByte() - Vector128.Create((byte)32)).AsSByte());
    }

    /// <summary>
    /// The four 32-byte vectors of one 128-element half: q + 4 (0..7, unsigned) from the 2-bit fields of <paramref name="qs"/> and
    /// bits 4h..4h + 3 of the high-bit mask <paramref name="hm"/>; vector j holds elements 128h + 32j ...
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<byte> U0, Vector256<byte> U1, Vector256<byte> U2, Vector256<byte> U3) Unpack(Vector256<byte> qs,
        Vector256<byte> hm, int h)
    {
        var m3 = Vector256.Create((byte)3);
        var m4 = Vector256.Create((byte)4);
        Vector256<ushort> q = qs.AsUInt16(), m = hm.AsUInt16();
        // bit 4h + j of each mask byte moved to bit 2 (16-bit shifts; the bits that cross into the next byte are masked off)
        Vector256<byte> u0 = (qs & m3) | (h == 0 ? Vector256.ShiftLeft(m, 2).AsByte() : Vector256.ShiftRightLogical(m, 2).AsByte()) & m4;
        Vector256<byte> u1 = (Vector256.ShiftRightLogical(q, 2).AsByte() & m3)
            | (h == 0 ? Vector256.ShiftLeft(m, 1).AsByte() : Vector256.ShiftRightLogical(m, 3).AsByte()) & m4;
        Vector256<byte> u2 = (Vector256.ShiftRightLogical(q, 4).AsByte() & m3)
            | (h == 0 ? hm : Vector256.ShiftRightLogical(m, 4).AsByte()) & m4;
        Vector256<byte> u3 = (Vector256.ShiftRightLogical(q, 6).AsByte() & m3)
            | (h == 0 ? Vector256.ShiftRightLogical(m, 1).AsByte() : Vector256.ShiftRightLogical(m, 5).AsByte()) & m4;
        return (u0, u1, u2, u3);
    }

    /// <summary>
    /// One 128-element half (<see cref="Unpack"/>) against 32-byte activation vectors at <paramref name="q8"/> with the half's group
    /// scales.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Half<T>(Vector256<int> s, Vector256<byte> qs, Vector256<byte> hm, int h, Vector256<byte> halfScales, sbyte* q8)
        where T : struct, IIntDot
    {
        var (u0, u1, u2, u3) = Unpack(qs, hm, h);
        return Q6_K.Quad<T>(s, u0, u1, u2, u3, Q6_K.PairScales(halfScales, 0), Q6_K.PairScales(halfScales, 1),
            Q6_K.PairScales(halfScales, 2), Q6_K.PairScales(halfScales, 3), q8);
    }

    /// <summary>
    /// Q3_K → Q8_0, value for value (the prompt GEMM runs Q3_K weights as Q8_0 through this): each 32-element Q8_0 block is two
    /// 16-element groups of one super-block, d8 = −d (the sign flip of an fp16) and q8 = −(sc − 32)·(q − 4) in −128..124.
    /// </summary>
    public static void ToQ8_0Ref(byte* src, byte* dst, int n)
    {
        int nb = n / Q3_KFormat.BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ3_K*)(src + (nint)i * Q3_KFormat.TypeSize);
            for (int b = 0; b < 8; b++)
            {
                byte* block = dst + ((nint)i * 8 + b) * Q8_0Format.TypeSize;
                *(ushort*)(block + Q8_0Format.DOffset) = (ushort)(x->D ^ 0x8000);
                for (int l = 0; l < 32; l++)
                {
                    int low = (x->Qs[32 * (b / 4) + l] >> (2 * (b % 4))) & 3, high = (x->HMask[l] >> b) & 1;
                    int scale = Q3_KFormat.Scale(x->Scales, 2 * b + l / 16);
                    block[Q8_0Format.QsOffset + l] = (byte)(sbyte)(-scale * (low + 4 * high - 4));
                }
            }
        }
    }

    /// <inheritdoc cref="ToQ8_0Ref"/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void ToQ8_0(byte* src, byte* dst, int n)
    {
        int nb = n / Q3_KFormat.BlockSize;
        short* neg = stackalloc short[16];
        var four = Vector256.Create((byte)4);
        for (int i = 0; i < nb; i++)
        {
            byte* x = src + (nint)i * Q3_KFormat.TypeSize;
            (Vector256<short>.Zero - Scales(x)).Store(neg);
            ushort d = (ushort)(*(ushort*)(x + Q3_KFormat.DOffset) ^ 0x8000);
            Vector256<byte> hm = Vector256.Load(x + Q3_KFormat.HMaskOffset);
            byte* o = dst + (nint)i * 8 * Q8_0Format.TypeSize;
            for (int h = 0; h < 2; h++)
            {
                var (u0, u1, u2, u3) = Unpack(Vector256.Load(x + Q3_KFormat.QsOffset + 32 * h), hm, h);
                Q8_0Block(o, 4 * h, (u0 - four).AsSByte(), neg, d);
                Q8_0Block(o, 4 * h + 1, (u1 - four).AsSByte(), neg, d);
                Q8_0Block(o, 4 * h + 2, (u2 - four).AsSByte(), neg, d);
                Q8_0Block(o, 4 * h + 3, (u3 - four).AsSByte(), neg, d);
            }
        }
    }

    /// <summary>
    /// Q8_0 block <paramref name="b"/> at <paramref name="o"/>: scale bits <paramref name="d"/>, quants <paramref name="q"/> times
    /// scales[2b] (elements 0-15) and scales[2b + 1] (16-31), products that fit int8.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Q8_0Block(byte* o, int b, Vector256<sbyte> q, short* scales, ushort d)
    {
        byte* block = o + b * Q8_0Format.TypeSize;
        *(ushort*)(block + Q8_0Format.DOffset) = d;
        Vector256<short> lo = Avx2.ConvertToVector256Int16(q.GetLower()) * Vector256.Create(scales[2 * b]);
        Vector256<short> hi = Avx2.ConvertToVector256Int16(q.GetUpper()) * Vector256.Create(scales[2 * b + 1]);
        Vector256.Narrow(lo, hi).Store((sbyte*)(block + Q8_0Format.QsOffset));
    }

    /// <summary>−4 · Σ_g sc_g·bsums_g per lane pair: what turns Σ sc·(q + 4)·y into Σ sc·q·y (|·| ≤ 4·2·32·2048).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Offset(Vector256<short> scales, byte* y) =>
        Vector256<int>.Zero - (Q6_K.ScalesTimesBsums(scales, (short*)(y + Q8_KFormat.BSumsOffset)) << 2);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        int nb = n / Q3_KFormat.BlockSize;
        Vector256<float> acc = default;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * Q3_KFormat.TypeSize;
            byte* y = a + (nint)i * Q8_KFormat.TypeSize;
            Vector256<short> scales = Scales(x);
            Vector256<byte> hm = Vector256.Load(x + Q3_KFormat.HMaskOffset);
            Vector256<int> s = Half<T>(Offset(scales, y), Vector256.Load(x + Q3_KFormat.QsOffset), hm, 0, Q6_K.HalfScales(scales, 0),
                (sbyte*)(y + Q8_KFormat.QsOffset));
            s = Half<T>(s, Vector256.Load(x + Q3_KFormat.QsOffset + 32), hm, 1, Q6_K.HalfScales(scales, 1), (sbyte*)(y + Q8_KFormat.QsOffset + 128));
            acc = Simd.MulAdd(s, HalfBits.ToFloat(*(ushort*)(x + Q3_KFormat.DOffset)) * *(float*)y, acc);
        }
        return Simd.HSum(acc);
    }

    /// <summary>One weight row against 4 Q8_K activation rows, each block's scales and quants unpacked once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4Simd<T>(int n, byte* w, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        int nb = n / Q3_KFormat.BlockSize;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (nint)i * Q3_KFormat.TypeSize;
            nint o = (nint)i * Q8_KFormat.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            Vector256<short> scales = Scales(x);
            Vector256<byte> hm = Vector256.Load(x + Q3_KFormat.HMaskOffset);
            Vector256<int> s0 = Offset(scales, y0), s1 = Offset(scales, y1), s2 = Offset(scales, y2), s3 = Offset(scales, y3);
            for (int h = 0; h < 2; h++)
            {
                var (u0, u1, u2, u3) = Unpack(Vector256.Load(x + Q3_KFormat.QsOffset + 32 * h), hm, h);
                Vector256<byte> hs = Q6_K.HalfScales(scales, h);
                Vector256<short> c0 = Q6_K.PairScales(hs, 0), c1 = Q6_K.PairScales(hs, 1), c2 = Q6_K.PairScales(hs, 2), c3 = Q6_K.PairScales(hs, 3);
                int off = Q8_KFormat.QsOffset + 128 * h;
                s0 = Q6_K.Quad<T>(s0, u0, u1, u2, u3, c0, c1, c2, c3, (sbyte*)(y0 + off));
                s1 = Q6_K.Quad<T>(s1, u0, u1, u2, u3, c0, c1, c2, c3, (sbyte*)(y1 + off));
                s2 = Q6_K.Quad<T>(s2, u0, u1, u2, u3, c0, c1, c2, c3, (sbyte*)(y2 + off));
                s3 = Q6_K.Quad<T>(s3, u0, u1, u2, u3, c0, c1, c2, c3, (sbyte*)(y3 + off));
            }
            float d = HalfBits.ToFloat(*(ushort*)(x + Q3_KFormat.DOffset));
            acc0 = Simd.MulAdd(s0, d * *(float*)y0, acc0);
            acc1 = Simd.MulAdd(s1, d * *(float*)y1, acc1);
            acc2 = Simd.MulAdd(s2, d * *(float*)y2, acc2);
            acc3 = Simd.MulAdd(s3, d * *(float*)y3, acc3);
        }
        result[0] = Simd.HSum(acc0); result[1] = Simd.HSum(acc1); result[2] = Simd.HSum(acc2); result[3] = Simd.HSum(acc3);
    }
}
