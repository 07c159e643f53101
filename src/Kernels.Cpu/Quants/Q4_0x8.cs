using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>
/// Q4_0 weights repacked at load time, 8 rows interleaved, so one integer lane holds one row: a 256-bit <c>vpdpbusd</c> multiplies
/// 4 elements of 8 rows against 4 broadcast activations, and the 8 rows' block scales form one float vector (no horizontal sums,
/// one convert and one FMA per 8 row-blocks). Same bytes per block as Q4_0.
/// Group-block b (144 bytes) for rows r = 0..7: 8 fp16 scales d_r, then P_j (j = 0..3, 32 bytes each) where byte 4r + e holds
/// element 4j + e of row r in its low nibble and element 16 + 4j + e in its high nibble.
/// </summary>
public static unsafe partial class Q4_0x8
{
    public const int Rows = 8;
    public const int GroupBlockBytes = Rows * Q4_0Format.TypeSize;
    private const int QuantsOffset = Rows * sizeof(ushort); // P_0 (after the 8 scales)
    private const int HalfBlock = Q4_0Format.BlockSize / 2; // a byte holds element k (low nibble) and k + 16 (high nibble)
    private const int HighQs = Q8_0Format.QsOffset + HalfBlock; // the activations of the high nibbles in a Q8_0 block

    /// <summary>
    /// Interleaves 8 Q4_0 rows (<paramref name="src"/> + r * <paramref name="srcStride"/>) of <paramref name="n"/> elements into
    /// <paramref name="dst"/> (8 × row bytes).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Repack(byte* src, nint srcStride, byte* dst, int n)
    {
        int nb = n / Q4_0Format.BlockSize;
        for (int b = 0; b < nb; b++)
        {
            byte* g = dst + (nint)b * GroupBlockBytes;
            for (int r = 0; r < Rows; r++)
            {
                byte* blk = src + r * srcStride + (nint)b * Q4_0Format.TypeSize;
                ((ushort*)g)[r] = *(ushort*)blk;
                byte* qs = blk + Q4_0Format.QsOffset;
                // bytes 4j..4j+3 of qs (elements 4j + e low, 16 + 4j + e high) go to bytes 4r..4r+3 of P_j: one 4-byte move each
                for (int j = 0; j < 4; j++)
                    Unsafe.WriteUnaligned(g + QuantsOffset + 32 * j + 4 * r, Unsafe.ReadUnaligned<uint>(qs + 4 * j));
            }
        }
    }

    /// <summary>
    /// 8 rows of the group · one activation row from <see cref="QuantKernel.QuantizeActivations"/> (Q8_0 blocks, block sums, block
    /// scales) → <paramref name="result"/>[0..7]. The high nibbles are taken in place (byte &amp; 0xF0 = 16·hi), so each 32 weight
    /// bytes cost two ANDs; the factor 16 is folded into the integer combine (16·Σlo·y + Σ16hi·y - 128·Σy = 16·Σ(q-8)·y) and taken
    /// out of the scale exactly (a power of two).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Dot<T>(int n, byte* group, byte* a, float* result) where T : struct, IIntDot
    {
        int nb = n / Q4_0Format.BlockSize;
        int* sums = Q8_0.BlockSums(a, nb);
        float* dys = Q8_0.BlockScales(a, nb);
        Vector256<float> acc0 = default, acc1 = default;
        var c = HalfScales.Constants.Create();
        int b = 0;
        for (; b + 1 < nb; b += 2)
        {
            byte* g = group + (nint)b * GroupBlockBytes;
            Simd.Prefetch(g + PrefetchDistance, 2 * GroupBlockBytes); // the two group-blocks that far ahead of the stream
            acc0 = BlockDot<T>(g, a + (nint)b * Q8_0Format.TypeSize, sums[b], dys[b], acc0, c);
            acc1 = BlockDot<T>(g + GroupBlockBytes, a + (nint)(b + 1) * Q8_0Format.TypeSize, sums[b + 1], dys[b + 1], acc1, c);
        }
        if (b < nb) acc0 = BlockDot<T>(group + (nint)b * GroupBlockBytes, a + (nint)b * Q8_0Format.TypeSize, sums[b], dys[b], acc0, c);
        (acc0 + acc1).Store(result);
    }

    /// <summary>
    /// Bytes ahead of the current group-block that the repacked GEMVs prefetch: decode streams every weight from DRAM once per token, and
    /// the hardware prefetchers alone leave a core at 9 GB/s here (Q4_0, one thread, 150 MB matrix); 2 KiB ahead gives 12.3 (4 KiB: 12.5).
    /// </summary>
    internal const int PrefetchDistance = 2048;

