using System.Runtime.InteropServices;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Formats;

/// <summary>ggml <c>block_iq4_nl</c>: 32 values, value = d * kvalues[q]; qs[j] holds element j (low nibble) and j + 16 (high).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockIQ4_NL
{
    public ushort D;
    public fixed byte Qs[16];
}

/// <summary>
/// ggml <c>block_iq4_xs</c>: 256 values in 8 sub-blocks of 32, value = d * (ls - 32) * kvalues[q] with a 6-bit ls per sub-block
/// (low nibble in scales_l, high two bits in scales_h); each sub-block's 16 qs bytes as IQ4_NL's.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockIQ4_XS
{
    public ushort D;
    public ushort ScalesH;
    public fixed byte ScalesL[4];
    public fixed byte Qs[128];
}

/// <summary>
/// IQ4_NL and IQ4_XS: 4-bit indices into ggml's non-linear table of 16 int8 values. Quantization is ggml's
/// <c>quantize_iq4_nl</c> / <c>quantize_iq4_xs</c>, without or with an importance matrix, as llama-quantize runs them.
/// </summary>
public static unsafe class IQ4Format
{
    public const int NlBlockSize = 32, NlTypeSize = 18;
    public const int XsBlockSize = GgmlTypeInfo.QK_K, XsTypeSize = 136;

    // byte offsets of the block fields (a test checks them against the structs)
    public const int NlDOffset = 0, NlQsOffset = 2;
    public const int XsDOffset = 0, XsScalesHOffset = 2, XsScalesLOffset = 4, XsQsOffset = 8;

    /// <summary>ggml's <c>kvalues_iq4nl</c>.</summary>
    public static ReadOnlySpan<sbyte> Values => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    private const float GroupMaxEps = 1e-15f;
    private const int Tries = 7;

    /// <summary>The 6-bit scale of sub-block <paramref name="ib"/> of an IQ4_XS block, minus 32.</summary>
    public static int XsScale(BlockIQ4_XS* b, int ib) =>
        (((b->ScalesL[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->ScalesH >> (2 * ib)) & 3) << 4)) - 32;

    public static void DequantizeNl(byte* x, float* y, int n)
    {
        var kv = Values;
        for (int i = 0; i < n / NlBlockSize; i++)
        {
            var b = (BlockIQ4_NL*)(x + (nint)i * NlTypeSize);
            float d = HalfBits.ToFloat(b->D);
            for (int j = 0; j < 16; j++)
            {
                y[32 * i + j] = d * kv[b->Qs[j] & 0xF];
                y[32 * i + j + 16] = d * kv[b->Qs[j] >> 4];
            }
        }
    }

    public static void DequantizeXs(byte* x, float* y, int n)
    {
        var kv = Values;
        for (int i = 0; i < n / XsBlockSize; i++)
        {
            var b = (BlockIQ4_XS*)(x + (nint)i * XsTypeSize);
            float d = HalfBits.ToFloat(b->D);
            for (int ib = 0; ib < 8; ib++)
            {
                float dl = d * XsScale(b, ib);
                byte* qs = b->Qs + 16 * ib;
                float* o = y + 256 * i + 32 * ib;
                for (int j = 0; j < 16; j++)
                {
                    o[j] = dl * kv[qs[j] & 0xF];
                    o[j + 16] = dl * kv[qs[j] >> 4];
                }
            }
        }
    }

    /// <summary>ggml's <c>quantize_iq4_nl</c> (no importance matrix, 7 tries per block).</summary>
    public static void QuantizeNl(float* x, byte* y, int n) => QuantizeNlWeighted(x, y, n, null);

    /// <summary>
    /// ggml's <c>quantize_iq4_nl</c> with an importance matrix <paramref name="qw"/> (one weight per column of the row of
    /// <paramref name="n"/> values; null: none).
    /// </summary>
    public static void QuantizeNlWeighted(float* x, byte* y, int n, float* qw)
    {
        byte* L = stackalloc byte[NlBlockSize];
        float* weight = stackalloc float[NlBlockSize];
        float scale;
        for (int i = 0; i < n / NlBlockSize; i++)
        {
            var b = (BlockIQ4_NL*)(y + (nint)i * NlTypeSize);
            float* w = qw != null ? qw + (nint)i * NlBlockSize : null;
            Impl(NlBlockSize, x + (nint)i * NlBlockSize, &b->D, b->Qs, null, null, &scale, weight, L, w);
        }
    }

    /// <summary>ggml's <c>quantize_iq4_xs</c> (no importance matrix, 7 tries per sub-block).</summary>
    public static void QuantizeXs(float* x, byte* y, int n) => QuantizeXsWeighted(x, y, n, null);

