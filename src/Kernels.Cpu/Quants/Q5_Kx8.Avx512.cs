using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

public static unsafe partial class Q5_Kx8
{
    /// <summary>The 512-bit tile's scales: Q5_K has Q4_K's header, so <see cref="Q4_Kx8.WideKTileScales"/> writes them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void WideTileScales(int n, byte* group, nint groupStride, float* scales) =>
        Q4_Kx8.WideKTileScales(n / Q5_KFormat.BlockSize, GroupBlockBytes, group, groupStride, (byte*)scales);

    /// <summary>
    /// GEMM tile with 512-bit AVX-512BW (see <see cref="Wide"/> and <see cref="Q4_Kx8.Tile16x8Avx512"/>): 16 rows (two consecutive
    /// groups) · 8 Q8_K activation rows. The 5-bit weights (≤ 31) are unpacked to whole values (not doubled) so each int16 lane can
    /// sum 8 products (<see cref="Wide.SubBlock32Split"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // tests then run the optimized code, not tier-0
    internal static void Tile16x8Avx512(int n, byte* group, nint groupStride, float* tileScales, byte* a, nint aStride, float* y,
        nint yStride)
    {
        int nb = n / Q5_KFormat.BlockSize;
        Vector512<float> f0 = default, f1 = default, f2 = default, f3 = default, f4 = default, f5 = default, f6 = default, f7 = default;
        for (int b = 0; b < nb; b++)
        {
            byte* g0 = group + (nint)b * GroupBlockBytes, g1 = g0 + groupStride;
            byte* sc = (byte*)tileScales + (nint)b * Q4_Kx8.WideScaleBytes;
            nint o = (nint)b * Q8_KFormat.TypeSize;
            Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
            // sub-block j: the low weights of pair j/2 for even j, the high for odd j (a loop: inlined copies would exhaust the JIT's budget)
            for (int j = 0; j < 8; j++)
            {
                var w = WideUnpack(g0, g1, j);
                Vector512<short> scale = Vector512.Load((short*)(sc + 64 * j));
                byte* q = a + o + Q8_KFormat.QsOffset + 32 * j;
                s0 = Wide.SubBlock32Split(s0, w, scale, q);
                s1 = Wide.SubBlock32Split(s1, w, scale, q + aStride);
                s2 = Wide.SubBlock32Split(s2, w, scale, q + 2 * aStride);
                s3 = Wide.SubBlock32Split(s3, w, scale, q + 3 * aStride);
                s4 = Wide.SubBlock32Split(s4, w, scale, q + 4 * aStride);
                s5 = Wide.SubBlock32Split(s5, w, scale, q + 5 * aStride);
                s6 = Wide.SubBlock32Split(s6, w, scale, q + 6 * aStride);
                s7 = Wide.SubBlock32Split(s7, w, scale, q + 7 * aStride);
            }
            Q4_Kx8.WideFinish8(a, aStride, o, sc, s0, s1, s2, s3, s4, s5, s6, s7,
                ref f0, ref f1, ref f2, ref f3, ref f4, ref f5, ref f6, ref f7);
        }
        f0.Store(y); f1.Store(y + yStride); f2.Store(y + 2 * yStride); f3.Store(y + 3 * yStride);
        f4.Store(y + 4 * yStride); f5.Store(y + 5 * yStride); f6.Store(y + 6 * yStride); f7.Store(y + 7 * yStride);
    }

    /// <summary>
    /// Sub-block j of 16 rows as whole 5-bit values: X &amp; 0x1F for the low sub-block of pair c = j/2; for the high one, bits 0-2
    /// from X bits 5-7 and bits 3-4 from bits 2c, 2c + 1 of Y (16-bit shifts; the bits they carry across bytes are masked off).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static WideWeights WideUnpack(byte* g0, byte* g1, int j)
    {
        int c = j >> 1;
        byte* x0 = g0 + QuantsOffset + Q4_Kx8.PairBytes * c, x1 = g1 + QuantsOffset + Q4_Kx8.PairBytes * c;
        if ((j & 1) == 0)
        {
            var m5 = Vector512.Create((byte)0x1F);
            return new WideWeights(Wide.Load2(x0, x1) & m5, Wide.Load2(x0 + 32, x1 + 32) & m5, Wide.Load2(x0 + 64, x1 + 64) & m5,
                Wide.Load2(x0 + 96, x1 + 96) & m5, Wide.Load2(x0 + 128, x1 + 128) & m5, Wide.Load2(x0 + 160, x1 + 160) & m5,
                Wide.Load2(x0 + 192, x1 + 192) & m5, Wide.Load2(x0 + 224, x1 + 224) & m5);
        }
        byte* h0 = g0 + HighBitsOffset, h1 = g1 + HighBitsOffset;
        byte down = (byte)(2 * c);
        return new WideWeights(High5(x0, x1, h0, h1, down), High5(x0 + 32, x1 + 32, h0 + 32, h1 + 32, down),
            High5(x0 + 64, x1 + 64, h0 + 64, h1 + 64, down), High5(x0 + 96, x1 + 96, h0 + 96, h1 + 96, down),
            High5(x0 + 128, x1 + 128, h0 + 128, h1 + 128, down), High5(x0 + 160, x1 + 160, h0 + 160, h1 + 160, down),
            High5(x0 + 192, x1 + 192, h0 + 192, h1 + 192, down), High5(x0 + 224, x1 + 224, h0 + 224, h1 + 224, down));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> High5(byte* x0, byte* x1, byte* h0, byte* h1, byte down)
    {
        Vector512<ushort> x = Wide.Load2(x0, x1).AsUInt16(), h = Wide.Load2(h0, h1).AsUInt16();
        return (Vector512.ShiftRightLogical(x, 5).AsByte() & Vector512.Create((byte)0x07))
            | (Vector512.ShiftLeft(Vector512.ShiftRightLogical(h, down), 3).AsByte() & Vector512.Create((byte)0x18));
    }
}