    /// <summary>One group-block (8 rows × 32 elements) · one Q8_0 activation block: acc + d_r · d_y · Σ(q - 8)·y per row lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockDot<T>(byte* g, byte* y, int sumY, float dy, Vector256<float> acc, in HalfScales.Constants c)
        where T : struct, IIntDot
    {
        Vector256<int> lo0 = Vector256<int>.Zero, lo1 = Vector256<int>.Zero, hi0 = Vector256<int>.Zero, hi1 = Vector256<int>.Zero;
        BlockStep<T>(g, y, 0, c, ref lo0, ref lo1, ref hi0, ref hi1); // written out: constant offsets (the JIT does not unroll loops)
        BlockStep<T>(g, y, 2, c, ref lo0, ref lo1, ref hi0, ref hi1);
        // 16·(Σlo·y + Σhi·y - 8·Σy); |.| ≤ 16 · 32 · 15 · 128 < 2^24, so the int → float conversion is exact
        Vector256<int> sumi16 = ((lo0 + lo1) << 4) + HighSum16<T>(hi0 + hi1) - Vector256.Create(128 * sumY);
        Vector256<float> dx = HalfScales.Load8Scaled((ushort*)g, c);
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(sumi16), dx * (dy * (HalfScales.Unbias / 16)), acc);
    }

    /// <summary>Vectors j and j + 1 (a constant after inlining) of a group-block against one activation block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BlockStep<T>(byte* g, byte* y, int j, in HalfScales.Constants c,
        ref Vector256<int> lo0, ref Vector256<int> lo1, ref Vector256<int> hi0, ref Vector256<int> hi1) where T : struct, IIntDot
    {
        Vector256<byte> p0 = Vector256.Load(g + QuantsOffset + 32 * j), p1 = Vector256.Load(g + (QuantsOffset + 32) + 32 * j);
        // the activations of the low nibbles start at the block's qs, those of the high nibbles HalfBlock further
        lo0 = T.DotU8S8(lo0, p0 & c.LowNibble, Vector256.Create(*(int*)(y + Q8_0Format.QsOffset + 4 * j)).AsSByte());
        hi0 = T.DotU8S8(hi0, HighNibbles16<T>(p0, c.HighNibble), Vector256.Create(*(int*)(y + HighQs + 4 * j)).AsSByte());
        lo1 = T.DotU8S8(lo1, p1 & c.LowNibble, Vector256.Create(*(int*)(y + (Q8_0Format.QsOffset + 4) + 4 * j)).AsSByte());
        hi1 = T.DotU8S8(hi1, HighNibbles16<T>(p1, c.HighNibble), Vector256.Create(*(int*)(y + (HighQs + 4) + 4 * j)).AsSByte());
    }

    /// <summary>
    /// The high nibbles for <see cref="IIntDot.DotU8S8"/>: with VNNI in place, byte &amp; 0xF0 = 16·hi (one AND); the AVX2 flavour needs
    /// u ≤ 128 (vpmaddubsw pairs saturate at int16), so it shifts them down and <see cref="HighSum16{T}"/> multiplies the sum by 16 instead.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> HighNibbles16<T>(Vector256<byte> p) where T : struct, IIntDot =>
        HighNibbles16<T>(p, Vector256.Create((byte)0xF0));

    /// <summary><see cref="HighNibbles16{T}(Vector256{byte})"/> with the 0xF0 mask passed in (kept in a register across a loop).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> HighNibbles16<T>(Vector256<byte> p, Vector256<byte> highMask) where T : struct, IIntDot =>
        typeof(T) == typeof(VnniDot) ? p & highMask : Vector256.ShiftRightLogical(p.AsUInt16(), 4).AsByte() & Vector256.Create((byte)0x0F);

    /// <summary>A sum of <see cref="HighNibbles16{T}(Vector256{byte})"/> products as 16·Σhi·y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> HighSum16<T>(Vector256<int> s) where T : struct, IIntDot => typeof(T) == typeof(VnniDot) ? s : s << 4;

    /// <summary>
    /// 8 rows of the group · 4 activation rows with block sums (<paramref name="a"/> + c * <paramref name="aStride"/>) →
    /// result[c * 8 + r].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot4<T>(int n, byte* group, byte* a, nint aStride, float* result) where T : struct, IIntDot
    {
        int nb = n / Q4_0Format.BlockSize;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        var m4 = Vector256.Create((byte)0x0F);
        int* sums0 = Q8_0.BlockSums(a, nb), sums1 = Q8_0.BlockSums(a + aStride, nb);
        int* sums2 = Q8_0.BlockSums(a + 2 * aStride, nb), sums3 = Q8_0.BlockSums(a + 3 * aStride, nb);
        float* dys0 = Q8_0.BlockScales(a, nb), dys1 = Q8_0.BlockScales(a + aStride, nb);
        float* dys2 = Q8_0.BlockScales(a + 2 * aStride, nb), dys3 = Q8_0.BlockScales(a + 3 * aStride, nb);
        for (int b = 0; b < nb; b++)
        {
            byte* g = group + (nint)b * GroupBlockBytes;
            // a batch of exactly 4 tokens starts here with the weights in DRAM (MatMulDriver's remainder): stream them as the GEMV does
            Simd.Prefetch(g + Q4_0x8.PrefetchDistance, GroupBlockBytes);
            nint o = (nint)b * Q8_0Format.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int j = 0; j < 4; j++)
            {
                Vector256<byte> p = Vector256.Load(g + QuantsOffset + 32 * j);
                Vector256<byte> lo = p & m4, hi = Vector256.ShiftRightLogical(p.AsUInt16(), 4).AsByte() & m4;
                int ol = Q8_0Format.QsOffset + 4 * j, oh = HighQs + 4 * j;
                s0 = T.DotU8S8(T.DotU8S8(s0, lo, Vector256.Create(*(int*)(y0 + ol)).AsSByte()), hi, Vector256.Create(*(int*)(y0 + oh)).AsSByte());
                s1 = T.DotU8S8(T.DotU8S8(s1, lo, Vector256.Create(*(int*)(y1 + ol)).AsSByte()), hi, Vector256.Create(*(int*)(y1 + oh)).AsSByte());
                s2 = T.DotU8S8(T.DotU8S8(s2, lo, Vector256.Create(*(int*)(y2 + ol)).AsSByte()), hi, Vector256.Create(*(int*)(y2 + oh)).AsSByte());
                s3 = T.DotU8S8(T.DotU8S8(s3, lo, Vector256.Create(*(int*)(y3 + ol)).AsSByte()), hi, Vector256.Create(*(int*)(y3 + oh)).AsSByte());
            }
            Vector256<float> dx = F16.Load8((ushort*)g);
            acc0 = Column(s0, dx, dys0[b], sums0[b], acc0);
            acc1 = Column(s1, dx, dys1[b], sums1[b], acc1);
            acc2 = Column(s2, dx, dys2[b], sums2[b], acc2);
            acc3 = Column(s3, dx, dys3[b], sums3[b], acc3);
        }
        acc0.Store(result); acc1.Store(result + 8); acc2.Store(result + 16); acc3.Store(result + 24);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Column(Vector256<int> s, Vector256<float> dx, float dy, int sumY, Vector256<float> acc) =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(s - Vector256.Create(8 * sumY)), dx * dy, acc);

    /// <summary>
    /// GEMM tile: 16 rows (two consecutive groups, the second at <paramref name="group"/> + <paramref name="groupStride"/>) · 4 activation
    /// rows (<paramref name="a"/> + c * <paramref name="aStride"/>) → y[c * <paramref name="yStride"/> + r], r = 0..15, with the row scales
    /// from <see cref="TileScales"/>. Each weight vector is
    /// unpacked once and feeds 4 tokens; each broadcast activation feeds both groups. The −8 offset enters as the accumulator's start
    /// value −8·Σy (exact: integer arithmetic, |Σ| ≤ 32·15·127 + 8·32·127 fits int32).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Tile16x4<T>(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y, nint yStride)
        where T : struct, IIntDot
    {
        int nb = n / Q4_0Format.BlockSize;
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
        var m4 = Vector256.Create((byte)0x0F);
        int* sums0 = Q8_0.BlockSums(a, nb), sums1 = Q8_0.BlockSums(a + aStride, nb);
        int* sums2 = Q8_0.BlockSums(a + 2 * aStride, nb), sums3 = Q8_0.BlockSums(a + 3 * aStride, nb);
        float* dys0 = Q8_0.BlockScales(a, nb), dys1 = Q8_0.BlockScales(a + aStride, nb);
        float* dys2 = Q8_0.BlockScales(a + 2 * aStride, nb), dys3 = Q8_0.BlockScales(a + 3 * aStride, nb);
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * GroupBlockBytes, g1 = g0 + groupStride;
            nint o = (nint)b * Q8_0Format.TypeSize;
            byte* y0 = a + o, y1 = a + aStride + o, y2 = a + 2 * aStride + o, y3 = a + 3 * aStride + o;
            Vector256<int> s00 = Vector256.Create(-8 * sums0[b]), s01 = Vector256.Create(-8 * sums1[b]);
            Vector256<int> s02 = Vector256.Create(-8 * sums2[b]), s03 = Vector256.Create(-8 * sums3[b]);
            Vector256<int> s10 = s00, s11 = s01, s12 = s02, s13 = s03;
            for (int j = 0; j < 4; j++)
            {
                Vector256<byte> p0 = Vector256.Load(g0 + QuantsOffset + 32 * j), p1 = Vector256.Load(g1 + QuantsOffset + 32 * j);
                Vector256<byte> lo0 = p0 & m4, hi0 = Vector256.ShiftRightLogical(p0.AsUInt16(), 4).AsByte() & m4;
                Vector256<byte> lo1 = p1 & m4, hi1 = Vector256.ShiftRightLogical(p1.AsUInt16(), 4).AsByte() & m4;
                int ol = Q8_0Format.QsOffset + 4 * j, oh = HighQs + 4 * j;
                Step<T>(ref s00, ref s10, lo0, hi0, lo1, hi1, y0 + ol, y0 + oh);
                Step<T>(ref s01, ref s11, lo0, hi0, lo1, hi1, y1 + ol, y1 + oh);
                Step<T>(ref s02, ref s12, lo0, hi0, lo1, hi1, y2 + ol, y2 + oh);
                Step<T>(ref s03, ref s13, lo0, hi0, lo1, hi1, y3 + ol, y3 + oh);
            }
            Vector256<float> dx0 = Vector256.Load(scales + 16 * b), dx1 = Vector256.Load(scales + 16 * b + 8);
            Scale(s00, s10, dx0, dx1, dys0[b], ref a00, ref a10);
            Scale(s01, s11, dx0, dx1, dys1[b], ref a01, ref a11);
            Scale(s02, s12, dx0, dx1, dys2[b], ref a02, ref a12);
            Scale(s03, s13, dx0, dx1, dys3[b], ref a03, ref a13);
        }
        a00.Store(y); a10.Store(y + 8);
        a01.Store(y + yStride); a11.Store(y + yStride + 8);
        a02.Store(y + 2 * yStride); a12.Store(y + 2 * yStride + 8);
        a03.Store(y + 3 * yStride); a13.Store(y + 3 * yStride + 8);
    }

    /// <summary>
    /// The tile's row scales as floats, converted once per tile and reused by every 4-token call: scales[16 b + r] for block b and
    /// row r = 0..15 of the two groups (<see cref="Tile16x4{T}"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void TileScales(int n, byte* group, nint groupStride, float* scales) =>
        GroupScales(n / Q4_0Format.BlockSize, GroupBlockBytes, group, groupStride, scales);

    /// <summary>The 8 fp16 scales at the start of each group-block of both groups → floats, scales[16 b + r].</summary>
    internal static void GroupScales(int nb, int groupBlockBytes, byte* group, nint groupStride, float* scales)
    {
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * groupBlockBytes;
            F16.Load8((ushort*)g0).Store(scales + 16 * b);
            F16.Load8((ushort*)(g0 + groupStride)).Store(scales + 16 * b + 8);
        }
    }

    /// <summary>One token's 4 low- and 4 high-nibble elements against both groups.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step<T>(ref Vector256<int> s0, ref Vector256<int> s1, Vector256<byte> lo0, Vector256<byte> hi0, Vector256<byte> lo1,
        Vector256<byte> hi1, byte* yl, byte* yh)
        where T : struct, IIntDot
    {
        Vector256<sbyte> bl = Vector256.Create(*(int*)yl).AsSByte(), bh = Vector256.Create(*(int*)yh).AsSByte();
        s0 = T.DotU8S8(T.DotU8S8(s0, lo0, bl), hi0, bh);
        s1 = T.DotU8S8(T.DotU8S8(s1, lo1, bl), hi1, bh);
    }

    /// <summary>acc += float(s) · dx · dy for both groups of one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Scale(Vector256<int> s0, Vector256<int> s1, Vector256<float> dx0, Vector256<float> dx1, float yScale,
        ref Vector256<float> acc0, ref Vector256<float> acc1)
    {
        var dy = Vector256.Create(yScale);
        acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s0) * dy, dx0, acc0);
        acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s1) * dy, dx1, acc1);
    }
}