    /// <summary>
    /// ggml's <c>quantize_iq4_xs</c> with an importance matrix <paramref name="qw"/> (one weight per column of the row of
    /// <paramref name="n"/> values; null: none).
    /// </summary>
    public static void QuantizeXsWeighted(float* x, byte* y, int n, float* qw)
    {
        byte* L = stackalloc byte[XsBlockSize];
        float* weight = stackalloc float[32];
        float* scales = stackalloc float[XsBlockSize / 32];
        for (int i = 0; i < n / XsBlockSize; i++)
        {
            var b = (BlockIQ4_XS*)(y + (nint)i * XsTypeSize);
            float* w = qw != null ? qw + (nint)i * XsBlockSize : null;
            Impl(XsBlockSize, x + (nint)i * XsBlockSize, &b->D, b->Qs, &b->ScalesH, b->ScalesL, scales, weight, L, w);
        }
    }

    /// <summary>ggml's <c>best_index_int8</c>: the table entry nearest to <paramref name="x"/> (the lower one on a tie).</summary>
    private static int BestIndex(float x)
    {
        var val = Values;
        if (x <= val[0]) return 0;
        if (x >= val[15]) return 15;
        int ml = 0, mu = 15;
        while (mu - ml > 1)
        {
            int mav = (ml + mu) / 2;
            if (x < val[mav]) mu = mav;
            else ml = mav;
        }
        return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
    }

    /// <summary>
    /// ggml's <c>quantize_row_iq4_nl_impl</c> with block size 32 and ntry 7, operation for operation: per block a scale search
    /// over 15 trial scales weighted by qw · sqrt(σ² + x²), σ² = 2·Σx² / super-block size (no importance matrix: w = x²), then
    /// (IQ4_XS) 6-bit scales relative to d = -max_scale / 32.
    /// </summary>
    private static void Impl(int superBlockSize, float* x, ushort* dh, byte* q4, ushort* scalesH, byte* scalesL, float* scales,
        float* weight, byte* L, float* qw)
    {
        const int blockSize = 32;
        var values = Values;
        float sigma2 = 0;
        for (int j = 0; j < superBlockSize; ++j) sigma2 += x[j] * x[j];
        sigma2 *= 2.0f / superBlockSize;
        for (int j = 0; j < superBlockSize / 2; j++) q4[j] = 0;
        *dh = HalfBits.FromFloat(0.0f);
        float maxScale = 0, amaxScale = 0;
        for (int ib = 0; ib < superBlockSize / blockSize; ++ib)
        {
            float* xb = x + ib * blockSize;
            byte* Lb = L + ib * blockSize;
            if (qw != null)
                for (int j = 0; j < blockSize; ++j) weight[j] = qw[ib * blockSize + j] * MathF.Sqrt(sigma2 + xb[j] * xb[j]);
            else
                for (int j = 0; j < blockSize; ++j) weight[j] = xb[j] * xb[j];
            float amax = 0, max = 0;
            for (int j = 0; j < blockSize; ++j)
            {
                float ax = MathF.Abs(xb[j]);
                if (ax > amax) { amax = ax; max = xb[j]; }
            }
            if (amax < GroupMaxEps)
            {
                scales[ib] = 0;
                continue;
            }
            float d = -max / values[0];
            float id = 1 / d;
            float sumqx = 0, sumq2 = 0;
            for (int j = 0; j < blockSize; ++j)
            {
                int l = BestIndex(id * xb[j]);
                Lb[j] = (byte)l;
                float q = values[l];
                float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
            float best = d * sumqx;
            for (int itry = -Tries; itry <= Tries; ++itry)
            {
                id = (itry + values[0]) / max;
                sumqx = sumq2 = 0;
                for (int j = 0; j < blockSize; ++j)
                {
                    float q = values[BestIndex(id * xb[j])];
                    float w = weight[j];
                    sumqx += w * q * xb[j];
                    sumq2 += w * q * q;
                }
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
                {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
            scales[ib] = d;
            float absD = MathF.Abs(d);
            if (absD > amaxScale) { amaxScale = absD; maxScale = d; }
        }
        if (superBlockSize / blockSize > 1)
        {
            *scalesH = 0;
            float d = -maxScale / 32;
            *dh = HalfBits.FromFloat(d);
            float id = d != 0 ? 1 / d : 0.0f;
            for (int ib = 0; ib < superBlockSize / blockSize; ++ib)
            {
                int l = GgmlRounding.NearestInt(id * scales[ib]);
                l = Math.Max(-32, Math.Min(31, l));
                float dl = d * l;
                float idl = dl != 0 ? 1 / dl : 0.0f;
                byte* Lb = L + ib * blockSize;
                float* xb = x + ib * blockSize;
                for (int j = 0; j < blockSize; ++j) Lb[j] = (byte)BestIndex(idl * xb[j]);
                l += 32;
                if (ib % 2 == 0) scalesL[ib / 2] = (byte)(l & 0xF);
                else scalesL[ib / 2] |= (byte)((l & 0xF) << 4);
                *scalesH |= (ushort)((l >> 4) << (2 * (ib % 8)));
            }
        }
        else
        {
            *dh = HalfBits.FromFloat(scales[0]);
            float id = scales[0] != 0 ? 1 / scales[0] : 0;
            for (int j = 0; j < superBlockSize; ++j) L[j] = (byte)BestIndex(id * x[j]);
        }
        for (int i = 0; i < superBlockSize / 32; ++i)
            for (int j = 0; j < 16; ++j) q4[16 * i + j] = (byte)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
    }
}
