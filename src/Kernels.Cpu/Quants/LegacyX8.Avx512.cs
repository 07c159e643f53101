using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Infer.Kernels.Cpu.Quants;

internal static unsafe partial class LegacyX8
{
    /// <summary>
    /// GEMM tile with 512-bit AVX-512BW (see <see cref="Wide"/>): 16 rows (two consecutive groups) · 8 activation rows →
    /// y[c * <paramref name="yStride"/> + r], scales from <see cref="TileScales{F}"/>. Per block and token the 8 unpacked vectors'
    /// products add up in int16 (4-bit: 16 products per lane, at most 16·15·127 = 30480; 5-bit: two sums of 8, at most 31496).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    public static void Tile16x8Avx512<F>(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y,
        nint yStride) where F : struct, ILegacyX8
    {
        int nb = n / 32, per = TileScaleFloats<F>();
        Vector512<float> f0 = default, f1 = default, f2 = default, f3 = default, f4 = default, f5 = default, f6 = default, f7 = default;
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * GroupBlockBytes<F>(), g1 = g0 + groupStride;
            var w = WideUnpack<F>(g0, g1);
            Vector512<float> dx = Vector512.Load(scales + per * b);
            Vector512<float> mx = F.HasMin ? Vector512.Load(scales + per * b + 16) : default;
            nint o = (nint)b * ActBlockBytes<F>() + ActQs<F>();
            f0 = WideToken<F>(a, nb, b, o, w, dx, mx, f0);
            f1 = WideToken<F>(a + aStride, nb, b, o, w, dx, mx, f1);
            f2 = WideToken<F>(a + 2 * aStride, nb, b, o, w, dx, mx, f2);
            f3 = WideToken<F>(a + 3 * aStride, nb, b, o, w, dx, mx, f3);
            f4 = WideToken<F>(a + 4 * aStride, nb, b, o, w, dx, mx, f4);
            f5 = WideToken<F>(a + 5 * aStride, nb, b, o, w, dx, mx, f5);
            f6 = WideToken<F>(a + 6 * aStride, nb, b, o, w, dx, mx, f6);
            f7 = WideToken<F>(a + 7 * aStride, nb, b, o, w, dx, mx, f7);
        }
        f0.Store(y); f1.Store(y + yStride); f2.Store(y + 2 * yStride); f3.Store(y + 3 * yStride);
        f4.Store(y + 4 * yStride); f5.Store(y + 5 * yStride); f6.Store(y + 6 * yStride); f7.Store(y + 7 * yStride);
    }

    /// <summary>The block's 8 vectors of 16 rows: W0..W3 the elements 4j + e, W4..W7 the elements 16 + 4j + e.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static WideWeights WideUnpack<F>(byte* g0, byte* g1) where F : struct, ILegacyX8
    {
        var m4 = Vector512.Create((byte)0x0F);
        byte* p0 = g0 + QuantsOffset<F>(), p1 = g1 + QuantsOffset<F>();
        Vector512<byte> q0 = Wide.Load2(p0, p1), q1 = Wide.Load2(p0 + 32, p1 + 32);
        Vector512<byte> q2 = Wide.Load2(p0 + 64, p1 + 64), q3 = Wide.Load2(p0 + 96, p1 + 96);
        Vector512<byte> l0 = q0 & m4, l1 = q1 & m4, l2 = q2 & m4, l3 = q3 & m4;
        Vector512<byte> h0 = Vector512.ShiftRightLogical(q0.AsUInt16(), 4).AsByte() & m4;
        Vector512<byte> h1 = Vector512.ShiftRightLogical(q1.AsUInt16(), 4).AsByte() & m4;
        Vector512<byte> h2 = Vector512.ShiftRightLogical(q2.AsUInt16(), 4).AsByte() & m4;
        Vector512<byte> h3 = Vector512.ShiftRightLogical(q3.AsUInt16(), 4).AsByte() & m4;
        if (F.FiveBit)
        {
            Vector512<ushort> hb = Wide.Load2(g0 + HighOffset<F>(), g1 + HighOffset<F>()).AsUInt16();
            var m10 = Vector512.Create((byte)0x10);
            l0 |= Vector512.ShiftLeft(hb, 4).AsByte() & m10;
            l1 |= Vector512.ShiftLeft(hb, 3).AsByte() & m10;
            l2 |= Vector512.ShiftLeft(hb, 2).AsByte() & m10;
            l3 |= Vector512.ShiftLeft(hb, 1).AsByte() & m10;
            h0 |= hb.AsByte() & m10;
            h1 |= Vector512.ShiftRightLogical(hb, 1).AsByte() & m10;
            h2 |= Vector512.ShiftRightLogical(hb, 2).AsByte() & m10;
            h3 |= Vector512.ShiftRightLogical(hb, 3).AsByte() & m10;
        }
        return new WideWeights(l0, l1, l2, l3, h0, h1, h2, h3);
    }

    /// <summary>One token's block against 16 rows: f + dx·dy·Σ q·y (Q5_0: minus 16·Σy), plus m·s for the min types.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> WideToken<F>(byte* row, int nb, int b, nint o, in WideWeights w, Vector512<float> dx,
        Vector512<float> mx, Vector512<float> f) where F : struct, ILegacyX8
    {
        Vector512<int> s = F.FiveBit ? Wide.SubBlock32Split(Vector512<int>.Zero, w, Vector512<short>.One, row + o)
            : Wide.SubBlock32(Vector512<int>.Zero, w, Vector512<short>.One, row + o);
        if (!F.HasMin) s += Vector512.Create(Start<F>(row, nb, b));
        f = Avx512F.FusedMultiplyAdd(Wide.ToFloat(s), dx * Vector512.Create(ActScale<F>(row, nb, b)), f);
        return F.HasMin ? Avx512F.FusedMultiplyAdd(mx, Vector512.Create(Q8_1.BlockSums(row, nb)[b]), f) : f;
    }
}
