using System.Runtime.InteropServices;

namespace Infer.Runtime.Formats;

/// <summary>ggml <c>block_q4_0</c>: 32 values = d (fp16) * (q - 8), q in 0..15; qs[j] holds element j (low nibble) and j+16 (high nibble).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ4_0
{
    public ushort D;
    public fixed byte Qs[16];
}

/// <summary>Q4_0: 32 values per block as one fp16 scale and 32 4-bit quants with offset 8.</summary>
public static unsafe class Q4_0Format
{
    public const int BlockSize = 32;
    /// <summary>Bytes per block (<c>sizeof(block_q4_0)</c>).</summary>
    public const int TypeSize = 18;
    /// <summary>Bytes of qs: 32 4-bit quants, two to a byte (low nibbles the first 16 values, high nibbles the last 16).</summary>
    public const int QsBytes = 16;

    // byte offsets of the block fields (a test checks them against BlockQ4_0)
    public const int DOffset = 0;  // d (fp16)
    public const int QsOffset = 2; // qs[16] (two 4-bit quants per byte)

    /// <summary>ggml's <c>quantize_row_q4_0_ref</c>: d = max/-8 (max = the value of largest magnitude), q = min(15, (int8)(x/d + 8.5)).</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ4_0*)(y + (nint)i * TypeSize);
            float amax = 0, max = 0;
            for (int j = 0; j < BlockSize; j++)
            {
                float v = xb[j];
                if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
            }
            float d = max / -8;
            float id = d != 0 ? 1.0f / d : 0.0f;
            yb->D = HalfBits.FromFloat(d);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int xi0 = Math.Min(15, GgmlRounding.TruncToInt8(xb[j] * id + 8.5f));
                int xi1 = Math.Min(15, GgmlRounding.TruncToInt8(xb[BlockSize / 2 + j] * id + 8.5f));
                yb->Qs[j] = (byte)(xi0 | (xi1 << 4));
            }
        }
    }

    /// <summary>
    /// ggml's <c>quantize_row_q4_0_impl</c> with an importance matrix: one row of <paramref name="n"/> values, per block
    /// make_qx_quants (nmax 8) under qw · sqrt(σ² + x²), σ² = Σx² / n over the row.
    /// </summary>
    public static void QuantizeWeighted(float* x, byte* y, int n, float* qw)
    {
        float* weight = stackalloc float[BlockSize];
        sbyte* L = stackalloc sbyte[BlockSize];
        float sigma2 = KQuantFit.RowSigma2(x, n);
        for (int ib = 0; ib < n / BlockSize; ++ib)
        {
            float* xb = x + (nint)ib * BlockSize;
            var yb = (BlockQ4_0*)(y + (nint)ib * TypeSize);
            KQuantFit.ImportanceWeights(BlockSize, xb, qw + (nint)ib * BlockSize, sigma2, weight);
            yb->D = HalfBits.FromFloat(KQuantFit.MakeQxQuants(BlockSize, 8, xb, L, weight));
            for (int j = 0; j < 16; ++j) yb->Qs[j] = (byte)((byte)L[j] | ((byte)L[j + 16] << 4));
        }
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ4_0*)(x + (nint)i * TypeSize);
            float d = HalfBits.ToFloat(xb->D);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                y[(nint)i * BlockSize + j] = ((xb->Qs[j] & 0x0F) - 8) * d;
                y[(nint)i * BlockSize + j + BlockSize / 2] = ((xb->Qs[j] >> 4) - 8) * d;
            }
        }
    }
}
