using System.Runtime.InteropServices;

namespace Infer.Runtime.Formats;

/// <summary>ggml <c>block_q4_1</c>: 32 values = d * q + m, q in 0..15 (nibble layout as Q4_0).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ4_1
{
    public ushort D;
    public ushort M;
    public fixed byte Qs[16];
}

/// <summary>Q4_1: 32 values per block as fp16 scale and min and 32 4-bit quants.</summary>
public static unsafe class Q4_1Format
{
    public const int BlockSize = 32;
    /// <summary>Bytes per block (<c>sizeof(block_q4_1)</c>).</summary>
    public const int TypeSize = 20;

    // byte offsets of the block fields (a test checks them against BlockQ4_1)
    public const int DOffset = 0;  // d (fp16)
    public const int MOffset = 2;  // m (fp16)
    public const int QsOffset = 4; // qs[16]

    /// <summary>ggml's <c>quantize_row_q4_1_ref</c>: d = (max-min)/15, m = min, q = min(15, (int8)((x-min)/d + 0.5)).</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ4_1*)(y + (nint)i * TypeSize);
            float min = float.MaxValue, max = -float.MaxValue;
            for (int j = 0; j < BlockSize; j++)
            {
                float v = xb[j];
                if (v < min) min = v;
                if (v > max) max = v;
            }
            float d = (max - min) / ((1 << 4) - 1);
            float id = d != 0 ? 1.0f / d : 0.0f;
            yb->D = HalfBits.FromFloat(d);
            yb->M = HalfBits.FromFloat(min);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                float x0 = (xb[j] - min) * id;
                float x1 = (xb[BlockSize / 2 + j] - min) * id;
                int xi0 = Math.Min(15, GgmlRounding.TruncToInt8(x0 + 0.5f));
                int xi1 = Math.Min(15, GgmlRounding.TruncToInt8(x1 + 0.5f));
                yb->Qs[j] = (byte)(xi0 | (xi1 << 4));
            }
        }
    }

    /// <summary>
    /// ggml's <c>quantize_row_q4_1_impl</c> with an importance matrix: one row of <paramref name="n"/> values, per block
    /// make_qkx3_quants (nmax 15, rmin -0.9, rdelta 0.05, 36 steps) under qw · sqrt(σ² + x²), σ² = Σx² / n over the row.
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
            var yb = (BlockQ4_1*)(y + (nint)ib * TypeSize);
            KQuantFit.ImportanceWeights(BlockSize, xb, qw + (nint)ib * BlockSize, sigma2, weight);
            // make_qkx3_quants with weights is make_qkx2_quants operation for operation
            float d = KQuantFit.MakeQkx2Quants(BlockSize, 15, xb, weight, L, out float min, Laux, -0.9f, 0.05f, 36, false);
            yb->D = HalfBits.FromFloat(d);
            yb->M = HalfBits.FromFloat(-min);
            for (int j = 0; j < 16; ++j) yb->Qs[j] = (byte)(L[j] | (L[j + 16] << 4));
        }
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ4_1*)(x + (nint)i * TypeSize);
            float d = HalfBits.ToFloat(xb->D), m = HalfBits.ToFloat(xb->M);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                y[(nint)i * BlockSize + j] = (xb->Qs[j] & 0x0F) * d + m;
                y[(nint)i * BlockSize + j + BlockSize / 2] = (xb->Qs[j] >> 4) * d + m;
            }
        }
    }
}
