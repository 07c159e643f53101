using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>F32 weights with F32 activations, accumulated in float32.</summary>
public static unsafe class F32
{
    public static float DotRef(int n, byte* w, byte* a)
    {
        float* x = (float*)w, y = (float*)a;
        float sum = 0;
        for (int i = 0; i < n; i++) sum += x[i] * y[i];
        return sum;
    }

    /// <summary>AVX-512 (or AVX2) FMA with four accumulators; the tail in scalar.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotAvx512(int n, byte* w, byte* a)
    {
        float* x = (float*)w, y = (float*)a;
        int i = 0;
        float sum;
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (; i + 64 <= n; i += 64)
        {
            acc0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i), Vector512.Load(y + i), acc0);
            acc1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 16), Vector512.Load(y + i + 16), acc1);
            acc2 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 32), Vector512.Load(y + i + 32), acc2);
            acc3 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 48), Vector512.Load(y + i + 48), acc3);
        }
        for (; i + 16 <= n; i += 16) acc0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i), Vector512.Load(y + i), acc0);
        sum = Vector512.Sum((acc0 + acc1) + (acc2 + acc3));
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(x[i], y[i], sum);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotAvx2(int n, byte* w, byte* a)
    {
        float* x = (float*)w, y = (float*)a;
        int i = 0;
        float sum;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (; i + 32 <= n; i += 32)
        {
            acc0 = Fma.MultiplyAdd(Vector256.Load(x + i), Vector256.Load(y + i), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Load(x + i + 8), Vector256.Load(y + i + 8), acc1);
            acc2 = Fma.MultiplyAdd(Vector256.Load(x + i + 16), Vector256.Load(y + i + 16), acc2);
            acc3 = Fma.MultiplyAdd(Vector256.Load(x + i + 24), Vector256.Load(y + i + 24), acc3);
        }
        for (; i + 8 <= n; i += 8) acc0 = Fma.MultiplyAdd(Vector256.Load(x + i), Vector256.Load(y + i), acc0);
        sum = Simd.HSum((acc0 + acc1) + (acc2 + acc3));
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(x[i], y[i], sum);
        return sum;
    }

    internal static void Dot4Ref(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotRef(n, w, a + r * aStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4Avx512(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotAvx512(n, w, a + r * aStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4Avx2(int n, byte* w, byte* a, nint aStride, float* result)
    {
        for (int r = 0; r < 4; r++) result[r] = DotAvx2(n, w, a + r * aStride);
    }
}
