using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

public static unsafe partial class Q4_0x8
{
    /// <summary>Activation rows per <see cref="Tile16x8Avx512"/> call.</summary>
    internal const int WideTileTokens = 8;

    /// <summary>
    /// GEMM tile with 512-bit AVX-512BW (see <see cref="Wide"/>): 16 rows (two consecutive groups) · 8 activation rows →
    /// y[c * <paramref name="yStride"/> + r], row scales from <see cref="TileScales"/>. Per block and token, the 8 nibble vectors'
    /// products (q ≤ 15, |y| ≤ 127: each int16 lane sums 16 products, at most 30480) add up in int16 and are widened once; the
    /// −8 offset is −8·Σy in int32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Tile16x8Avx512(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y,
        nint yStride)
    {
        int nb = n / Q4_0Format.BlockSize;
        nint sumsOffset = (nint)nb * Q8_0Format.TypeSize, scalesOffset = sumsOffset + (nint)nb * sizeof(int);
        Vector512<float> f0 = default, f1 = default, f2 = default, f3 = default, f4 = default, f5 = default, f6 = default, f7 = default;
        var m4 = Vector512.Create((byte)0x0F);
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * GroupBlockBytes + QuantsOffset, g1 = g0 + groupStride;
            Vector512<byte> p0 = Wide.Load2(g0, g1), p1 = Wide.Load2(g0 + 32, g1 + 32);
            Vector512<byte> p2 = Wide.Load2(g0 + 64, g1 + 64), p3 = Wide.Load2(g0 + 96, g1 + 96);
            var w = new Nibbles(p0 & m4, p1 & m4, p2 & m4, p3 & m4,
                Vector512.ShiftRightLogical(p0.AsUInt16(), 4).AsByte() & m4, Vector512.ShiftRightLogical(p1.AsUInt16(), 4).AsByte() & m4,
                Vector512.ShiftRightLogical(p2.AsUInt16(), 4).AsByte() & m4, Vector512.ShiftRightLogical(p3.AsUInt16(), 4).AsByte() & m4);
            Vector512<float> dx = Vector512.Load(scales + 16 * b);
            nint o = (nint)b * Q8_0Format.TypeSize;
            f0 = WideToken(a, o, sumsOffset + 4 * b, scalesOffset + 4 * b, w, dx, f0);
            f1 = WideToken(a + aStride, o, sumsOffset + 4 * b, scalesOffset + 4 * b, w, dx, f1);
            f2 = WideToken(a + 2 * aStride, o, sumsOffset + 4 * b, scalesOffset + 4 * b, w, dx, f2);
            f3 = WideToken(a + 3 * aStride, o, sumsOffset + 4 * b, scalesOffset + 4 * b, w, dx, f3);
            f4 = WideToken(a + 4 * aStride, o, sumsOffset + 4 * b, scalesOffset + 4 * b, w, dx, f4);
            f5 = WideToken(a + 5 * aStride, o, sumsOffset + 4 * b, scalesOffset + 4 * b, w, dx, f5);
            f6 = WideToken(a + 6 * aStride, o, sumsOffset + 4 * b, scalesOffset + 4 * b, w, dx, f6);
            f7 = WideToken(a + 7 * aStride, o, sumsOffset + 4 * b, scalesOffset + 4 * b, w, dx, f7);
        }
        f0.Store(y); f1.Store(y + yStride); f2.Store(y + 2 * yStride); f3.Store(y + 3 * yStride);
        f4.Store(y + 4 * yStride); f5.Store(y + 5 * yStride); f6.Store(y + 6 * yStride); f7.Store(y + 7 * yStride);
    }

    /// <summary>The 8 unpacked vectors of one group-block pair: low nibbles (elements 4j + e) and high nibbles (16 + 4j + e).</summary>
    private readonly struct Nibbles(Vector512<byte> l0, Vector512<byte> l1, Vector512<byte> l2, Vector512<byte> l3,
        Vector512<byte> h0, Vector512<byte> h1, Vector512<byte> h2, Vector512<byte> h3)
    {
        public readonly Vector512<byte> L0 = l0, L1 = l1, L2 = l2, L3 = l3, H0 = h0, H1 = h1, H2 = h2, H3 = h3;
    }

    /// <summary>One token's block (activation row <paramref name="row"/>, block at <paramref name="o"/>) against 16 rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> WideToken(byte* row, nint o, nint sum, nint scale, in Nibbles w, Vector512<float> dx, Vector512<float> f)
    {
        byte* q = row + o + Q8_0Format.QsOffset;
        Vector512<short> s = Wide.Mul16(w.L0, Wide.Broadcast4(q));
        s = Wide.MulAdd16(s, w.L1, Wide.Broadcast4(q + 4));
        s = Wide.MulAdd16(s, w.L2, Wide.Broadcast4(q + 8));
        s = Wide.MulAdd16(s, w.L3, Wide.Broadcast4(q + 12));
        s = Wide.MulAdd16(s, w.H0, Wide.Broadcast4(q + 16));
        s = Wide.MulAdd16(s, w.H1, Wide.Broadcast4(q + 20));
        s = Wide.MulAdd16(s, w.H2, Wide.Broadcast4(q + 24));
        s = Wide.MulAdd16(s, w.H3, Wide.Broadcast4(q + 28));
        Vector512<int> si = Wide.Widen(s, Vector512<short>.One) - Vector512.Create(8 * *(int*)(row + sum));
        return Avx512F.FusedMultiplyAdd(Wide.ToFloat(si), dx * Vector512.Create(*(float*)(row + scale)), f);
    }
}
