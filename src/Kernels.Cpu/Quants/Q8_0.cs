using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>Q8_0 weights (and the activation format of Q4_0, Q5_0 and Q8_0 weights).</summary>
public static unsafe class Q8_0
{
    /// <summary>
    /// Activation rows for the Q8_0-paired kernels (<see cref="QuantKernel.QuantizeActivations"/>): the Q8_0 blocks of
    /// <see cref="Q8_0Format.QuantizeRef"/> (n/32 × 34 bytes), then one int32 per block, Σ qs, then one float per block, the block's
    /// scale d as float32 (the repacked kernels read these instead of summing and converting per weight row; see
    /// <see cref="BlockSums"/> and <see cref="BlockScales"/>).
    /// </summary>
    public static void QuantizeActivationsRef(float* x, byte* y, int n) => QuantizeActivationsRef(x, y, n, 1);

    /// <summary>
    /// <see cref="QuantizeActivationsRef(float*, byte*, int)"/>, vectorized (same bytes): each block's sum and scale written as it is
    /// quantized.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeActivationsFast(float* x, byte* y, int n) => QuantizeActivationsFast(x, y, n, 1);

    /// <summary>
    /// The activation rows of the AVX-VNNI Q8_0 kernels (<see cref="Q8_0x8"/>): as <see cref="QuantizeActivationsFast(float*, byte*, int)"/>
    /// but each block's int32 is −128·Σqs (<see cref="VnniSumFactor"/>), the term that removes the weights' +128 bias, so the kernels
    /// start their sums with one broadcast load instead of a multiply and a move from a general register per token and block.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeActivationsVnni(float* x, byte* y, int n) => QuantizeActivationsFast(x, y, n, VnniSumFactor);

    /// <summary>What <see cref="QuantizeActivationsVnni"/> multiplies each block's Σqs by.</summary>
    public const int VnniSumFactor = -128;

    private static void QuantizeActivationsRef(float* x, byte* y, int n, int sumFactor)
    {
        Q8_0Format.QuantizeRef(x, y, n);
        WriteBlockSums(y, n, sumFactor);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuantizeActivationsFast(float* x, byte* y, int n, int sumFactor)
    {
        if (!Avx2.IsSupported) { QuantizeActivationsRef(x, y, n, sumFactor); return; }
        int nb = n / Q8_0Format.BlockSize;
        int* sums = BlockSums(y, nb);
        float* scales = BlockScales(y, nb);
        var ones = Vector256.Create((byte)1);
        var ones16 = Vector256.Create((short)1);
        for (int i = 0; i < nb; i++)
        {
            var yb = (BlockQ8_0*)(y + (nint)i * Q8_0Format.TypeSize);
            Vector256<sbyte> q = QuantizeBlock(x + (nint)i * Q8_0Format.BlockSize, out float d);
            q.Store(yb->Qs);
            ushort h = HalfBits.FromFloat(d);
            yb->D = h;
            // Σ qs from the stored bytes: pairs (1·q + 1·q, |Σ| ≤ 254) then quads as int32
            sums[i] = sumFactor * Vector256.Sum(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(ones, q), ones16));
            scales[i] = HalfBits.ToFloat(h);
        }
    }

    /// <summary>Bytes of an activation row with its block-sum and block-scale trailers.</summary>
    public static long ActivationRowBytes(long n) => n / Q8_0Format.BlockSize * (Q8_0Format.TypeSize + sizeof(int) + sizeof(float));

    /// <summary>
    /// The int32 Σ qs per block of an activation row of <paramref name="nb"/> blocks (−128·Σ qs in
    /// <see cref="QuantizeActivationsVnni"/>'s rows).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int* BlockSums(byte* row, int nb) => (int*)(row + (nint)nb * Q8_0Format.TypeSize);

    /// <summary>The float32 scale per block of an activation row of <paramref name="nb"/> blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float* BlockScales(byte* row, int nb) => (float*)(row + (nint)nb * (Q8_0Format.TypeSize + sizeof(int)));

