using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

public static unsafe partial class Q8_0x8
{
    /// <summary>
    /// GEMM tile with 512-bit AVX-512BW for CPUs without AVX-VNNI (the signed layout of <see cref="RepackSigned"/>): 16 rows (two
    /// consecutive groups) · 8 activation rows. |w| (one vpabsb per weight vector, shared by the 8 tokens) times y with w's sign (a
    /// merge-masked negation per token: AVX-512 has no vpsignb), one vpmaddubsw pair ≤ 2·127·127 fits int16, widened per step.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Tile16x8Avx512(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y,
        nint yStride)
    {
        int nb = n / Q8_0Format.BlockSize;
        nint scalesOffset = (nint)nb * (Q8_0Format.TypeSize + sizeof(int));
        Vector512<float> f0 = default, f1 = default, f2 = default, f3 = default, f4 = default, f5 = default, f6 = default, f7 = default;
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * GroupBlockBytes + QuantsOffset, g1 = g0 + groupStride;
            byte* q = a + (nint)b * Q8_0Format.TypeSize + Q8_0Format.QsOffset;
            Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
            for (int k = 0; k < 8; k++)
            {
                Vector512<sbyte> v = Wide.Load2(g0 + 32 * k, g1 + 32 * k).AsSByte();
                Vector512<byte> u = Avx512BW.Abs(v);
                Vector512<sbyte> negative = Vector512.LessThan(v, Vector512<sbyte>.Zero);
                byte* qk = q + 4 * k;
                s0 = SignedStep(s0, u, negative, qk);
                s1 = SignedStep(s1, u, negative, qk + aStride);
                s2 = SignedStep(s2, u, negative, qk + 2 * aStride);
                s3 = SignedStep(s3, u, negative, qk + 3 * aStride);
                s4 = SignedStep(s4, u, negative, qk + 4 * aStride);
                s5 = SignedStep(s5, u, negative, qk + 5 * aStride);
                s6 = SignedStep(s6, u, negative, qk + 6 * aStride);
                s7 = SignedStep(s7, u, negative, qk + 7 * aStride);
            }
            Vector512<float> dx = Vector512.Load(scales + 16 * b);
            nint scale = scalesOffset + 4 * b;
            f0 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s0), dx * Vector512.Create(*(float*)(a + scale)), f0);
            f1 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s1), dx * Vector512.Create(*(float*)(a + aStride + scale)), f1);
            f2 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s2), dx * Vector512.Create(*(float*)(a + 2 * aStride + scale)), f2);
            f3 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s3), dx * Vector512.Create(*(float*)(a + 3 * aStride + scale)), f3);
            f4 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s4), dx * Vector512.Create(*(float*)(a + 4 * aStride + scale)), f4);
            f5 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s5), dx * Vector512.Create(*(float*)(a + 5 * aStride + scale)), f5);
            f6 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s6), dx * Vector512.Create(*(float*)(a + 6 * aStride + scale)), f6);
            f7 = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s7), dx * Vector512.Create(*(float*)(a + 7 * aStride + scale)), f7);
        }
        f0.Store(y); f1.Store(y + yStride); f2.Store(y + 2 * yStride); f3.Store(y + 3 * yStride);
        f4.Store(y + 4 * yStride); f5.Store(y + 5 * yStride); f6.Store(y + 6 * yStride); f7.Store(y + 7 * yStride);
    }

    /// <summary>s + Σ|w|·(y with w's sign) over 4 elements of 16 rows for one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> SignedStep(Vector512<int> s, Vector512<byte> u, Vector512<sbyte> negative, byte* q)
    {
        Vector512<sbyte> yv = Wide.Broadcast4(q);
        Vector512<sbyte> signed = Vector512.ConditionalSelect(negative, Vector512<sbyte>.Zero - yv, yv);
        return s + Wide.Widen(Wide.Mul16(u, signed), Vector512<short>.One);
    }
}
