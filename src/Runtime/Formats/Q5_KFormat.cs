using System.Runtime.InteropServices;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Formats;

/// <summary>
/// ggml <c>block_q5_K</c>: as Q4_K with q in 0..31; bit 4 of element 64c + l is bit 2c of qh[l], of element 64c + 32 + l bit 2c+1.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ5_K
{
    public ushort D;
    public ushort DMin;
    public fixed byte Scales[12];
    public fixed byte Qh[32];
    public fixed byte Qs[128];
}

/// <summary>Q5_K: as Q4_K with a fifth bit per quant.</summary>
public static unsafe class Q5_KFormat
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    /// <summary>Bytes per block (<c>sizeof(block_q5_K)</c>).</summary>
    public const int TypeSize = 176;

    // byte offsets of the block fields (a test checks them against BlockQ5_K)
    public const int DOffset = 0;      // d (fp16)
    public const int DMinOffset = 2;   // dmin (fp16)
    public const int ScalesOffset = 4; // scales[12] (see ScaleMinK4)
    public const int QhOffset = 16;    // qh[32]
    public const int QsOffset = 48;    // qs[128]

    /// <summary>ggml's <c>quantize_row_q5_K_ref</c> (make_qkx2_quants with nmax 31, rmin -0.5, rdelta 0.1, 15 steps).</summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        byte* L = stackalloc byte[BlockSize];
        for (int i = 0; i < nb; i++)
        {
            var yb = (BlockQ5_K*)(y + (nint)i * TypeSize);
            KQuantFit.QuantizeScaleMinSuperBlock(x + (nint)i * BlockSize, 31, -0.5f, 0.1f, 15, L, yb->Scales, out yb->D, out yb->DMin);
            PackLevels(L, yb);
        }
    }

    /// <summary>
    /// ggml's <c>quantize_row_q5_K_impl</c> with an importance matrix: one row of <paramref name="n"/> values, <paramref name="qw"/>
    /// one weight per column (make_qkx3_quants per sub-block, make_qp_quants for the 6-bit scales and mins).
    /// </summary>
    public static void QuantizeWeighted(float* x, byte* y, int n, float* qw)
    {
        byte* L = stackalloc byte[BlockSize];
        for (int i = 0; i < n / BlockSize; i++)
        {
            var yb = (BlockQ5_K*)(y + (nint)i * TypeSize);
            KQuantFit.QuantizeScaleMinSuperBlockWeighted(x + (nint)i * BlockSize, qw + (nint)i * BlockSize, 31, true, L, yb->Scales,
                out yb->D, out yb->DMin);
            PackLevels(L, yb);
        }
    }

    private static void PackLevels(byte* L, BlockQ5_K* yb)
    {
        byte* qh = yb->Qh;
        byte* ql = yb->Qs;
        for (int k = 0; k < 32; k++) qh[k] = 0;
        byte m1 = 1, m2 = 2;
        for (int nn = 0; nn < BlockSize; nn += 64)
        {
            for (int j = 0; j < 32; ++j)
            {
                int l1 = L[nn + j];
                if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                int l2 = L[nn + j + 32];
                if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                ql[j] = (byte)(l1 | (l2 << 4));
            }
            m1 <<= 2; m2 <<= 2;
            ql += 32;
        }
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ5_K*)(x + (nint)i * TypeSize);
            float d = HalfBits.ToFloat(xb->D), min = HalfBits.ToFloat(xb->DMin);
            byte* ql = xb->Qs;
            byte* qh = xb->Qh;
            int isub = 0;
            byte u1 = 1, u2 = 2;
            for (int j = 0; j < BlockSize; j += 64)
            {
                ScaleMinK4.Get(isub + 0, xb->Scales, out byte sc, out byte m);
                float d1 = d * sc, m1 = min * m;
                ScaleMinK4.Get(isub + 1, xb->Scales, out sc, out m);
                float d2 = d * sc, m2 = min * m;
                for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - m1;
                for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - m2;
                ql += 32; isub += 2;
                u1 <<= 2; u2 <<= 2;
            }
        }
    }
}
