using System.Runtime.InteropServices;

namespace Infer.Runtime.Formats;

/// <summary>ggml <c>block_q5_1</c>: 32 values = d * q + m, q in 0..31 (bit layout as Q5_0).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ5_1
{
    public ushort D;
    public ushort M;
    public fixed byte Qh[4];
    public fixed byte Qs[16];
}

/// <summary>Q5_1: 32 values per block as fp16 scale and min and 32 5-bit quants.</summary>
public static unsafe class Q5_1Format
{
    public const int BlockSize = 32;
    /// <summary>Bytes per block (<c>sizeof(block_q5_1)</c>).</summary>
    public const int TypeSize = 24;

    // byte offsets of the block fields (a test checks them against BlockQ5_1)
    public const int DOffset = 0;  // d (fp16)
    public const int MOffset = 2;  // m (fp16)
    public const int QhOffset = 4; // qh[4] (bit 4 of each quant)
    public const int QsOffset = 8; // qs[16] (low 4 bits)

    /// <summary>ggml's <c>quantize_row_q5_1_ref</c>: d = (max-min)/31, m = min, q = (uint8)((x-min)/d + 0.5).</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ5_1*)(y + (nint)i * TypeSize);
            float min = float.MaxValue, max = -float.MaxValue;
            for (int j = 0; j < BlockSize; j++)
            {
                float v = xb[j];
                if (v < min) min = v;
                if (v > max) max = v;
            }
            float d = (max - min) / ((1 << 5) - 1);
            float id = d != 0 ? 1.0f / d : 0.0f;
            yb->D = HalfBits.FromFloat(d);
            yb->M = HalfBits.FromFloat(min);
            uint qh = 0;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                float x0 = (xb[j] - min) * id;
                float x1 = (xb[BlockSize / 2 + j] - min) * id;
                uint xi0 = (byte)(int)(x0 + 0.5f);
                uint xi1 = (byte)(int)(x1 + 0.5f);
                yb->Qs[j] = (byte)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
                qh |= ((xi0 & 0x10u) >> 4) << j;
                qh |= ((xi1 & 0x10u) >> 4) << (j + BlockSize / 2);
            }
            *(uint*)yb->Qh = qh;
        }
    }

    /// <summary>
    /// ggml's <c>quantize_row_q5_1_impl</c> with an importance matrix: one row of <paramref name="n"/> values, per block
    /// make_qkx3_quants (nmax 31, rmin -0.9, rdelta 0.05, 36 steps) under qw · sqrt(σ² + x²), σ² = Σx² / n over the row.
    /// </summary>
    public static void QuantizeWeighted(float* x, byte* y, int n, float* qw)
    {
        float* weight = stackalloc float[BlockSize];
        byte* L = stackalloc byte[BlockSize];
        byte* Laux = stackalloc byte[BlockSize];
        float sigma2 = KQuantFit.RowSigma2(x, n);
        for (int ib = 0; ib < n / BlockSize; ++ib)
        {
            float* xb = x + (nint)ib * BlockSize;
            var yb = (BlockQ5_1*)(y + (nint)ib * TypeSize);
            KQuantFit.ImportanceWeights(BlockSize, xb, qw + (nint)ib * BlockSize, sigma2, weight);
            float d = KQuantFit.MakeQkx2Quants(BlockSize, 31, xb, weight, L, out float min, Laux, -0.9f, 0.05f, 36, false);
            yb->D = HalfBits.FromFloat(d);
            yb->M = HalfBits.FromFloat(-min);
            *(uint*)yb->Qh = PackLevels(L, yb->Qs);
        }
    }

    /// <summary>32 levels (0..31) as Q5_0 / Q5_1 store them: low nibbles in qs, bit 4 of element j as bit j of the returned qh.</summary>
    internal static uint PackLevels(byte* L, byte* qs)
    {
        uint qh = 0;
        for (int j = 0; j < 16; ++j)
        {
            uint xi0 = L[j], xi1 = L[j + 16];
            qs[j] = (byte)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= ((xi0 & 0x10u) >> 4) << j;
            qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
        }
        return qh;
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ5_1*)(x + (nint)i * TypeSize);
            float d = HalfBits.ToFloat(xb->D), m = HalfBits.ToFloat(xb->M);
            uint qh = *(uint*)xb->Qh;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int xh0 = (int)(((qh >> j) << 4) & 0x10);
                int xh1 = (int)((qh >> (j + 12)) & 0x10);
                y[(nint)i * BlockSize + j] = ((xb->Qs[j] & 0x0F) | xh0) * d + m;
                y[(nint)i * BlockSize + j + BlockSize / 2] = ((xb->Qs[j] >> 4) | xh1) * d + m;
            }
        }
    }
}
