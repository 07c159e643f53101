using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>
/// Q8_0 weights repacked at load time, 8 rows interleaved (see <see cref="Q4_0x8"/>). Weights are stored biased (w + 128, unsigned) so
/// <c>vpdpbusd</c> can take them as its unsigned operand: Σ(w + 128)·y = Σw·y + 128·Σy. Same bytes per block as Q8_0.
/// Group-block b (272 bytes): 8 fp16 scales, then V_k (k = 0..7, 32 bytes each) where byte 4r + e is element 4k + e of row r, plus 128.
/// Needs AVX-VNNI (the AVX2 <c>vpmaddubsw</c> would saturate on unsigned bytes up to 255).
/// </summary>
public static unsafe class Q8_0x8
{
    public const int Rows = 8;
    public const int GroupBlockBytes = Rows * Q8_0.TypeSize;

    public static void Repack(byte* src, nint srcStride, byte* dst, int n)
    {
        int nb = n / Q8_0.BlockSize;
        for (int b = 0; b < nb; b++)
        {
            byte* g = dst + (nint)b * GroupBlockBytes;
            for (int r = 0; r < Rows; r++)
            {
                byte* blk = src + r * srcStride + (nint)b * Q8_0.TypeSize;
                ((ushort*)g)[r] = *(ushort*)blk;
                for (int k = 0; k < 8; k++)
                    for (int e = 0; e < 4; e++)
                        g[16 + 32 * k + 4 * r + e] = (byte)(blk[2 + 4 * k + e] ^ 0x80);
            }
        }
    }

    /// <summary>8 rows of the group · one activation row from <see cref="QuantKernel.QuantizeActivations"/> (Q8_0 blocks + int32 block sums) → result[0..7].</summary>
    internal static void Dot(int n, byte* group, byte* a, float* result)
    {
        int nb = n / Q8_0.BlockSize;
        int* sums = (int*)(a + (nint)nb * Q8_0.TypeSize);
        Vector256<float> acc0 = default, acc1 = default;
        int b = 0;
        for (; b + 1 < nb; b += 2)
        {
            acc0 = BlockDot(group + (nint)b * GroupBlockBytes, a + (nint)b * Q8_0.TypeSize, sums[b], acc0);
            acc1 = BlockDot(group + (nint)(b + 1) * GroupBlockBytes, a + (nint)(b + 1) * Q8_0.TypeSize, sums[b + 1], acc1);
        }
        if (b < nb) acc0 = BlockDot(group + (nint)b * GroupBlockBytes, a + (nint)b * Q8_0.TypeSize, sums[b], acc0);
        (acc0 + acc1).Store(result);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockDot(byte* g, byte* y, int sumY, Vector256<float> acc)
    {
        Vector256<int> s0 = Vector256<int>.Zero, s1 = Vector256<int>.Zero;
        for (int k = 0; k < 8; k += 2)
        {
            s0 = AvxVnni.MultiplyWideningAndAdd(s0, Vector256.Load(g + 16 + 32 * k), Vector256.Create(*(int*)(y + 2 + 4 * k)).AsSByte());
            s1 = AvxVnni.MultiplyWideningAndAdd(s1, Vector256.Load(g + 48 + 32 * k), Vector256.Create(*(int*)(y + 6 + 4 * k)).AsSByte());
        }
        Vector256<int> sumi = s0 + s1 - Vector256.Create(128 * sumY);
        Vector256<float> dx = F16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)g).AsUInt32());
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(sumi), dx * Fp16.ToFloat(*(ushort*)y), acc);
    }

    /// <summary>8 rows of the group · 4 activation rows with block sums → result[c * 8 + r].</summary>
    internal static void Dot4(int n, byte* group, byte* a, nint aStride, float* result)
    {
        int nb = n / Q8_0.BlockSize;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        nint sumsOffset = (nint)nb * Q8_0.TypeSize;
        int* sums0 = (int*)(a + sumsOffset), sums1 = (int*)(a + aStride + sumsOffset), sums2 = (int*)(a + 2 * aStride + sumsOffset), sums3 = (int*)(a + 3 * aStride + sumsOffset);
        for (int b = 0; b < nb; b++)
        {
            byte* g = group + (nint)b * GroupBlockBytes;
            nint o = (nint)b * Q8_0.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int k = 0; k < 8; k++)
            {
                Vector256<byte> v = Vector256.Load(g + 16 + 32 * k);
                int off = 2 + 4 * k;
                s0 = AvxVnni.MultiplyWideningAndAdd(s0, v, Vector256.Create(*(int*)(y0 + off)).AsSByte());
                s1 = AvxVnni.MultiplyWideningAndAdd(s1, v, Vector256.Create(*(int*)(y1 + off)).AsSByte());
                s2 = AvxVnni.MultiplyWideningAndAdd(s2, v, Vector256.Create(*(int*)(y2 + off)).AsSByte());
                s3 = AvxVnni.MultiplyWideningAndAdd(s3, v, Vector256.Create(*(int*)(y3 + off)).AsSByte());
            }
            Vector256<float> dx = F16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)g).AsUInt32());
            acc0 = Column(s0, dx, y0, sums0[b], acc0);
            acc1 = Column(s1, dx, y1, sums1[b], acc1);
            acc2 = Column(s2, dx, y2, sums2[b], acc2);
            acc3 = Column(s3, dx, y3, sums3[b], acc3);
        }
        acc0.Store(result); acc1.Store(result + 8); acc2.Store(result + 16); acc3.Store(result + 24);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Column(Vector256<int> s, Vector256<float> dx, byte* y, int sumY, Vector256<float> acc) => Fma.MultiplyAdd(Avx.ConvertToVector256Single(s - Vector256.Create(128 * sumY)), dx * Fp16.ToFloat(*(ushort*)y), acc);
}
