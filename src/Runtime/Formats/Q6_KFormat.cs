using System.Runtime.InteropServices;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Formats;

/// <summary>
/// ggml <c>block_q6_K</c>: 256 values in 16 groups of 16; value = d * sc[g] * (q - 32), q in 0..63 (low 4 bits in ql, high 2 in qh), sc int8.
/// Per 128-half h: ql[64h + l] holds elements 128h + l (low nibble) and 128h + 64 + l (high); ql[64h + 32 + l] holds 128h + 32 + l and 128h + 96 + l;
/// qh[32h + l] holds bits 4-5 of those four elements in bit pairs 0, 2, 4, 6.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ6_K
{
    public fixed byte Ql[128];
    public fixed byte Qh[64];
    public fixed sbyte Scales[16];
    public ushort D;
}

/// <summary>Q6_K: 256 values per super-block in 16 groups of 16, with int8 scales and 6-bit quants.</summary>
public static unsafe class Q6_KFormat
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    /// <summary>Bytes per block (<c>sizeof(block_q6_K)</c>).</summary>
    public const int TypeSize = 210;

    // byte offsets of the block fields (a test checks them against BlockQ6_K)
    public const int QlOffset = 0;       // ql[128] (low 4 bits)
    public const int QhOffset = 128;     // qh[64] (high 2 bits)
    public const int ScalesOffset = 192; // scales[16] (int8)
    public const int DOffset = 208;      // d (fp16)
    private const float GroupMaxEps = 1e-15f;

    /// <summary>
    /// ggml's <c>quantize_row_q6_K_ref</c> (make_qx_quants with nmax 32, rmse_type 1; int8 scales relative to
    /// d = max_scale / -128).
    /// </summary>
    public static void QuantizeRef(float* x, byte* y, int n) => Quantize(x, y, n, null);

    /// <summary>
    /// ggml's <c>quantize_row_q6_K_impl</c> with an importance matrix: as the reference with make_qx_quants weighted by
    /// <paramref name="qw"/> itself (one weight per column of the row of <paramref name="n"/> values).
    /// </summary>
    public static void QuantizeWeighted(float* x, byte* y, int n, float* qw) => Quantize(x, y, n, qw);

    private static void Quantize(float* x, byte* y, int n, float* qw)
    {
        int nb = n / BlockSize;
        sbyte* L = stackalloc sbyte[BlockSize];
        float* scales = stackalloc float[BlockSize / 16];
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ6_K*)(y + (nint)i * TypeSize);
            float maxScale = 0, maxAbsScale = 0;
            for (int ib = 0; ib < BlockSize / 16; ++ib)
            {
                float* w = qw != null ? qw + (nint)i * BlockSize + 16 * ib : null;
                float scale = KQuantFit.MakeQxQuants(16, 32, xb + 16 * ib, L + 16 * ib, w);
                scales[ib] = scale;
                float absScale = MathF.Abs(scale);
                if (absScale > maxAbsScale) { maxAbsScale = absScale; maxScale = scale; }
            }
            if (maxAbsScale < GroupMaxEps)
            {
                new Span<byte>(yb, TypeSize).Clear();
                continue;
            }
            float iscale = -128.0f / maxScale;
            yb->D = HalfBits.FromFloat(1 / iscale);
            for (int ib = 0; ib < BlockSize / 16; ++ib) yb->Scales[ib] = (sbyte)Math.Min(127, GgmlRounding.NearestInt(iscale * scales[ib]));
            for (int j = 0; j < BlockSize / 16; ++j)
            {
                float d = HalfBits.ToFloat(yb->D) * yb->Scales[j];
                if (d == 0) continue;
                for (int ii = 0; ii < 16; ++ii)
                {
                    int l = GgmlRounding.NearestInt(xb[16 * j + ii] / d);
                    l = Math.Max(-32, Math.Min(31, l));
                    L[16 * j + ii] = (sbyte)(l + 32);
                }
            }
            byte* ql = yb->Ql;
            byte* qh = yb->Qh;
            for (int j = 0; j < BlockSize; j += 128)
            {
                for (int l = 0; l < 32; ++l)
                {
                    int q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                    ql[l + 0] = (byte)(q1 | (q3 << 4));
                    ql[l + 32] = (byte)(q2 | (q4 << 4));
                    qh[l] = (byte)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
                }
                ql += 64;
                qh += 32;
            }
        }
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ6_K*)(x + (nint)i * TypeSize);
            float d = HalfBits.ToFloat(xb->D);
            byte* ql = xb->Ql;
            byte* qh = xb->Qh;
            sbyte* sc = xb->Scales;
            for (int nn = 0; nn < BlockSize; nn += 128)
            {
                for (int l = 0; l < 32; ++l)
                {
                    int isub = l / 16;
                    int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    y[l + 0] = d * sc[isub + 0] * q1;
                    y[l + 32] = d * sc[isub + 2] * q2;
                    y[l + 64] = d * sc[isub + 4] * q3;
                    y[l + 96] = d * sc[isub + 6] * q4;
                }
                y += 128;
                ql += 64;
                qh += 32;
                sc += 8;
            }
        }
    }
}
