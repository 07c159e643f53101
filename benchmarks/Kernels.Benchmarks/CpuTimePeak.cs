using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Infer.Benchmarks;

/// <summary>
/// The integer multiply-add rate of each instruction-set flavour on one core, in the shape of a GEMM tile: two weight vectors
/// loaded per step, four broadcast activations, eight independent products (so latency is hidden and loads are not the limit).
/// </summary>
public static unsafe partial class CpuTimeProbe
{
    private const int PeakSteps = 4096;

    private static void Peak()
    {
        byte* buf = (byte*)NativeMemory.AlignedAlloc(64 * 1024, 64);
        for (int i = 0; i < 64 * 1024; i++) buf[i] = (byte)(i * 7 % 16);
        double macs = 1e-9 * PeakSteps * 8;
        if (AvxVnni.IsSupported) Report("vpdpbusd ymm", Rate(macs * 32, () => VnniYmm(buf)));
        if (AvxVnni.IsSupported) Report("vpdpbusd ymm, 12 sums, no loads", Rate(1e-9 * PeakSteps * 12 * 32, () => VnniYmm12(buf)));
        if (Avx2.IsSupported) Report("vpmaddubsw+vpmaddwd+vpaddd ymm", Rate(macs * 32, () => Avx2Ymm(buf)));
        if (Avx2.IsSupported) Report("vpmaddubsw+vpaddw ymm (int16 acc)", Rate(macs * 32, () => Avx2YmmW(buf)));
        if (Avx512BW.IsSupported)
        {
            Report("vpmaddubsw+vpmaddwd+vpaddd zmm", Rate(macs * 64, () => BwZmm(buf)));
            Report("vpmaddubsw+vpaddw zmm (int16 acc)", Rate(macs * 64, () => BwZmmW(buf)));
            Report("vpmaddwd+vpaddd zmm (int16 in)", Rate(macs * 32, () => WdZmm(buf)));
        }
        NativeMemory.AlignedFree(buf);
    }

    private static void Report(string what, double gmac) => Console.WriteLine($"{what,-36} {gmac,6:F1} GMAC/s");

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static int VnniYmm(byte* buf)
    {
        Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
        for (int i = 0; i < PeakSteps; i++)
        {
            byte* p = buf + (i & 255) * 64;
            Vector256<byte> w0 = Vector256.Load(p), w1 = Vector256.Load(p + 32);
            Vector256<sbyte> b0 = Vector256.Create(*(int*)(p + 16384)).AsSByte(), b1 = Vector256.Create(*(int*)(p + 16388)).AsSByte();
            Vector256<sbyte> b2 = Vector256.Create(*(int*)(p + 16392)).AsSByte(), b3 = Vector256.Create(*(int*)(p + 16396)).AsSByte();
            s0 = AvxVnni.MultiplyWideningAndAdd(s0, w0, b0); s1 = AvxVnni.MultiplyWideningAndAdd(s1, w1, b0);
            s2 = AvxVnni.MultiplyWideningAndAdd(s2, w0, b1); s3 = AvxVnni.MultiplyWideningAndAdd(s3, w1, b1);
            s4 = AvxVnni.MultiplyWideningAndAdd(s4, w0, b2); s5 = AvxVnni.MultiplyWideningAndAdd(s5, w1, b2);
            s6 = AvxVnni.MultiplyWideningAndAdd(s6, w0, b3); s7 = AvxVnni.MultiplyWideningAndAdd(s7, w1, b3);
        }
        return Vector256.Sum(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7);
    }

