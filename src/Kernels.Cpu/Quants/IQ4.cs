using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>IQ4_NL weights with Q8_0 activations and IQ4_XS weights with Q8_K activations (ggml's vec-dot types).</summary>
public static unsafe class IQ4
{
    /// <summary>IQ4_NL · Q8_0: per block d_w·d_a·Σ kvalues[q]·y, the integer sum exact.</summary>
    public static float DotNlRef(int n, byte* w, byte* a)
    {
        var kv = IQ4Format.Values;
        float sumf = 0;
        for (int i = 0; i < n / IQ4Format.NlBlockSize; i++)
        {
            var x = (BlockIQ4_NL*)(w + (nint)i * IQ4Format.NlTypeSize);
            var y = (BlockQ8_0*)(a + (nint)i * Q8_0Format.TypeSize);
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += kv[x->Qs[j] & 0xF] * y->Qs[j] + kv[x->Qs[j] >> 4] * y->Qs[j + 16];
            sumf += HalfBits.ToFloat(x->D) * HalfBits.ToFloat(y->D) * sum;
        }
        return sumf;
    }

    internal static void Dot4NlRef(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotNlRef(n, w, a + r * aStride);
    }

    /// <summary>IQ4_XS · Q8_K: per super-block d_w·d_a·Σ_ib (ls_ib − 32)·Σ kvalues[q]·y, the integer sums exact.</summary>
    public static float DotXsRef(int n, byte* w, byte* a)
    {
        var kv = IQ4Format.Values;
        float sumf = 0;
        for (int i = 0; i < n / IQ4Format.XsBlockSize; i++)
        {
            var x = (BlockIQ4_XS*)(w + (nint)i * IQ4Format.XsTypeSize);
            var y = (BlockQ8_K*)(a + (nint)i * Q8_KFormat.TypeSize);
            int isum = 0;
            for (int ib = 0; ib < 8; ib++)
            {
                byte* qs = x->Qs + 16 * ib;
                int sum = 0;
                for (int j = 0; j < 16; j++) sum += kv[qs[j] & 0xF] * y->Qs[32 * ib + j] + kv[qs[j] >> 4] * y->Qs[32 * ib + j + 16];
                isum += IQ4Format.XsScale(x, ib) * sum;
            }
            sumf += HalfBits.ToFloat(x->D) * y->D * isum;
        }
        return sumf;
    }

    internal static void Dot4XsRef(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotXsRef(n, w, a + r * aStride);
    }

    /// <summary>The table in both 128-bit lanes, for <c>vpshufb</c>.</summary>
    private static Vector256<sbyte> Table
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            var t = Vector128.Create(IQ4Format.Values);
            return Vector256.Create(t, t);
        }
    }

    /// <summary>The 32 values of 16 qs bytes (low nibbles: elements 0-15, high: 16-31) as signed bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Values32(byte* qs, Vector256<sbyte> table)
    {
        Vector128<byte> q = Vector128.Load(qs), m = Vector128.Create((byte)0x0F);
        var idx = Vector256.Create(q & m, Vector128.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & m);
        return Avx2.Shuffle(table, idx.AsSByte());
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotNlSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        var table = Table;
        Vector256<float> acc = default;
        for (int i = 0; i < n / IQ4Format.NlBlockSize; i++)
        {
            byte* x = w + (nint)i * IQ4Format.NlTypeSize;
            byte* y = a + (nint)i * Q8_0Format.TypeSize;
            acc = NlBlock<T>(acc, Values32(x + IQ4Format.NlQsOffset, table), HalfBits.ToFloat(*(ushort*)x), y);
        }
        return Simd.HSum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4NlSimd<T>(int n, byte* w, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        var table = Table;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int i = 0; i < n / IQ4Format.NlBlockSize; i++)
        {
            byte* x = w + (nint)i * IQ4Format.NlTypeSize;
            byte* y = a + (nint)i * Q8_0Format.TypeSize;
            Vector256<sbyte> v = Values32(x + IQ4Format.NlQsOffset, table);
            float d = HalfBits.ToFloat(*(ushort*)x);
            acc0 = NlBlock<T>(acc0, v, d, y);
            acc1 = NlBlock<T>(acc1, v, d, y + aStride);
            acc2 = NlBlock<T>(acc2, v, d, y + 2 * aStride);
            acc3 = NlBlock<T>(acc3, v, d, y + 3 * aStride);
        }
        result[0] = Simd.HSum(acc0); result[1] = Simd.HSum(acc1); result[2] = Simd.HSum(acc2); result[3] = Simd.HSum(acc3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> NlBlock<T>(Vector256<float> acc, Vector256<sbyte> v, float d, byte* y) where T : struct, IIntDot =>
        Simd.MulAdd(Simd.DotS8S8<T>(default, v, Vector256.Load((sbyte*)(y + Q8_0Format.QsOffset))), d * HalfBits.ToFloat(*(ushort*)y), acc);

    /// <summary>Sub-block <paramref name="ib"/>'s scale (ls − 32, <see cref="IQ4Format.XsScale"/>) in every int16 lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> XsScale(byte* x, int ib) => Vector256.Create((short)IQ4Format.XsScale((BlockIQ4_XS*)x, ib));

    /// <summary>
    /// Two sub-blocks' values (<paramref name="v0"/>, <paramref name="v1"/>) against 64 activations at <paramref name="y"/>: int16 sums
    /// of product pairs (|kvalue| ≤ 127, |y| ≤ 128) times each sub-block's scale, added to <paramref name="s"/> as int32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> XsPair<T>(Vector256<int> s, Vector256<sbyte> v0, Vector256<sbyte> v1, sbyte* y, Vector256<short> scale0,
        Vector256<short> scale1) where T : struct, IIntDot
    {
        Vector256<sbyte> y0 = Vector256.Load(y), y1 = Vector256.Load(y + 32);
        s = T.MaddS16(s, Avx2.MultiplyAddAdjacent(Avx2.Abs(v0), Avx2.Sign(y0, v0)), scale0);
        return T.MaddS16(s, Avx2.MultiplyAddAdjacent(Avx2.Abs(v1), Avx2.Sign(y1, v1)), scale1);
    }

    /// <summary>Σ_ib (ls_ib − 32)·Σ kvalues·y over one super-block against one Q8_K block (int32 lanes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> XsBlock<T>(byte* x, byte* y, Vector256<sbyte> table) where T : struct, IIntDot
    {
        Vector256<int> s = default;
        for (int k = 0; k < 4; k++)
            s = XsPair<T>(s, Values32(x + IQ4Format.XsQsOffset + 32 * k, table), Values32(x + IQ4Format.XsQsOffset + 32 * k + 16, table),
                (sbyte*)(y + Q8_KFormat.QsOffset + 64 * k), XsScale(x, 2 * k), XsScale(x, 2 * k + 1));
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotXsSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        var table = Table;
        Vector256<float> acc = default;
        for (int i = 0; i < n / IQ4Format.XsBlockSize; i++)
        {
            byte* x = w + (nint)i * IQ4Format.XsTypeSize;
            byte* y = a + (nint)i * Q8_KFormat.TypeSize;
            acc = Simd.MulAdd(XsBlock<T>(x, y, table), HalfBits.ToFloat(*(ushort*)x) * *(float*)y, acc);
        }
        return Simd.HSum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4XsSimd<T>(int n, byte* w, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        var table = Table;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int i = 0; i < n / IQ4Format.XsBlockSize; i++)
        {
            byte* x = w + (nint)i * IQ4Format.XsTypeSize;
            nint o = (nint)i * Q8_KFormat.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int k = 0; k < 4; k++)
            {
                Vector256<short> c0 = XsScale(x, 2 * k), c1 = XsScale(x, 2 * k + 1);
                byte* qs = x + IQ4Format.XsQsOffset + 32 * k;
                Vector256<sbyte> v0 = Values32(qs, table), v1 = Values32(qs + 16, table);
                int q = Q8_KFormat.QsOffset + 64 * k;
                s0 = XsPair<T>(s0, v0, v1, (sbyte*)(y0 + q), c0, c1);
                s1 = XsPair<T>(s1, v0, v1, (sbyte*)(y1 + q), c0, c1);
                s2 = XsPair<T>(s2, v0, v1, (sbyte*)(y2 + q), c0, c1);
                s3 = XsPair<T>(s3, v0, v1, (sbyte*)(y3 + q), c0, c1);
            }
            float d = HalfBits.ToFloat(*(ushort*)x);
            acc0 = Simd.MulAdd(s0, d * *(float*)y0, acc0);
            acc1 = Simd.MulAdd(s1, d * *(float*)y1, acc1);
            acc2 = Simd.MulAdd(s2, d * *(float*)y2, acc2);
            acc3 = Simd.MulAdd(s3, d * *(float*)y3, acc3);
        }
        result[0] = Simd.HSum(acc0); result[1] = Simd.HSum(acc1); result[2] = Simd.HSum(acc2); result[3] = Simd.HSum(acc3);
    }

    /// <summary>
    /// IQ4_XS → two Q8_0 rows, together value for value: p = (ls − 32)·kvalue[q] in −4064..4064 is 32·hi + lo with hi = p &gt;&gt; 5
    /// (−127..127) and lo in 0..31; the first n elements are the hi parts with scale 32·d, the next n the lo parts with scale d
    /// (2n elements out; 32·d is exact in fp16 while |d| &lt; 2047).
    /// </summary>
    public static void XsToQ8_0x2Ref(byte* src, byte* dst, int n)
    {
        var kv = IQ4Format.Values;
        int blocks = n / 32;
        for (int i = 0; i < n / IQ4Format.XsBlockSize; i++)
        {
            var x = (BlockIQ4_XS*)(src + (nint)i * IQ4Format.XsTypeSize);
            ushort dHi = HalfBits.FromFloat(32 * HalfBits.ToFloat(x->D));
            for (int ib = 0; ib < 8; ib++)
            {
                byte* hi = dst + ((nint)i * 8 + ib) * Q8_0Format.TypeSize, lo = hi + (nint)blocks * Q8_0Format.TypeSize;
                *(ushort*)(hi + Q8_0Format.DOffset) = dHi;
                *(ushort*)(lo + Q8_0Format.DOffset) = x->D;
                int a = IQ4Format.XsScale(x, ib);
                for (int j = 0; j < 32; j++)
                {
                    byte b = x->Qs[16 * ib + j % 16];
                    int p = a * kv[j < 16 ? b & 0xF : b >> 4];
                    hi[Q8_0Format.QsOffset + j] = (byte)(sbyte)(p >> 5);
                    lo[Q8_0Format.QsOffset + j] = (byte)(p & 31);
                }
            }
        }
    }

    /// <inheritdoc cref="XsToQ8_0x2Ref"/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void XsToQ8_0x2(byte* src, byte* dst, int n)
    {
        var table = Table;
        int blocks = n / 32;
        var m31 = Vector256.Create((short)31);
        for (int i = 0; i < n / IQ4Format.XsBlockSize; i++)
        {
            byte* x = src + (nint)i * IQ4Format.XsTypeSize;
            ushort d = *(ushort*)x, dHi = HalfBits.FromFloat(32 * HalfBits.ToFloat(d));
            for (int ib = 0; ib < 8; ib++)
            {
                byte* hi = dst + ((nint)i * 8 + ib) * Q8_0Format.TypeSize, lo = hi + (nint)blocks * Q8_0Format.TypeSize;
                *(ushort*)(hi + Q8_0Format.DOffset) = dHi;
                *(ushort*)(lo + Q8_0Format.DOffset) = d;
                Vector256<sbyte> v = Values32(x + IQ4Format.XsQsOffset + 16 * ib, table);
                Vector256<short> a = XsScale(x, ib);
                Vector256<short> p0 = Avx2.ConvertToVector256Int16(v.GetLower()) * a, p1 = Avx2.ConvertToVector256Int16(v.GetUpper()) * a;
                Vector256.Narrow(Vector256.ShiftRightArithmetic(p0, 5), Vector256.ShiftRightArithmetic(p1, 5))
                    .Store((sbyte*)(hi + Q8_0Format.QsOffset));
                Vector256.Narrow(p0 & m31, p1 & m31).Store((sbyte*)(lo + Q8_0Format.QsOffset));
            }
        }
    }

    /// <summary>IQ4_NL → Q8_0, value for value (the prompt GEMM runs IQ4_NL weights as Q8_0 through this): d8 = d, q8 = kvalues[q].</summary>
    public static void NlToQ8_0Ref(byte* src, byte* dst, int n)
    {
        var kv = IQ4Format.Values;
        for (int i = 0; i < n / IQ4Format.NlBlockSize; i++)
        {
            var x = (BlockIQ4_NL*)(src + (nint)i * IQ4Format.NlTypeSize);
            byte* o = dst + (nint)i * Q8_0Format.TypeSize;
            *(ushort*)(o + Q8_0Format.DOffset) = x->D;
            for (int j = 0; j < 16; j++)
            {
                o[Q8_0Format.QsOffset + j] = (byte)kv[x->Qs[j] & 0xF];
                o[Q8_0Format.QsOffset + j + 16] = (byte)kv[x->Qs[j] >> 4];
            }
        }
    }

    /// <inheritdoc cref="NlToQ8_0Ref"/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void NlToQ8_0(byte* src, byte* dst, int n)
    {
        var table = Table;
        for (int i = 0; i < n / IQ4Format.NlBlockSize; i++)
        {
            byte* x = src + (nint)i * IQ4Format.NlTypeSize;
            byte* o = dst + (nint)i * Q8_0Format.TypeSize;
            *(ushort*)(o + Q8_0Format.DOffset) = *(ushort*)x;
            Values32(x + IQ4Format.NlQsOffset, table).Store((sbyte*)(o + Q8_0Format.QsOffset));
        }
    }
}