    private static void WriteBlockSums(byte* y, int n, int sumFactor)
    {
        int nb = n / Q8_0Format.BlockSize;
        int* sums = BlockSums(y, nb);
        float* scales = BlockScales(y, nb);
        for (int i = 0; i < nb; i++)
        {
            var block = (BlockQ8_0*)(y + (nint)i * Q8_0Format.TypeSize);
            int s = 0;
            for (int j = 0; j < Q8_0Format.BlockSize; j++) s += block->Qs[j];
            sums[i] = sumFactor * s;
            scales[i] = HalfBits.ToFloat(block->D);
        }
    }

    /// <summary>Same bytes as <see cref="Q8_0Format.QuantizeRef"/>, vectorized (AVX2).</summary>
    public static void QuantizeFast(float* x, byte* y, int n)
    {
        if (!Avx2.IsSupported) { Q8_0Format.QuantizeRef(x, y, n); return; }
        int nb = n / Q8_0Format.BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var yb = (BlockQ8_0*)(y + (nint)i * Q8_0Format.TypeSize);
            yb->D = HalfBits.FromFloat(QuantizeBlock(x + (nint)i * Q8_0Format.BlockSize, yb->Qs));
        }
    }

    /// <summary>One block of 32 (AVX2): the quants as <see cref="Q8_0Format.QuantizeRef"/> makes them, to <paramref name="qs"/>; returns d.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float QuantizeBlock(float* xb, sbyte* qs)
    {
        QuantizeBlock(xb, out float d).Store(qs);
        return d;
    }

    /// <summary>One block of 32 (AVX2): the quants as <see cref="Q8_0Format.QuantizeRef"/> makes them, in element order, and d.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> QuantizeBlock(float* xb, out float d)
    {
        var signMask = Vector256.Create(0x7FFFFFFF).AsSingle();
        Vector256<float> v0 = Avx.LoadVector256(xb), v1 = Avx.LoadVector256(xb + 8);
        Vector256<float> v2 = Avx.LoadVector256(xb + 16), v3 = Avx.LoadVector256(xb + 24);
        Vector256<float> m = Avx.Max(Avx.Max(v0 & signMask, v1 & signMask), Avx.Max(v2 & signMask, v3 & signMask));
        Vector128<float> m4 = Sse.Max(m.GetLower(), m.GetUpper());
        m4 = Sse.Max(m4, Sse.Shuffle(m4, m4, 0b01_00_11_10));
        m4 = Sse.Max(m4, Sse.Shuffle(m4, m4, 0b10_11_00_01));
        float amax = m4.ToScalar();
        d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        var vid = Vector256.Create(id);
        Vector256<int> i0 = RoundAway(v0 * vid), i1 = RoundAway(v1 * vid), i2 = RoundAway(v2 * vid), i3 = RoundAway(v3 * vid);
        // int32 → int16 → int8 packs work per 128-bit lane; fix the order with one permute
        Vector256<short> s01 = Avx2.PackSignedSaturate(i0, i1), s23 = Avx2.PackSignedSaturate(i2, i3);
        Vector256<sbyte> b = Avx2.PackSignedSaturate(s01, s23);
        return Avx2.PermuteVar8x32(b.AsInt32(), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsSByte();
    }

    /// <summary>roundf: half away from zero. trunc(x + copysign(0.5, x)) is wrong for 0.49999997; this is exact.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> RoundAway(Vector256<float> v)
    {
        Vector256<float> t = Avx.RoundToZero(v);
        Vector256<float> frac = v - t;
        var half = Vector256.Create(0.5f);
        var signBit = Vector256.Create(-0.0f);
        // |frac| >= 0.5 → step one away from zero (frac is exact: v and t share the exponent range)
        Vector256<float> up = Avx.CompareGreaterThanOrEqual(Avx.AndNot(signBit, frac), half);
        Vector256<float> step = (Vector256.Create(1.0f) | (v & signBit)) & up;
        return Avx.ConvertToVector256Int32WithTruncation(t + step);
    }

    /// <summary>ggml's <c>ggml_vec_dot_q8_0_q8_0</c> (generic): per block, integer sum times d_w * d_a.</summary>
    public static float DotRef(int n, byte* w, byte* a)
    {
        int nb = n / Q8_0Format.BlockSize;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (BlockQ8_0*)(w + (nint)i * Q8_0Format.TypeSize);
            var y = (BlockQ8_0*)(a + (nint)i * Q8_0Format.TypeSize);
            int sumi = 0;
            for (int j = 0; j < Q8_0Format.BlockSize; j++) sumi += x->Qs[j] * y->Qs[j];
            sumf += sumi * (HalfBits.ToFloat(x->D) * HalfBits.ToFloat(y->D));
        }
        return sumf;
    }

    /// <summary>Q8_0 · Q8_0, one block per 256-bit vector, two accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotSimd<T>(int n, byte* w, byte* a) where T : struct, IIntDot
    {
        int nb = n / Q8_0Format.BlockSize;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        int i = 0;
        for (; i + 1 < nb; i += 2)
        {
            byte* x = w + (nint)i * Q8_0Format.TypeSize, y = a + (nint)i * Q8_0Format.TypeSize;
            acc0 = BlockDot<T>(x, y, acc0);
            acc1 = BlockDot<T>(x + Q8_0Format.TypeSize, y + Q8_0Format.TypeSize, acc1);
        }
        if (i < nb) acc0 = BlockDot<T>(w + (nint)i * Q8_0Format.TypeSize, a + (nint)i * Q8_0Format.TypeSize, acc0);
        return Simd.HSum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockDot<T>(byte* x, byte* y, Vector256<float> acc) where T : struct, IIntDot
    {
        Vector256<sbyte> qx = Vector256.Load((sbyte*)(x + Q8_0Format.QsOffset)), qy = Vector256.Load((sbyte*)(y + Q8_0Format.QsOffset));
        Vector256<int> sumi = Simd.DotS8S8<T>(Vector256<int>.Zero, qx, qy);
        return Simd.MulAdd(sumi, HalfBits.ToFloat(*(ushort*)x) * HalfBits.ToFloat(*(ushort*)y), acc);
    }

    /// <summary>
    /// One weight row against 4 activation rows (<paramref name="a"/> + r * <paramref name="aStride"/> bytes), sharing the weight
    /// loads.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4Simd<T>(int n, byte* w, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        int nb = n / Q8_0Format.BlockSize;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        byte* a0 = a, a1 = a + aStride, a2 = a + 2 * aStride, a3 = a + 3 * aStride;
        for (int i = 0; i < nb; i++)
        {
            nint o = (nint)i * Q8_0Format.TypeSize;
            byte* x = w + o;
            Vector256<sbyte> qx = Vector256.Load((sbyte*)(x + Q8_0Format.QsOffset));
            Vector256<byte> ax = Avx2.Abs(qx);
            float dx = HalfBits.ToFloat(*(ushort*)x);
            acc0 = Column<T>(ax, qx, dx, a0 + o, acc0);
            acc1 = Column<T>(ax, qx, dx, a1 + o, acc1);
            acc2 = Column<T>(ax, qx, dx, a2 + o, acc2);
            acc3 = Column<T>(ax, qx, dx, a3 + o, acc3);
        }
        result[0] = Simd.HSum(acc0); result[1] = Simd.HSum(acc1); result[2] = Simd.HSum(acc2); result[3] = Simd.HSum(acc3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Column<T>(Vector256<byte> ax, Vector256<sbyte> qx, float dx, byte* y, Vector256<float> acc)
        where T : struct, IIntDot
    {
        Vector256<int> sumi = T.DotU8S8(Vector256<int>.Zero, ax, Avx2.Sign(Vector256.Load((sbyte*)(y + Q8_0Format.QsOffset)), qx));
        return Simd.MulAdd(sumi, dx * HalfBits.ToFloat(*(ushort*)y), acc);
    }

    internal static void Dot4Ref(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotRef(n, w, a + r * aStride);
    }
}
