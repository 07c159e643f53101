using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

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
    public const int GroupBlockBytes = Rows * Q8_0Format.TypeSize;
    private const int QuantsOffset = Rows * sizeof(ushort); // V_0 (after the 8 scales)

    public static void Repack(byte* src, nint srcStride, byte* dst, int n)
    {
        int nb = n / Q8_0Format.BlockSize;
        for (int b = 0; b < nb; b++)
        {
            byte* g = dst + (nint)b * GroupBlockBytes;
            for (int r = 0; r < Rows; r++)
            {
                byte* blk = src + r * srcStride + (nint)b * Q8_0Format.TypeSize;
                ((ushort*)g)[r] = *(ushort*)blk;
                for (int k = 0; k < 8; k++)
                    for (int e = 0; e < 4; e++)
                        g[QuantsOffset + 32 * k + 4 * r + e] = (byte)(blk[Q8_0Format.QsOffset + 4 * k + e] ^ 0x80);
            }
        }
    }

    /// <summary>
    /// 8 rows of the group · one activation row from <see cref="QuantKernel.QuantizeActivations"/> (Q8_0 blocks, block sums, block
    /// scales) → result[0..7].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Dot(int n, byte* group, byte* a, float* result)
    {
        int nb = n / Q8_0Format.BlockSize;
        int* sums = Q8_0.BlockSums(a, nb);
        float* dys = Q8_0.BlockScales(a, nb);
        Vector256<float> acc0 = default, acc1 = default;
        var c = HalfScales.Constants.Create();
        int b = 0;
        for (; b + 1 < nb; b += 2)
        {
            byte* g = group + (nint)b * GroupBlockBytes;
            Simd.Prefetch(g + Q4_0x8.PrefetchDistance, 2 * GroupBlockBytes); // the two group-blocks that far ahead of the stream
            acc0 = BlockDot(g, a + (nint)b * Q8_0Format.TypeSize, sums[b], dys[b], acc0, c);
            acc1 = BlockDot(g + GroupBlockBytes, a + (nint)(b + 1) * Q8_0Format.TypeSize, sums[b + 1], dys[b + 1], acc1, c);
        }
        if (b < nb) acc0 = BlockDot(group + (nint)b * GroupBlockBytes, a + (nint)b * Q8_0Format.TypeSize, sums[b], dys[b], acc0, c);
        (acc0 + acc1).Store(result);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockDot(byte* g, byte* y, int sumY, float dy, Vector256<float> acc, in HalfScales.Constants c)
    {
        Vector256<int> s0 = Vector256.Create(-128 * sumY), s1 = Vector256<int>.Zero;
        BlockStep(g, y, 0, ref s0, ref s1); // written out: constant offsets (the JIT does not unroll loops)
        BlockStep(g, y, 2, ref s0, ref s1);
        BlockStep(g, y, 4, ref s0, ref s1);
        BlockStep(g, y, 6, ref s0, ref s1);
        Vector256<float> dx = HalfScales.Load8Scaled((ushort*)g, c);
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(s0 + s1), dx * (dy * HalfScales.Unbias), acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BlockStep(byte* g, byte* y, int k, ref Vector256<int> s0, ref Vector256<int> s1)
    {
        s0 = AvxVnni.MultiplyWideningAndAdd(s0, Vector256.Load(g + QuantsOffset + 32 * k),
            Vector256.Create(*(int*)(y + Q8_0Format.QsOffset + 4 * k)).AsSByte());
        s1 = AvxVnni.MultiplyWideningAndAdd(s1, Vector256.Load(g + (QuantsOffset + 32) + 32 * k),
            Vector256.Create(*(int*)(y + (Q8_0Format.QsOffset + 4) + 4 * k)).AsSByte());
    }

    /// <summary>8 rows of the group · 4 activation rows with block sums → result[c * 8 + r].</summary>
    internal static void Dot4(int n, byte* group, byte* a, nint aStride, float* result)
    {
        int nb = n / Q8_0Format.BlockSize;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        int* sums0 = Q8_0.BlockSums(a, nb), sums1 = Q8_0.BlockSums(a + aStride, nb);
        int* sums2 = Q8_0.BlockSums(a + 2 * aStride, nb), sums3 = Q8_0.BlockSums(a + 3 * aStride, nb);
        float* dys0 = Q8_0.BlockScales(a, nb), dys1 = Q8_0.BlockScales(a + aStride, nb);
        float* dys2 = Q8_0.BlockScales(a + 2 * aStride, nb), dys3 = Q8_0.BlockScales(a + 3 * aStride, nb);
        for (int b = 0; b < nb; b++)
        {
            byte* g = group + (nint)b * GroupBlockBytes;
            nint o = (nint)b * Q8_0Format.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int k = 0; k < 8; k++)
            {
                Vector256<byte> v = Vector256.Load(g + QuantsOffset + 32 * k);
                int off = Q8_0Format.QsOffset + 4 * k;
                s0 = AvxVnni.MultiplyWideningAndAdd(s0, v, Vector256.Create(*(int*)(y0 + off)).AsSByte());
                s1 = AvxVnni.MultiplyWideningAndAdd(s1, v, Vector256.Create(*(int*)(y1 + off)).AsSByte());
                s2 = AvxVnni.MultiplyWideningAndAdd(s2, v, Vector256.Create(*(int*)(y2 + off)).AsSByte());
                s3 = AvxVnni.MultiplyWideningAndAdd(s3, v, Vector256.Create(*(int*)(y3 + off)).AsSByte());
            }
            Vector256<float> dx = F16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)g).AsUInt32());
            acc0 = Column(s0, dx, dys0[b], sums0[b], acc0);
            acc1 = Column(s1, dx, dys1[b], sums1[b], acc1);
            acc2 = Column(s2, dx, dys2[b], sums2[b], acc2);
            acc3 = Column(s3, dx, dys3[b], sums3[b], acc3);
        }
        acc0.Store(result); acc1.Store(result + 8); acc2.Store(result + 16); acc3.Store(result + 24);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Column(Vector256<int> s, Vector256<float> dx, float dy, int sumY, Vector256<float> acc) =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(s - Vector256.Create(128 * sumY)), dx * dy, acc);

    /// <summary>
    /// GEMM tile: 16 rows (two consecutive groups, the second at <paramref name="group"/> + <paramref name="groupStride"/>) · 4 activation
    /// rows → y[c * <paramref name="yStride"/> + r], r = 0..15, row scales from <see cref="TileScales"/> (see
    /// <see cref="Q4_0x8.Tile16x4{T}"/>). The +128 bias is removed by starting each accumulator at −128·Σy (exact:
    /// |Σ| ≤ 32·255·127 + 128·32·127 fits int32).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Tile16x4(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y,
        nint yStride)
    {
        int nb = n / Q8_0Format.BlockSize;
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
        int* sums0 = Q8_0.BlockSums(a, nb), sums1 = Q8_0.BlockSums(a + aStride, nb);
        int* sums2 = Q8_0.BlockSums(a + 2 * aStride, nb), sums3 = Q8_0.BlockSums(a + 3 * aStride, nb);
        float* dys0 = Q8_0.BlockScales(a, nb), dys1 = Q8_0.BlockScales(a + aStride, nb);
        float* dys2 = Q8_0.BlockScales(a + 2 * aStride, nb), dys3 = Q8_0.BlockScales(a + 3 * aStride, nb);
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * GroupBlockBytes, g1 = g0 + groupStride;
            nint o = (nint)b * Q8_0Format.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            Vector256<int> s00 = Vector256.Create(-128 * sums0[b]), s01 = Vector256.Create(-128 * sums1[b]);
            Vector256<int> s02 = Vector256.Create(-128 * sums2[b]), s03 = Vector256.Create(-128 * sums3[b]);
            Vector256<int> s10 = s00, s11 = s01, s12 = s02, s13 = s03;
            for (int k = 0; k < 8; k++)
            {
                Vector256<byte> v0 = Vector256.Load(g0 + QuantsOffset + 32 * k), v1 = Vector256.Load(g1 + QuantsOffset + 32 * k);
                int off = Q8_0Format.QsOffset + 4 * k;
                Step(ref s00, ref s10, v0, v1, y0 + off);
                Step(ref s01, ref s11, v0, v1, y1 + off);
                Step(ref s02, ref s12, v0, v1, y2 + off);
                Step(ref s03, ref s13, v0, v1, y3 + off);
            }
            Vector256<float> dx0 = Vector256.Load(scales + 16 * b), dx1 = Vector256.Load(scales + 16 * b + 8);
            Q4_0x8.Scale(s00, s10, dx0, dx1, dys0[b], ref a00, ref a10);
            Q4_0x8.Scale(s01, s11, dx0, dx1, dys1[b], ref a01, ref a11);
            Q4_0x8.Scale(s02, s12, dx0, dx1, dys2[b], ref a02, ref a12);
            Q4_0x8.Scale(s03, s13, dx0, dx1, dys3[b], ref a03, ref a13);
        }
        a00.Store(y); a10.Store(y + 8);
        a01.Store(y + yStride); a11.Store(y + yStride + 8);
        a02.Store(y + 2 * yStride); a12.Store(y + 2 * yStride + 8);
        a03.Store(y + 3 * yStride); a13.Store(y + 3 * yStride + 8);
    }

    /// <summary>The tile's row scales as floats, scales[16 b + r] (as <see cref="Q4_0x8.TileScales"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void TileScales(int n, byte* group, nint groupStride, float* scales) =>
        Q4_0x8.GroupScales(n / Q8_0Format.BlockSize, GroupBlockBytes, group, groupStride, scales);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step(ref Vector256<int> s0, ref Vector256<int> s1, Vector256<byte> v0, Vector256<byte> v1, byte* yk)
    {
        Vector256<sbyte> bc = Vector256.Create(*(int*)yk).AsSByte();
        s0 = AvxVnni.MultiplyWideningAndAdd(s0, v0, bc);
        s1 = AvxVnni.MultiplyWideningAndAdd(s1, v1, bc);
    }
}
