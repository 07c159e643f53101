using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>
/// Q8_0 weights repacked at load time, 8 rows interleaved (see <see cref="Q4_0x8"/>). Same bytes per block as Q8_0.
/// Group-block b (272 bytes): 8 fp16 scales, then V_k (k = 0..7, 32 bytes each) where byte 4r + e is element 4k + e of row r.
/// Two flavours of the bytes, chosen with the kernels: for AVX-VNNI (<see cref="Repack(byte*, nint, byte*, int)"/>) weights
/// are stored biased (w + 128, unsigned) so <c>vpdpbusd</c> takes them as its unsigned operand: Σ(w + 128)·y = Σw·y + 128·Σy; for AVX2
/// (<see cref="RepackSigned"/>) they stay signed and the dots take |w| against y with w's sign (<c>vpsignb</c>), since
/// <c>vpmaddubsw</c> would saturate on unsigned bytes up to 255 (|w| ≤ 127: a pair of products fits int16).
/// </summary>
public static unsafe partial class Q8_0x8
{
    public const int Rows = 8;
    public const int GroupBlockBytes = Rows * Q8_0Format.TypeSize;
    private const int QuantsOffset = Rows * sizeof(ushort); // V_0 (after the 8 scales)

    /// <summary>The AVX-VNNI layout: weights biased by 128.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Repack(byte* src, nint srcStride, byte* dst, int n) => Repack(src, srcStride, dst, n, 0x80);

    /// <summary>The AVX2 layout: weights as they are (signed).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RepackSigned(byte* src, nint srcStride, byte* dst, int n) => Repack(src, srcStride, dst, n, 0);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Repack(byte* src, nint srcStride, byte* dst, int n, byte bias)
    {
        int nb = n / Q8_0Format.BlockSize;
        uint bias4 = bias * 0x01010101u;
        for (int b = 0; b < nb; b++)
        {
            byte* g = dst + (nint)b * GroupBlockBytes;
            for (int r = 0; r < Rows; r++)
            {
                byte* blk = src + r * srcStride + (nint)b * Q8_0Format.TypeSize;
                ((ushort*)g)[r] = *(ushort*)blk;
                // elements 4k..4k+3 of the row go to bytes 4r..4r+3 of V_k: one 4-byte move (and bias) each
                for (int k = 0; k < 8; k++)
                {
                    uint q = Unsafe.ReadUnaligned<uint>(blk + Q8_0Format.QsOffset + 4 * k);
                    Unsafe.WriteUnaligned(g + QuantsOffset + 32 * k + 4 * r, q ^ bias4);
                }
            }
        }
    }

