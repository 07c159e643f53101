using System.Runtime.InteropServices;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Formats;

/// <summary>
/// ggml <c>block_q3_K</c>: 256 values in 16 groups of 16; value = d * (sc[g] - 32) * (q - 4), q in 0..7, sc a 6-bit scale.
/// Element e = 128h + 32j + l (l &lt; 32): bits 2j, 2j + 1 of qs[32h + l] are q's low two bits, bit e / 32 of hmask[e % 32] its high
/// bit. The 16 scales: low nibbles in bytes 0-7 (group g &lt; 8 in byte g's low nibble, g ≥ 8 in byte g - 8's high nibble), the high
/// two bits of group g at bits 2(g / 4) of byte 8 + g % 4.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ3_K
{
    public fixed byte HMask[32];
    public fixed byte Qs[64];
    public fixed byte Scales[12];
    public ushort D;
}

/// <summary>Q3_K: 256 values per super-block in 16 groups of 16, with 6-bit scales and 3-bit quants.</summary>
public static unsafe class Q3_KFormat
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    /// <summary>Bytes per block (<c>sizeof(block_q3_K)</c>).</summary>
    public const int TypeSize = 110;

    // byte offsets of the block fields (a test checks them against BlockQ3_K)
    public const int HMaskOffset = 0;   // hmask[32]
    public const int QsOffset = 32;     // qs[64]
    public const int ScalesOffset = 96; // scales[12]
    public const int DOffset = 108;     // d (fp16)

    /// <summary>The scale of group <paramref name="g"/> (0..15) from the 12 packed bytes, minus 32 (-32..31).</summary>
    public static int Scale(byte* scales, int g)
    {
        int low = g < 8 ? scales[g] & 0xF : scales[g - 8] >> 4;
        return (low | (((scales[8 + g % 4] >> (2 * (g / 4))) & 3) << 4)) - 32;
    }

    /// <summary>ggml's <c>quantize_row_q3_K_ref</c> (make_q3_quants per group, 6-bit scales relative to d = max_scale / -32).</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        sbyte* L = stackalloc sbyte[BlockSize];
        float* scales = stackalloc float[BlockSize / 16];
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ3_K*)(y + (nint)i * TypeSize);
            float maxScale = 0, amax = 0;
            for (int j = 0; j < BlockSize / 16; ++j)
            {
                scales[j] = KQuantFit.MakeQ3Quants(16, 4, xb + 16 * j, L + 16 * j);
                float scale = MathF.Abs(scales[j]);
                if (scale > amax) { amax = scale; maxScale = scales[j]; }
            }
            for (int k = 0; k < 12; k++) yb->Scales[k] = 0;
            if (maxScale != 0)
            {
                float iscale = -32.0f / maxScale;
                for (int j = 0; j < BlockSize / 16; ++j)
                {
                    int l = (sbyte)GgmlRounding.NearestInt(iscale * scales[j]);
                    l = Math.Max(-32, Math.Min(31, l)) + 32;
                    if (j < 8) yb->Scales[j] = (byte)(l & 0xF);
                    else yb->Scales[j - 8] |= (byte)((l & 0xF) << 4);
                    yb->Scales[j % 4 + 8] |= (byte)((l >> 4) << (2 * (j / 4)));
                }
                yb->D = HalfBits.FromFloat(1 / iscale);
            }
            else
            {
                yb->D = HalfBits.FromFloat(0.0f);
            }
            FinishBlock(xb, yb, L);
        }
    }

    /// <summary>
    /// ggml's <c>quantize_row_q3_K_impl</c> with an importance matrix: one row of <paramref name="n"/> values; per group of 16
    /// make_qx_quants under qw · sqrt(σ² + x²) (σ² = 2·Σx²/256), the 6-bit scales by make_qx_quants under the groups' weight sums.
    /// </summary>
    public static void QuantizeWeighted(float* x, byte* y, int n, float* qw)
    {
        sbyte* L = stackalloc sbyte[BlockSize];
        sbyte* Ls = stackalloc sbyte[BlockSize / 16];
        float* scales = stackalloc float[BlockSize / 16];
        float* sw = stackalloc float[BlockSize / 16];
        float* weight = stackalloc float[16];
        for (int i = 0; i < n / BlockSize; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ3_K*)(y + (nint)i * TypeSize);
            float sumx2 = 0;
            for (int j = 0; j < BlockSize; ++j) sumx2 += xb[j] * xb[j];
            float sigma2 = 2 * sumx2 / BlockSize;
            for (int j = 0; j < BlockSize / 16; ++j)
            {
                sw[j] = KQuantFit.ImportanceWeights(16, xb + 16 * j, qw + (nint)i * BlockSize + 16 * j, sigma2, weight);
                scales[j] = KQuantFit.MakeQxQuants(16, 4, xb + 16 * j, L + 16 * j, weight);
            }
            for (int k = 0; k < 12; k++) yb->Scales[k] = 0;
            float dBlock = KQuantFit.MakeQxQuants(BlockSize / 16, 32, scales, Ls, sw);
            for (int j = 0; j < BlockSize / 16; ++j)
            {
                int l = Ls[j];
                if (j < 8) yb->Scales[j] = (byte)(l & 0xF);
                else yb->Scales[j - 8] |= (byte)((l & 0xF) << 4);
                yb->Scales[j % 4 + 8] |= (byte)((l >> 4) << (2 * (j / 4)));
            }
            yb->D = HalfBits.FromFloat(dBlock);
            FinishBlock(xb, yb, L);
        }
    }

    /// <summary>The levels from the stored d and scales, the high bits into hmask, the low two bits packed as Q2_K's.</summary>
    private static void FinishBlock(float* xb, BlockQ3_K* yb, sbyte* L)
    {
        for (int j = 0; j < BlockSize / 16; ++j)
        {
            float d = HalfBits.ToFloat(yb->D) * Scale(yb->Scales, j);
            if (d == 0) continue;
            for (int ii = 0; ii < 16; ++ii)
            {
                int l = GgmlRounding.NearestInt(xb[16 * j + ii] / d);
                L[16 * j + ii] = (sbyte)(Math.Max(-4, Math.Min(3, l)) + 4);
            }
        }
        // the high bit of element e into bit e / 32 of hmask[e % 32]; the low two bits packed as Q2_K's
        for (int k = 0; k < 32; k++) yb->HMask[k] = 0;
        for (int e = 0; e < BlockSize; ++e)
        {
            if (L[e] > 3)
            {
                yb->HMask[e % 32] |= (byte)(1 << (e / 32));
                L[e] -= 4;
            }
        }
        Q2_KFormat.PackTwoBits((byte*)L, yb->Qs);
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ3_K*)(x + (nint)i * TypeSize);
            float dAll = HalfBits.ToFloat(xb->D);
            byte* q = xb->Qs;
            byte* hm = xb->HMask;
            int g = 0, bit = 0;
            for (int h = 0; h < 2; h++, q += 32)
                for (int shift = 0; shift < 8; shift += 2, bit++)
                    for (int half = 0; half < 2; half++, g++)
                    {
                        float dl = dAll * Scale(xb->Scales, g);
                        for (int l = 0; l < 16; ++l)
                        {
                            int k = 16 * half + l;
                            *y++ = dl * (((q[k] >> shift) & 3) - ((hm[k] & (1 << bit)) != 0 ? 0 : 4));
                        }
                    }
        }
    }
}
