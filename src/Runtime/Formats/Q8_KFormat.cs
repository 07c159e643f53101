using System.Runtime.InteropServices;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Formats;

/// <summary>
/// ggml <c>block_q8_K</c>: 256 values = d (float32) * qs[i]; bsums[g] = Σ qs over the g-th group of 16 (used for the K-quants'
/// min and offset terms).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ8_K
{
    public float D;
    public fixed sbyte Qs[256];
    public fixed short BSums[16];
}

/// <summary>Q8_K: 256 values per block as a float32 scale, 256 int8 quants and 16 sums of 16; the activation format of the K-quants.</summary>
public static unsafe class Q8_KFormat
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    /// <summary>Bytes per block (<c>sizeof(block_q8_K)</c>).</summary>
    public const int TypeSize = 292;

    // byte offsets of the block fields (a test checks them against BlockQ8_K)
    public const int DOffset = 0;       // d (float32)
    public const int QsOffset = 4;      // qs[256] (int8)
    public const int BSumsOffset = 260; // bsums[16] (int16)

    /// <summary>
    /// ggml's <c>quantize_row_q8_K_ref</c>: iscale = -127/max (max = value of largest magnitude), q = min(127, nearest_int(iscale*x)),
    /// d = 1/iscale.
    /// </summary>
    public static void QuantizeRef(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            float* xb = x + (nint)i * BlockSize;
            var yb = (BlockQ8_K*)(y + (nint)i * TypeSize);
            float max = 0, amax = 0;
            for (int j = 0; j < BlockSize; ++j)
            {
                float ax = MathF.Abs(xb[j]);
                if (ax > amax) { amax = ax; max = xb[j]; }
            }
            if (amax == 0)
            {
                yb->D = 0;
                for (int j = 0; j < BlockSize; ++j) yb->Qs[j] = 0;
                for (int j = 0; j < BlockSize / 16; ++j) yb->BSums[j] = 0;
                continue;
            }
            float iscale = -127.0f / max;
            for (int j = 0; j < BlockSize; ++j) yb->Qs[j] = (sbyte)Math.Min(127, GgmlRounding.NearestInt(iscale * xb[j]));
            for (int j = 0; j < BlockSize / 16; ++j)
            {
                int sum = 0;
                for (int ii = 0; ii < 16; ++ii) sum += yb->Qs[j * 16 + ii];
                yb->BSums[j] = (short)sum;
            }
            yb->D = 1 / iscale;
        }
    }

    public static void DequantizeRef(byte* x, float* y, int n)
    {
        int nb = n / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            var xb = (BlockQ8_K*)(x + (nint)i * TypeSize);
            for (int j = 0; j < BlockSize; ++j) y[(nint)i * BlockSize + j] = xb->D * xb->Qs[j];
        }
    }
}