    /// <summary>
    /// The instruction's own ceiling: 12 independent sums (as the 16x6 Q8_0 tile keeps) and operands in registers. With 8 sums
    /// and loads (<see cref="VnniYmm"/>) one Zen 5 core read 225-250 GMAC/s, with 12 sums 267-269.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static int VnniYmm12(byte* buf)
    {
        Vector256<byte> w0 = Vector256.Load(buf), w1 = Vector256.Load(buf + 32);
        Vector256<sbyte> b = Vector256.Create(*(int*)(buf + 16384)).AsSByte();
        Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default;
        Vector256<int> s6 = default, s7 = default, s8 = default, s9 = default, s10 = default, s11 = default;
        for (int i = 0; i < PeakSteps; i++)
        {
            s0 = AvxVnni.MultiplyWideningAndAdd(s0, w0, b); s1 = AvxVnni.MultiplyWideningAndAdd(s1, w1, b);
            s2 = AvxVnni.MultiplyWideningAndAdd(s2, w0, b); s3 = AvxVnni.MultiplyWideningAndAdd(s3, w1, b);
            s4 = AvxVnni.MultiplyWideningAndAdd(s4, w0, b); s5 = AvxVnni.MultiplyWideningAndAdd(s5, w1, b);
            s6 = AvxVnni.MultiplyWideningAndAdd(s6, w0, b); s7 = AvxVnni.MultiplyWideningAndAdd(s7, w1, b);
            s8 = AvxVnni.MultiplyWideningAndAdd(s8, w0, b); s9 = AvxVnni.MultiplyWideningAndAdd(s9, w1, b);
            s10 = AvxVnni.MultiplyWideningAndAdd(s10, w0, b); s11 = AvxVnni.MultiplyWideningAndAdd(s11, w1, b);
        }
        return Vector256.Sum(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7 + s8 + s9 + s10 + s11);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Pair(Vector256<int> acc, Vector256<byte> w, Vector256<sbyte> b) =>
        acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(w, b), Vector256.Create((short)1));

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static int Avx2Ymm(byte* buf)
    {
        Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
        for (int i = 0; i < PeakSteps; i++)
        {
            byte* p = buf + (i & 255) * 64;
            Vector256<byte> w0 = Vector256.Load(p), w1 = Vector256.Load(p + 32);
            Vector256<sbyte> b0 = Vector256.Create(*(int*)(p + 16384)).AsSByte(), b1 = Vector256.Create(*(int*)(p + 16388)).AsSByte();
            Vector256<sbyte> b2 = Vector256.Create(*(int*)(p + 16392)).AsSByte(), b3 = Vector256.Create(*(int*)(p + 16396)).AsSByte();
            s0 = Pair(s0, w0, b0); s1 = Pair(s1, w1, b0); s2 = Pair(s2, w0, b1); s3 = Pair(s3, w1, b1);
            s4 = Pair(s4, w0, b2); s5 = Pair(s5, w1, b2); s6 = Pair(s6, w0, b3); s7 = Pair(s7, w1, b3);
        }
        return Vector256.Sum(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> PairW(Vector256<short> acc, Vector256<byte> w, Vector256<sbyte> b) => acc + Avx2.MultiplyAddAdjacent(w, b);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static int Avx2YmmW(byte* buf)
    {
        Vector256<short> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
        for (int i = 0; i < PeakSteps; i++)
        {
            byte* p = buf + (i & 255) * 64;
            Vector256<byte> w0 = Vector256.Load(p), w1 = Vector256.Load(p + 32);
            Vector256<sbyte> b0 = Vector256.Create(*(int*)(p + 16384)).AsSByte(), b1 = Vector256.Create(*(int*)(p + 16388)).AsSByte();
            Vector256<sbyte> b2 = Vector256.Create(*(int*)(p + 16392)).AsSByte(), b3 = Vector256.Create(*(int*)(p + 16396)).AsSByte();
            s0 = PairW(s0, w0, b0); s1 = PairW(s1, w1, b0); s2 = PairW(s2, w0, b1); s3 = PairW(s3, w1, b1);
            s4 = PairW(s4, w0, b2); s5 = PairW(s5, w1, b2); s6 = PairW(s6, w0, b3); s7 = PairW(s7, w1, b3);
        }
        return Vector256.Sum(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Pair(Vector512<int> acc, Vector512<byte> w, Vector512<sbyte> b) =>
        acc + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(w, b), Vector512.Create((short)1));

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static int BwZmm(byte* buf)
    {
        Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
        for (int i = 0; i < PeakSteps; i++)
        {
            byte* p = buf + (i & 127) * 128;
            Vector512<byte> w0 = Vector512.Load(p), w1 = Vector512.Load(p + 64);
            Vector512<sbyte> b0 = Vector512.Create(*(long*)(p + 16384)).AsSByte(), b1 = Vector512.Create(*(long*)(p + 16392)).AsSByte();
            Vector512<sbyte> b2 = Vector512.Create(*(long*)(p + 16400)).AsSByte(), b3 = Vector512.Create(*(long*)(p + 16408)).AsSByte();
            s0 = Pair(s0, w0, b0); s1 = Pair(s1, w1, b0); s2 = Pair(s2, w0, b1); s3 = Pair(s3, w1, b1);
            s4 = Pair(s4, w0, b2); s5 = Pair(s5, w1, b2); s6 = Pair(s6, w0, b3); s7 = Pair(s7, w1, b3);
        }
        return Vector512.Sum(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> PairW(Vector512<short> acc, Vector512<byte> w, Vector512<sbyte> b) => acc + Avx512BW.MultiplyAddAdjacent(w, b);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static int BwZmmW(byte* buf)
    {
        Vector512<short> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
        for (int i = 0; i < PeakSteps; i++)
        {
            byte* p = buf + (i & 127) * 128;
            Vector512<byte> w0 = Vector512.Load(p), w1 = Vector512.Load(p + 64);
            Vector512<sbyte> b0 = Vector512.Create(*(long*)(p + 16384)).AsSByte(), b1 = Vector512.Create(*(long*)(p + 16392)).AsSByte();
            Vector512<sbyte> b2 = Vector512.Create(*(long*)(p + 16400)).AsSByte(), b3 = Vector512.Create(*(long*)(p + 16408)).AsSByte();
            s0 = PairW(s0, w0, b0); s1 = PairW(s1, w1, b0); s2 = PairW(s2, w0, b1); s3 = PairW(s3, w1, b1);
            s4 = PairW(s4, w0, b2); s5 = PairW(s5, w1, b2); s6 = PairW(s6, w0, b3); s7 = PairW(s7, w1, b3);
        }
        return Vector512.Sum((s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7).AsInt32());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> PairD(Vector512<int> acc, Vector512<short> w, Vector512<short> b) => acc + Avx512BW.MultiplyAddAdjacent(w, b);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static int WdZmm(byte* buf)
    {
        Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
        for (int i = 0; i < PeakSteps; i++)
        {
            byte* p = buf + (i & 127) * 128;
            Vector512<short> w0 = Vector512.Load((short*)p), w1 = Vector512.Load((short*)(p + 64));
            Vector512<short> b0 = Vector512.Create(*(int*)(p + 16384)).AsInt16(), b1 = Vector512.Create(*(int*)(p + 16388)).AsInt16();
            Vector512<short> b2 = Vector512.Create(*(int*)(p + 16392)).AsInt16(), b3 = Vector512.Create(*(int*)(p + 16396)).AsInt16();
            s0 = PairD(s0, w0, b0); s1 = PairD(s1, w1, b0); s2 = PairD(s2, w0, b1); s3 = PairD(s3, w1, b1);
            s4 = PairD(s4, w0, b2); s5 = PairD(s5, w1, b2); s6 = PairD(s6, w0, b3); s7 = PairD(s7, w1, b3);
        }
        return Vector512.Sum(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7);
    }
}
