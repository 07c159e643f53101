using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>ggml <c>block_q8_K</c>: 256 values = d (float32) * qs[i]; bsums[g] = Σ qs over the g-th group of 16 (used for the K-quants' min and offset terms).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ8_K
{
    public float D;
    public fixed sbyte Qs[256];
    public fixed short BSums[16];
}

/// <summary>Q8_K: the activation format of the K-quant weights (ggml has no Q8_K weight dot).</summary>
public static unsafe class Q8_K
{
    public const int BlockSize = 256;
    public const int TypeSize = 292;

    /// <summary>ggml's <c>quantize_row_q8_K_ref</c>: iscale = -127/max (max = value of largest magnitude), q = min(127, nearest_int(iscale*x)), d = 1/iscale.</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ8_K*)(y + (nint)i * TypeSize);
            float max = 0, amax = 0;
            for (int j = 0; j < BlockSize; ++j)
            {
                float ax = MathF.Abs(xb[j]);
                if (ax > amax) { amax = ax; max = xb[j]; }
            }
            if (amax == 0)
            {
                yb->D = 0;
                for (int j = 0; j < BlockSize; ++j) yb->Qs[j] = 0;
                for (int j = 0; j < BlockSize / 16; ++j) yb->BSums[j] = 0;
                continue;
            }
            float iscale = -127.0f / max;
            for (int j = 0; j < BlockSize; ++j) yb->Qs[j] = (sbyte)Math.Min(127, Scalar.NearestInt(iscale * xb[j]));
            for (int j = 0; j < BlockSize / 16; ++j)
            {
                int sum = 0;
                for (int ii = 0; ii < 16; ++ii) sum += yb->Qs[j * 16 + ii];
                yb->BSums[j] = (short)sum;
            }
            yb->D = 1 / iscale;
        }
    }

    /// <summary>
    /// Same bytes as <see cref="QuantizeRef"/>, vectorized (AVX2): nearest_int is round-half-even for |v| ≤ 4194303, which is what
    /// vcvtps2dq does under the default rounding mode; max is the first element of largest magnitude, found with a compare mask.
    /// </summary>
    public static void QuantizeFast(float* x, byte* y, int n)
    {
        if (!Avx2.IsSupported) { QuantizeRef(x, y, n); return; }
        int nb = n / BlockSize;
        var absMask = Vector256.Create(0x7FFFFFFF).AsSingle();
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ8_K*)(y + (nint)i * TypeSize);
            Vector256<float> m = Vector256<float>.Zero;
            for (int j = 0; j < BlockSize; j += 8) m = Avx.Max(m, Avx.LoadVector256(xb + j) & absMask);
            Vector128<float> m4 = Sse.Max(m.GetLower(), m.GetUpper());
            m4 = Sse.Max(m4, Sse.Shuffle(m4, m4, 0b01_00_11_10));
            m4 = Sse.Max(m4, Sse.Shuffle(m4, m4, 0b10_11_00_01));
            float amax = m4.ToScalar();
            if (amax == 0 || float.IsNaN(amax)) { QuantizeRef(xb, (byte*)yb, BlockSize); continue; }
            var vamax = Vector256.Create(amax);
            float max = 0;
            for (int j = 0; j < BlockSize; j += 8)
            {
                uint hits = Vector256.Equals(Avx.LoadVector256(xb + j) & absMask, vamax).ExtractMostSignificantBits();
                if (hits != 0) { max = xb[j + BitOperations.TrailingZeroCount(hits)]; break; }
            }
            float iscale = -127.0f / max;
            var vscale = Vector256.Create(iscale);
            var v127 = Vector256.Create(127);
            for (int g = 0; g < BlockSize / 16; g++)
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

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ8_K*)(x + (nint)i * TypeSize);
            for (int j = 0; j < BlockSize; ++j) y[(nint)i * BlockSize + j] = xb->D * xb->Qs[j];
        }
    }
}
