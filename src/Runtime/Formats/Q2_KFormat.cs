using System.Runtime.InteropServices;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Formats;

/// <summary>
/// ggml <c>block_q2_K</c>: 256 values in 16 groups of 16; value = d * (sc[g] &amp; 15) * q - dmin * (sc[g] &gt;&gt; 4), q in 0..3.
/// Element 128h + 32j + l (l &lt; 32) is bits 2j, 2j + 1 of qs[32h + l]; its group is (128h + 32j + l) / 16.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ2_K
{
    public fixed byte Scales[16];
    public fixed byte Qs[64];
    public ushort D;
    public ushort DMin;
}

/// <summary>Q2_K: 256 values per super-block in 16 groups of 16, with 4-bit scales and mins and 2-bit quants.</summary>
public static unsafe class Q2_KFormat
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    /// <summary>Bytes per block (<c>sizeof(block_q2_K)</c>).</summary>
    public const int TypeSize = 84;

    // byte offsets of the block fields (a test checks them against BlockQ2_K)
    public const int ScalesOffset = 0; // scales[16]: scale in the low nibble, min in the high
    public const int QsOffset = 16;    // qs[64]
    public const int DOffset = 80;     // d (fp16)
    public const int DMinOffset = 82;  // dmin (fp16)

    /// <summary>ggml's <c>quantize_row_q2_K_ref</c> (make_qkx2_quants with nmax 3, weights |x|, mean absolute error).</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        const float q4scale = 15.0f;
        int nb = n / BlockSize;
        byte* L = stackalloc byte[BlockSize];
        byte* Laux = stackalloc byte[16];
        float* weights = stackalloc float[16];
        float* mins = stackalloc float[BlockSize / 16];
        float* scales = stackalloc float[BlockSize / 16];
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ2_K*)(y + (nint)i * TypeSize);
            float maxScale = 0, maxMin = 0;
            for (int j = 0; j < BlockSize / 16; ++j)
            {
                for (int l = 0; l < 16; ++l) weights[l] = MathF.Abs(xb[16 * j + l]);
                scales[j] = KQuantFit.MakeQkx2Quants(16, 3, xb + 16 * j, weights, L + 16 * j, out mins[j], Laux, -0.5f, 0.1f, 15, true);
                if (scales[j] > maxScale) maxScale = scales[j];
                if (mins[j] > maxMin) maxMin = mins[j];
            }
            if (maxScale > 0)
            {
                float iscale = q4scale / maxScale;
                for (int j = 0; j < BlockSize / 16; ++j) yb->Scales[j] = (byte)GgmlRounding.NearestInt(iscale * scales[j]);
                yb->D = HalfBits.FromFloat(maxScale / q4scale);
            }
            else
            {
                for (int j = 0; j < BlockSize / 16; ++j) yb->Scales[j] = 0;
                yb->D = HalfBits.FromFloat(0.0f);
            }
            if (maxMin > 0)
            {
                float iscale = q4scale / maxMin;
                for (int j = 0; j < BlockSize / 16; ++j) yb->Scales[j] |= (byte)(GgmlRounding.NearestInt(iscale * mins[j]) << 4);
                yb->DMin = HalfBits.FromFloat(maxMin / q4scale);
            }
            else
            {
                yb->DMin = HalfBits.FromFloat(0.0f);
            }
            for (int j = 0; j < BlockSize / 16; ++j)
            {
                float d = HalfBits.ToFloat(yb->D) * (yb->Scales[j] & 0xF);
                if (d == 0) continue;
                float dm = HalfBits.ToFloat(yb->DMin) * (yb->Scales[j] >> 4);
                for (int ii = 0; ii < 16; ++ii)
                {
                    int l = GgmlRounding.NearestInt((xb[16 * j + ii] + dm) / d);
                    L[16 * j + ii] = (byte)Math.Max(0, Math.Min(3, l));
                }
            }
            PackTwoBits(L, yb->Qs);
        }
    }

    /// <summary>
    /// ggml's <c>quantize_row_q2_K_impl</c> with an importance matrix: one row of <paramref name="n"/> values; per group of 16
    /// make_qkx3_quants (nmax 3, rmin -0.9, rdelta 0.05, 36 steps) under qw · sqrt(σ² + x²) (σ² = Σx²/256), the 4-bit scales and
    /// mins by make_qp_quants under the groups' weight sums.
    /// </summary>
    public static void QuantizeWeighted(float* x, byte* y, int n, float* qw)
    {
        byte* L = stackalloc byte[BlockSize];
        byte* Laux = stackalloc byte[16];
        byte* Ls = stackalloc byte[BlockSize / 16];
        byte* Lm = stackalloc byte[BlockSize / 16];
        float* mins = stackalloc float[BlockSize / 16];
        float* scales = stackalloc float[BlockSize / 16];
        float* sw = stackalloc float[BlockSize / 16];
        float* weight = stackalloc float[16];
        for (int i = 0; i < n / BlockSize; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ2_K*)(y + (nint)i * TypeSize);
            float sumx2 = 0;
            for (int j = 0; j < BlockSize; ++j) sumx2 += xb[j] * xb[j];
            float sigma2 = sumx2 / BlockSize;
            for (int j = 0; j < BlockSize / 16; ++j)
            {
                sw[j] = KQuantFit.ImportanceWeights(16, xb + 16 * j, qw + (nint)i * BlockSize + 16 * j, sigma2, weight);
                // make_qkx3_quants with weights is make_qkx2_quants operation for operation
                scales[j] = KQuantFit.MakeQkx2Quants(16, 3, xb + 16 * j, weight, L + 16 * j, out mins[j], Laux, -0.9f, 0.05f, 36, false);
            }
            float dm = KQuantFit.MakeQpQuants(BlockSize / 16, 15, scales, Ls, sw);
            float mm = KQuantFit.MakeQpQuants(BlockSize / 16, 15, mins, Lm, sw);
            yb->D = HalfBits.FromFloat(dm);
            yb->DMin = HalfBits.FromFloat(mm);
            dm = HalfBits.ToFloat(yb->D);
            mm = HalfBits.ToFloat(yb->DMin);
            for (int j = 0; j < BlockSize / 16; ++j) yb->Scales[j] = (byte)(Ls[j] | (Lm[j] << 4));
            for (int j = 0; j < BlockSize / 16; ++j)
            {
                float d = dm * (yb->Scales[j] & 0xF);
                if (d == 0) continue;
                float m = mm * (yb->Scales[j] >> 4);
                for (int ii = 0; ii < 16; ++ii)
                {
                    int l = GgmlRounding.NearestInt((xb[16 * j + ii] + m) / d);
                    L[16 * j + ii] = (byte)Math.Max(0, Math.Min(3, l));
                }
            }
            PackTwoBits(L, yb->Qs);
        }
    }

    /// <summary>The 2-bit fields of 256 levels (0..3) into 64 bytes: per 128 elements, byte l holds elements l, l + 32, l + 64, l + 96.</summary>
    internal static void PackTwoBits(byte* L, byte* qs)
    {
        for (int j = 0; j < BlockSize; j += 128)
            for (int l = 0; l < 32; ++l)
                qs[j / 4 + l] = (byte)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ2_K*)(x + (nint)i * TypeSize);
            float d = HalfBits.ToFloat(xb->D), min = HalfBits.ToFloat(xb->DMin);
            byte* q = xb->Qs;
            int g = 0;
            for (int h = 0; h < 2; h++, q += 32)
                for (int shift = 0; shift < 8; shift += 2)
                    for (int half = 0; half < 2; half++, g++)
                    {
                        byte sc = xb->Scales[g];
                        float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                        for (int l = 0; l < 16; ++l) *y++ = dl * ((q[16 * half + l] >> shift) & 3) - ml;
                    }
        }
    }
}
