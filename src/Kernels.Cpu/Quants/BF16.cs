using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>BF16 weights with F32 activations (no rounding of activations), accumulated in float32.</summary>
public static unsafe class BF16
{
    public static float DotRef(int n, byte* w, byte* a)
    {
        var b = (ushort*)w;
        var y = (float*)a;
        float sum = 0;
        for (int i = 0; i < n; i++) sum += BFloat16Bits.ToFloat(b[i]) * y[i];
        return sum;
    }

    /// <summary>bf16 → f32 is a 16-bit left shift of the zero-extended bits; FMA into four accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotAvx512(int n, byte* w, byte* a)
    {
        var b = (ushort*)w;
        var y = (float*)a;
        int i = 0;
        float sum;
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (; i + 64 <= n; i += 64)
        {
            Simd.Prefetch((byte*)(b + i) + Q4_0x8.PrefetchDistance, 128); // decode streams the rows from DRAM
            acc0 = Avx512F.FusedMultiplyAdd(Load16(b + i), Vector512.Load(y + i), acc0);
            acc1 = Avx512F.FusedMultiplyAdd(Load16(b + i + 16), Vector512.Load(y + i + 16), acc1);
            acc2 = Avx512F.FusedMultiplyAdd(Load16(b + i + 32), Vector512.Load(y + i + 32), acc2);
            acc3 = Avx512F.FusedMultiplyAdd(Load16(b + i + 48), Vector512.Load(y + i + 48), acc3);
        }
        for (; i + 16 <= n; i += 16) acc0 = Avx512F.FusedMultiplyAdd(Load16(b + i), Vector512.Load(y + i), acc0);
        sum = Vector512.Sum((acc0 + acc1) + (acc2 + acc3));
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(BFloat16Bits.ToFloat(b[i]), y[i], sum);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotAvx2(int n, byte* w, byte* a)
    {
        var b = (ushort*)w;
        var y = (float*)a;
        int i = 0;
        float sum;
        Vector256<float> acc0 = default, acc1 = default;
        for (; i + 16 <= n; i += 16)
        {
            acc0 = Fma.MultiplyAdd(Load8(b + i), Vector256.Load(y + i), acc0);
            acc1 = Fma.MultiplyAdd(Load8(b + i + 8), Vector256.Load(y + i + 8), acc1);
        }
        for (; i + 8 <= n; i += 8) acc0 = Fma.MultiplyAdd(Load8(b + i), Vector256.Load(y + i), acc0);
        sum = Simd.HSum(acc0 + acc1);
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(BFloat16Bits.ToFloat(b[i]), y[i], sum);
        return sum;
    }

    /// <summary>16 bf16 values → float32: the bits zero-extended and shifted left 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Load16(ushort* p) => (Avx512F.ConvertToVector512UInt32(Vector256.Load(p)) << 16).AsSingle();

    private static Vector256<float> Load8(ushort* p) => (Avx2.ConvertToVector256Int32(Vector128.Load(p)).AsUInt32() << 16).AsSingle();

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
