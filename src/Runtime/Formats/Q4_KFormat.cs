using System.Runtime.InteropServices;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Formats;

/// <summary>
/// ggml <c>block_q4_K</c>: 256 values in 8 sub-blocks of 32; value = d * sc[j] * q - dmin * m[j], q in 0..15, 6-bit sc/m packed in 12 bytes.
/// qs[32c + l] holds element 64c + l (low nibble) and 64c + 32 + l (high nibble).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ4_K
{
    public ushort D;
    public ushort DMin;
    public fixed byte Scales[12];
    public fixed byte Qs[128];
}

/// <summary>Q4_K: 256 values per super-block in 8 sub-blocks of 32, with 6-bit scales and mins.</summary>
public static unsafe class Q4_KFormat
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    /// <summary>Bytes per block (<c>sizeof(block_q4_K)</c>).</summary>
    public const int TypeSize = 144;

    // byte offsets of the block fields (a test checks them against BlockQ4_K)
    public const int DOffset = 0;      // d (fp16)
    public const int DMinOffset = 2;   // dmin (fp16)
    public const int ScalesOffset = 4; // scales[12] (see ScaleMinK4)
    public const int QsOffset = 16;    // qs[128]

    /// <summary>ggml's <c>quantize_row_q4_K_ref</c> (make_qkx2_quants with nmax 15, rmin -1, rdelta 0.1, 20 steps).</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        byte* L = stackalloc byte[BlockSize];
        for (int i = 0; i < nb; i++)
        {
            var yb = (BlockQ4_K*)(y + (nint)i * TypeSize);
            KQuantFit.QuantizeScaleMinSuperBlock(x + (nint)i * BlockSize, 15, -1.0f, 0.1f, 20, L, yb->Scales, out yb->D, out yb->DMin);
            PackLevels(L, yb->Qs);
        }
    }

    /// <summary>
    /// ggml's <c>quantize_row_q4_K_impl</c> with an importance matrix: one row of <paramref name="n"/> values, <paramref name="qw"/>
    /// one weight per column (make_qkx3_quants per sub-block, make_qp_quants for the 6-bit scales and mins).
    /// </summary>
    public static void QuantizeWeighted(float* x, byte* y, int n, float* qw)
    {
        byte* L = stackalloc byte[BlockSize];
        for (int i = 0; i < n / BlockSize; i++)
        {
            var yb = (BlockQ4_K*)(y + (nint)i * TypeSize);
            KQuantFit.QuantizeScaleMinSuperBlockWeighted(x + (nint)i * BlockSize, qw + (nint)i * BlockSize, 15, false, L, yb->Scales,
                out yb->D, out yb->DMin);
            PackLevels(L, yb->Qs);
        }
    }

    private static void PackLevels(byte* L, byte* q)
    {
        for (int j = 0; j < BlockSize; j += 64)
        {
            for (int l = 0; l < 32; ++l) q[l] = (byte)(L[j + l] | (L[j + l + 32] << 4));
            q += 32;
        }
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ4_K*)(x + (nint)i * TypeSize);
            float d = HalfBits.ToFloat(xb->D), min = HalfBits.ToFloat(xb->DMin);
            byte* q = xb->Qs;
            int isub = 0;
            for (int j = 0; j < BlockSize; j += 64)
            {
                ScaleMinK4.Get(isub + 0, xb->Scales, out byte sc, out byte m);
                float d1 = d * sc, m1 = min * m;
                ScaleMinK4.Get(isub + 1, xb->Scales, out sc, out m);
                float d2 = d * sc, m2 = min * m;
                for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
                for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
                q += 32; isub += 2;
            }
        }
    }
}
