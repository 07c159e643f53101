using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>F16 weights with F32 activations (no rounding of activations), accumulated in float32.</summary>
public static unsafe class F16
{
    /// <summary>2^112: rebiases a half exponent (bias 15) to float (bias 127).</summary>
    private const float Pow2Plus112 = 5.192296858534828e33f;

    public static float DotRef(int n, byte* w, byte* a)
    {
        var h = (ushort*)w;
        var y = (float*)a;
        float sum = 0;
        for (int i = 0; i < n; i++) sum += HalfBits.ToFloat(h[i]) * y[i];
        return sum;
    }

    /// <summary>16 halves → float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Load16(ushort* p) => ToFloat(Avx512F.ConvertToVector512UInt32(Vector256.Load(p)));

    /// <summary>8 halves → float32 (AVX2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Load8(ushort* p) => ToFloat(Avx2.ConvertToVector256Int32(p).AsUInt32());

    /// <summary>
    /// Half bits (one per uint lane) → float, exact: (bits &amp; 0x7FFF) &lt;&lt; 13 read as float times 2^112 (also right for
    /// subnormals), Inf/NaN fixed up.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> ToFloat(Vector512<uint> h)
    {
        Vector512<uint> em = (h & Vector512.Create(0x7FFFu)) << 13;
        Vector512<uint> sign = (h & Vector512.Create(0x8000u)) << 16;
        Vector512<float> f = em.AsSingle() * Vector512.Create(Pow2Plus112);
        Vector512<uint> infNan = Vector512.Equals(h & Vector512.Create(0x7C00u), Vector512.Create(0x7C00u));
        Vector512<uint> bits = Vector512.ConditionalSelect(infNan, em | Vector512.Create(0x7F800000u), f.AsUInt32());
        return (bits | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> ToFloat(Vector256<uint> h)
    {
        Vector256<uint> em = (h & Vector256.Create(0x7FFFu)) << 13;
        Vector256<uint> sign = (h & Vector256.Create(0x8000u)) << 16;
        Vector256<float> f = em.AsSingle() * Vector256.Create(Pow2Plus112);
        Vector256<uint> infNan = Vector256.Equals(h & Vector256.Create(0x7C00u), Vector256.Create(0x7C00u));
        Vector256<uint> bits = Vector256.ConditionalSelect(infNan, em | Vector256.Create(0x7F800000u), f.AsUInt32());
        return (bits | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotAvx512(int n, byte* w, byte* a)
    {
        var h = (ushort*)w;
        var y = (float*)a;
        int i = 0;
        float sum;
        Vector512<float> acc0 = default, acc1 = default;
        for (; i + 32 <= n; i += 32)
        {
            Sse.Prefetch0((byte*)(h + i) + Q4_0x8.PrefetchDistance); // decode streams the rows from DRAM
            acc0 = Avx512F.FusedMultiplyAdd(Load16(h + i), Vector512.Load(y + i), acc0);
            acc1 = Avx512F.FusedMultiplyAdd(Load16(h + i + 16), Vector512.Load(y + i + 16), acc1);
        }
        for (; i + 16 <= n; i += 16)
            acc0 = Avx512F.FusedMultiplyAdd(Load16(h + i), Vector512.Load(y + i), acc0);
        sum = Vector512.Sum(acc0 + acc1);
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(HalfBits.ToFloat(h[i]), y[i], sum);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotAvx2(int n, byte* w, byte* a)
    {
        var h = (ushort*)w;
        var y = (float*)a;
        int i = 0;
        float sum;
        Vector256<float> acc0 = default, acc1 = default;
        for (; i + 16 <= n; i += 16)
        {
            acc0 = Fma.MultiplyAdd(ToFloat(Avx2.ConvertToVector256Int32(Vector128.Load(h + i)).AsUInt32()), Vector256.Load(y + i), acc0);
            acc1 = Fma.MultiplyAdd(ToFloat(Avx2.ConvertToVector256Int32(Vector128.Load(h + i + 8)).AsUInt32()), Vector256.Load(y + i + 8), acc1);
        }
        for (; i + 8 <= n; i += 8)
            acc0 = Fma.MultiplyAdd(ToFloat(Avx2.ConvertToVector256Int32(Vector128.Load(h + i)).AsUInt32()), Vector256.Load(y + i), acc0);
        sum = Simd.HSum(acc0 + acc1);
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(HalfBits.ToFloat(h[i]), y[i], sum);
        return sum;
    }

    internal static void Dot4Ref(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotRef(n, w, a + r * aStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4Avx2(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotAvx2(n, w, a + r * aStride);
    }
}