    /// <summary>
    /// 8 rows of the group · one activation row from <see cref="QuantKernel.QuantizeActivations"/> (Q8_0 blocks, block sums, block
    /// scales) → result[0..7].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Dot<T>(int n, byte* group, byte* a, float* result) where T : struct, IIntDot
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
            acc0 = BlockDot<T>(g, a + (nint)b * Q8_0Format.TypeSize, sums[b], dys[b], acc0, c);
            acc1 = BlockDot<T>(g + GroupBlockBytes, a + (nint)(b + 1) * Q8_0Format.TypeSize, sums[b + 1], dys[b + 1], acc1, c);
        }
        if (b < nb) acc0 = BlockDot<T>(group + (nint)b * GroupBlockBytes, a + (nint)b * Q8_0Format.TypeSize, sums[b], dys[b], acc0, c);
        (acc0 + acc1).Store(result);
    }

    /// <summary>
    /// The accumulator's start: −128·Σy, as the VNNI kernels' activation rows store it (<see cref="Q8_0.QuantizeActivationsVnni"/>),
    /// removes the VNNI layout's bias; the signed layout has none.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Start<T>(int biasTerm) where T : struct, IIntDot =>
        typeof(T) == typeof(VnniDot) ? Vector256.Create(biasTerm) : Vector256<int>.Zero;

    /// <summary>What the multiply takes of a stored weight vector: the biased bytes (VNNI) or |w| (AVX2), shared by every token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Unsigned<T>(Vector256<byte> v) where T : struct, IIntDot =>
        typeof(T) == typeof(VnniDot) ? v : Avx2.Abs(v.AsSByte());

    /// <summary>s + Σ w·y per int32 lane; <paramref name="u"/> is <see cref="Unsigned{T}"/> of the stored <paramref name="v"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Step<T>(Vector256<int> s, Vector256<byte> u, Vector256<byte> v, Vector256<sbyte> y) where T : struct, IIntDot =>
        typeof(T) == typeof(VnniDot) ? AvxVnni.MultiplyWideningAndAdd(s, u, y) : T.DotU8S8(s, u, Avx2.Sign(y, v.AsSByte()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Broadcast(byte* p) => Vector256.Create(*(int*)p).AsSByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockDot<T>(byte* g, byte* y, int biasTerm, float dy, Vector256<float> acc, in HalfScales.Constants c)
        where T : struct, IIntDot
    {
        Vector256<int> s0 = Start<T>(biasTerm), s1 = Vector256<int>.Zero;
        BlockStep<T>(g, y, 0, ref s0, ref s1); // written out: constant offsets (the JIT does not unroll loops)
        BlockStep<T>(g, y, 2, ref s0, ref s1);
        BlockStep<T>(g, y, 4, ref s0, ref s1);
        BlockStep<T>(g, y, 6, ref s0, ref s1);
        Vector256<float> dx = HalfScales.Load8Scaled((ushort*)g, c);
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(s0 + s1), dx * (dy * HalfScales.Unbias), acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BlockStep<T>(byte* g, byte* y, int k, ref Vector256<int> s0, ref Vector256<int> s1) where T : struct, IIntDot
    {
        Vector256<byte> v0 = Vector256.Load(g + QuantsOffset + 32 * k), v1 = Vector256.Load(g + (QuantsOffset + 32) + 32 * k);
        s0 = Step<T>(s0, Unsigned<T>(v0), v0, Broadcast(y + Q8_0Format.QsOffset + 4 * k));
        s1 = Step<T>(s1, Unsigned<T>(v1), v1, Broadcast(y + (Q8_0Format.QsOffset + 4) + 4 * k));
    }

    /// <summary>8 rows of the group · 4 activation rows with block sums → result[c * 8 + r].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Dot4<T>(int n, byte* group, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        int nb = n / Q8_0Format.BlockSize;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        float* dys0 = Q8_0.BlockScales(a, nb), dys1 = Q8_0.BlockScales(a + aStride, nb);
        float* dys2 = Q8_0.BlockScales(a + 2 * aStride, nb), dys3 = Q8_0.BlockScales(a + 3 * aStride, nb);
        int* sums0 = Q8_0.BlockSums(a, nb), sums1 = Q8_0.BlockSums(a + aStride, nb);
        int* sums2 = Q8_0.BlockSums(a + 2 * aStride, nb), sums3 = Q8_0.BlockSums(a + 3 * aStride, nb);
        for (int b = 0; b < nb; b++)
        {
            byte* g = group + (nint)b * GroupBlockBytes;
            // a batch of exactly 4 tokens starts here with the weights in DRAM (MatMulDriver's remainder): stream them as the GEMV does
            Simd.Prefetch(g + Q4_0x8.PrefetchDistance, GroupBlockBytes);
            nint o = (nint)b * Q8_0Format.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            Vector256<int> s0 = Start<T>(sums0[b]), s1 = Start<T>(sums1[b]), s2 = Start<T>(sums2[b]), s3 = Start<T>(sums3[b]);
            for (int k = 0; k < 8; k++)
            {
                Vector256<byte> v = Vector256.Load(g + QuantsOffset + 32 * k), u = Unsigned<T>(v);
                int off = Q8_0Format.QsOffset + 4 * k;
                s0 = Step<T>(s0, u, v, Broadcast(y0 + off));
                s1 = Step<T>(s1, u, v, Broadcast(y1 + off));
                s2 = Step<T>(s2, u, v, Broadcast(y2 + off));
                s3 = Step<T>(s3, u, v, Broadcast(y3 + off));
            }
            Vector256<float> dx = F16.Load8((ushort*)g);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s0), dx * dys0[b], acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s1), dx * dys1[b], acc1);
            acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s2), dx * dys2[b], acc2);
            acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s3), dx * dys3[b], acc3);
        }
        acc0.Store(result); acc1.Store(result + 8); acc2.Store(result + 16); acc3.Store(result + 24);
    }

    /// <summary>
    /// GEMM tile: 16 rows (two consecutive groups, the second at <paramref name="group"/> + <paramref name="groupStride"/>) · 4 activation
    /// rows → y[c * <paramref name="yStride"/> + r], r = 0..15, row scales from <see cref="TileScales"/> (see
    /// <see cref="Q4_0x8.Tile16x4{T}"/>). The VNNI layout's +128 bias is removed by starting each accumulator at −128·Σy (exact:
    /// |Σ| ≤ 32·255·127 + 128·32·127 fits int32).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Tile16x4<T>(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y,
        nint yStride) where T : struct, IIntDot
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
            Vector256<int> s00 = Start<T>(sums0[b]), s01 = Start<T>(sums1[b]), s02 = Start<T>(sums2[b]), s03 = Start<T>(sums3[b]);
            Vector256<int> s10 = s00, s11 = s01, s12 = s02, s13 = s03;
            for (int k = 0; k < 8; k++)
            {
                Vector256<byte> v0 = Vector256.Load(g0 + QuantsOffset + 32 * k), v1 = Vector256.Load(g1 + QuantsOffset + 32 * k);
                Vector256<byte> u0 = Unsigned<T>(v0), u1 = Unsigned<T>(v1);
                int off = Q8_0Format.QsOffset + 4 * k;
                TileStep<T>(ref s00, ref s10, u0, u1, v0, v1, y0 + off);
                TileStep<T>(ref s01, ref s11, u0, u1, v0, v1, y1 + off);
                TileStep<T>(ref s02, ref s12, u0, u1, v0, v1, y2 + off);
                TileStep<T>(ref s03, ref s13, u0, u1, v0, v1, y3 + off);
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

    /// <summary>
    /// GEMM tile for AVX-VNNI on a CPU with AVX-512F: 16 rows (two consecutive groups, the VNNI layout) · 6 activation rows. The
    /// products are 256-bit <c>vpdpbusd</c> (8-bit weights leave no int16 headroom for the 512-bit tiles, and .NET 10 has no 512-bit
    /// VNNI). VEX-encoded <c>vpdpbusd</c> accumulates only in ymm0-15, so those 16 registers hold the 12 integer sums and nothing
    /// else: the float sums live in the output rows (y, in L1 for the whole tile; the JIT had given four of ymm0-15 to float
    /// registers and moved two integer sums in and out around every product), and each block's sums start from one broadcast load
    /// of −128·Σy (<see cref="Q8_0.QuantizeActivationsVnni"/>) rather than a multiply and a move from a general register. The two
    /// groups' sums of a token are joined into one zmm vector for the per-block convert, multiply and FMA. One Zen 5 core
    /// (`cputime tile Q8_0`): 243-246 GMAC/s against 267 for <c>vpdpbusd</c> alone (`cputime peak`); 228-232 before.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Tile16x6Vnni512(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y,
        nint yStride)
    {
        int nb = n / Q8_0Format.BlockSize;
        nint sumsOffset = (nint)nb * Q8_0Format.TypeSize, scalesOffset = sumsOffset + (nint)nb * sizeof(int);
        float* y1 = y + yStride, y2 = y + 2 * yStride, y3 = y + 3 * yStride, y4 = y + 4 * yStride, y5 = y + 5 * yStride;
        Vector512<float>.Zero.Store(y); Vector512<float>.Zero.Store(y1); Vector512<float>.Zero.Store(y2);
        Vector512<float>.Zero.Store(y3); Vector512<float>.Zero.Store(y4); Vector512<float>.Zero.Store(y5);
        nint a3 = 3 * aStride, a5 = 5 * aStride;
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * GroupBlockBytes + QuantsOffset, g1 = g0 + groupStride;
            byte* q = a + (nint)b * Q8_0Format.TypeSize + Q8_0Format.QsOffset;
            nint so = sumsOffset + 4 * b; // −128·Σy: the VNNI layout's +128 bias removed at the start
            Vector256<int> s00 = Vector256.Create(*(int*)(a + so)), s01 = Vector256.Create(*(int*)(a + aStride + so));
            Vector256<int> s02 = Vector256.Create(*(int*)(a + 2 * aStride + so)), s03 = Vector256.Create(*(int*)(a + a3 + so));
            Vector256<int> s04 = Vector256.Create(*(int*)(a + 4 * aStride + so)), s05 = Vector256.Create(*(int*)(a + a5 + so));
            Vector256<int> s10 = s00, s11 = s01, s12 = s02, s13 = s03, s14 = s04, s15 = s05;
            for (int k = 0; k < 8; k++)
            {
                Vector256<byte> v0 = Vector256.Load(g0 + 32 * k), v1 = Vector256.Load(g1 + 32 * k);
                byte* qk = q + 4 * k;
                TileStep<VnniDot>(ref s00, ref s10, v0, v1, v0, v1, qk);
                TileStep<VnniDot>(ref s01, ref s11, v0, v1, v0, v1, qk + aStride);
                TileStep<VnniDot>(ref s02, ref s12, v0, v1, v0, v1, qk + 2 * aStride);
                TileStep<VnniDot>(ref s03, ref s13, v0, v1, v0, v1, qk + a3);
                TileStep<VnniDot>(ref s04, ref s14, v0, v1, v0, v1, qk + 4 * aStride);
                TileStep<VnniDot>(ref s05, ref s15, v0, v1, v0, v1, qk + a5);
            }
            Vector512<float> dx = Vector512.Load(scales + 16 * b);
            nint sc = scalesOffset + 4 * b;
            Scale512(s00, s10, dx, *(float*)(a + sc), y);
            Scale512(s01, s11, dx, *(float*)(a + aStride + sc), y1);
            Scale512(s02, s12, dx, *(float*)(a + 2 * aStride + sc), y2);
            Scale512(s03, s13, dx, *(float*)(a + a3 + sc), y3);
            Scale512(s04, s14, dx, *(float*)(a + 4 * aStride + sc), y4);
            Scale512(s05, s15, dx, *(float*)(a + a5 + sc), y5);
        }
    }

    /// <summary>acc[0..15] += float(s0 | s1) · dx · dy: both groups of one token in one zmm vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scale512(Vector256<int> s0, Vector256<int> s1, Vector512<float> dx, float dy, float* acc) =>
        Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512F.InsertVector256(s0.ToVector512Unsafe(), s1, 1)),
            dx * Vector512.Create(dy), Vector512.Load(acc)).Store(acc);

    /// <summary>The tile's row scales as floats, scales[16 b + r] (as <see cref="Q4_0x8.TileScales"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void TileScales(int n, byte* group, nint groupStride, float* scales) =>
        Q4_0x8.GroupScales(n / Q8_0Format.BlockSize, GroupBlockBytes, group, groupStride, scales);

    /// <summary>One token's 4 elements against both groups.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TileStep<T>(ref Vector256<int> s0, ref Vector256<int> s1, Vector256<byte> u0, Vector256<byte> u1,
        Vector256<byte> v0, Vector256<byte> v1, byte* yk) where T : struct, IIntDot
    {
        Vector256<sbyte> bc = Broadcast(yk);
        s0 = Step<T>(s0, u0, v0, bc);
        s1 = Step<T>(s1, u1, v1, bc);
    }
}
