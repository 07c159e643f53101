using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>Q8_K: the activation format of the K-quant weights (ggml has no Q8_K weight dot).</summary>
public static unsafe class Q8_K
{
    /// <summary>
    /// Same bytes as <see cref="Q8_KFormat.QuantizeRef"/>, vectorized (AVX2): nearest_int is round-half-even for |v| ≤ 4194303, which is what
    /// vcvtps2dq does under the default rounding mode; max is the first element of largest magnitude, found with a compare mask.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeFast(float* x, byte* y, int n)
    {
        if (!Avx2.IsSupported) { Q8_KFormat.QuantizeRef(x, y, n); return; }
        int nb = n / Q8_KFormat.BlockSize;
        var absMask = Vector256.Create(0x7FFFFFFF).AsSingle();
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * Q8_KFormat.BlockSize;
            var yb = (BlockQ8_K*)(y + (nint)i * Q8_KFormat.TypeSize);
            Vector256<float> m = Vector256<float>.Zero;
            for (int j = 0; j < Q8_KFormat.BlockSize; j += 8) m = Avx.Max(m, Avx.LoadVector256(xb + j) & absMask);
            Vector128<float> m4 = Sse.Max(m.GetLower(), m.GetUpper());
            m4 = Sse.Max(m4, Sse.Shuffle(m4, m4, 0b01_00_11_10));
            m4 = Sse.Max(m4, Sse.Shuffle(m4, m4, 0b10_11_00_01));
            float amax = m4.ToScalar();
            if (amax == 0 || float.IsNaN(amax)) { Q8_KFormat.QuantizeRef(xb, (byte*)yb, Q8_KFormat.BlockSize); continue; }
            var vamax = Vector256.Create(amax);
            float max = 0;
            for (int j = 0; j < Q8_KFormat.BlockSize; j += 8)
            {
                uint hits = Vector256.Equals(Avx.LoadVector256(xb + j) & absMask, vamax).ExtractMostSignificantBits();
                if (hits != 0) { max = xb[j + BitOperations.TrailingZeroCount(hits)]; break; }
            }
            float iscale = -127.0f / max;
            var vscale = Vector256.Create(iscale);
            var v127 = Vector256.Create(127);
            for (int g = 0; g < Q8_KFormat.BlockSize / 16; g++)
            {
                Vector256<int> q0 = Avx2.Min(Avx.ConvertToVector256Int32(Avx.LoadVector256(xb + 16 * g) * vscale), v127);
                Vector256<int> q1 = Avx2.Min(Avx.ConvertToVector256Int32(Avx.LoadVector256(xb + 16 * g + 8) * vscale), v127);
                yb->BSums[g] = (short)Simd.HSum(q0 + q1);
                // int32 → int16 → int8 packs work per 128-bit lane: [q0 lo, q1 lo | q0 hi, q1 hi] → bytes 0-3, 8-11 | 4-7, 12-15
                Vector256<short> s = Avx2.PackSignedSaturate(q0, q1);
                Vector128<sbyte> b = Sse2.PackSignedSaturate(s.GetLower(), s.GetUpper());
                b = Sse2.Shuffle(b.AsInt32(), 0b11_01_10_00).AsSByte();
                b.Store(yb->Qs + 16 * g);
            }
            yb->D = 1 / iscale;
        }
    }
}
