using System.Runtime.InteropServices;

namespace Infer.Runtime.Formats;

/// <summary>
/// ggml <c>block_q5_0</c>: 32 values = d * (q - 16), q in 0..31: low 4 bits in qs (Q4_0 layout), bit 4 of element j in bit j
/// of qh.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ5_0
{
    public ushort D;
    public fixed byte Qh[4];
    public fixed byte Qs[16];
}

/// <summary>Q5_0: 32 values per block as one fp16 scale and 32 5-bit quants with offset 16.</summary>
public static unsafe class Q5_0Format
{
    public const int BlockSize = 32;
    /// <summary>Bytes per block (<c>sizeof(block_q5_0)</c>).</summary>
    public const int TypeSize = 22;

    // byte offsets of the block fields (a test checks them against BlockQ5_0)
    public const int DOffset = 0;  // d (fp16)
    public const int QhOffset = 2; // qh[4] (bit 4 of each quant)
    public const int QsOffset = 6; // qs[16] (low 4 bits)

    /// <summary>ggml's <c>quantize_row_q5_0_ref</c>: d = max/-16, q = min(31, (int8)(x/d + 16.5)).</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ5_0*)(y + (nint)i * TypeSize);
            float amax = 0, max = 0;
            for (int j = 0; j < BlockSize; j++)
            {
                float v = xb[j];
                if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
            }
            float d = max / -16;
            float id = d != 0 ? 1.0f / d : 0.0f;
            yb->D = HalfBits.FromFloat(d);
            uint qh = 0;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                float x0 = xb[j] * id;
                float x1 = xb[BlockSize / 2 + j] * id;
                uint xi0 = (uint)Math.Min(31, GgmlRounding.TruncToInt8(x0 + 16.5f));
                uint xi1 = (uint)Math.Min(31, GgmlRounding.TruncToInt8(x1 + 16.5f));
                yb->Qs[j] = (byte)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
                qh |= ((xi0 & 0x10u) >> 4) << j;
                qh |= ((xi1 & 0x10u) >> 4) << (j + BlockSize / 2);
            }
            *(uint*)yb->Qh = qh;
        }
    }

    /// <summary>
    /// ggml's <c>quantize_row_q5_0_impl</c> with an importance matrix: one row of <paramref name="n"/> values, per block
    /// make_qx_quants (nmax 16) under qw · sqrt(σ² + x²), σ² = Σx² / n over the row.
    /// </summary>
    public static void QuantizeWeighted(float* x, byte* y, int n, float* qw)
    {
        float* weight = stackalloc float[BlockSize];
        sbyte* L = stackalloc sbyte[BlockSize];
        float sigma2 = KQuantFit.RowSigma2(x, n);
        for (int ib = 0; ib < n / BlockSize; ++ib)
        {
            float* xb = x + (nint)ib * BlockSize;
            var yb = (BlockQ5_0*)(y + (nint)ib * TypeSize);
            KQuantFit.ImportanceWeights(BlockSize, xb, qw + (nint)ib * BlockSize, sigma2, weight);
            yb->D = HalfBits.FromFloat(KQuantFit.MakeQxQuants(BlockSize, 16, xb, L, weight));
            *(uint*)yb->Qh = Q5_1Format.PackLevels((byte*)L, yb->Qs);
        }
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ5_0*)(x + (nint)i * TypeSize);
            float d = HalfBits.ToFloat(xb->D);
            uint qh = *(uint*)xb->Qh;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int xh0 = (int)(((qh >> j) << 4) & 0x10);
                int xh1 = (int)((qh >> (j + 12)) & 0x10);
                y[(nint)i * BlockSize + j] = (((xb->Qs[j] & 0x0F) | xh0) - 16) * d;
                y[(nint)i * BlockSize + j + BlockSize / 2] = (((xb->Qs[j] >> 4) | xh1) - 16) * d;
            }
        }
    }
}
