using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>
/// The integer multiply-accumulate step of the quantized dots, in two flavours chosen once when the kernel table is built:
/// AVX-VNNI (<c>vpdpbusd</c> / <c>vpdpwssd</c>, one instruction each) or plain AVX2 (<c>vpmaddubsw</c> + <c>vpmaddwd</c>).
/// Kernels are generic over this so the JIT specializes each path; tests run both where the CPU has them.
/// </summary>
internal interface IIntDot
{
    /// <summary>
    /// acc + sums of 4 adjacent u8*s8 products per int32 lane. AVX2 flavour: every adjacent pair u*s + u*s must fit int16
    /// (u ≤ 128, |s| ≤ 127).
    /// </summary>
    static abstract Vector256<int> DotU8S8(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> s);

    /// <summary>acc + sums of 2 adjacent s16*s16 products per int32 lane.</summary>
    static abstract Vector256<int> MaddS16(Vector256<int> acc, Vector256<short> a, Vector256<short> b);

    static abstract bool IsSupported { get; }
}

internal struct VnniDot : IIntDot
{
    public static bool IsSupported => AvxVnni.IsSupported && Avx2.IsSupported && Fma.IsSupported;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> DotU8S8(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> s) => AvxVnni.MultiplyWideningAndAdd(acc, u, s);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MaddS16(Vector256<int> acc, Vector256<short> a, Vector256<short> b) => AvxVnni.MultiplyWideningAndAdd(acc, a, b);
}

internal struct Avx2Dot : IIntDot
{
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> DotU8S8(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> s) =>
        Avx2.Add(acc, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), Vector256.Create((short)1)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MaddS16(Vector256<int> acc, Vector256<short> a, Vector256<short> b) => Avx2.Add(acc, Avx2.MultiplyAddAdjacent(a, b));
}

/// <summary>Named SIMD idioms shared by the formats (candle's <c>bytes_from_nibbles_32</c>, <c>hsum_float_8</c>, ...).</summary>
internal static unsafe class Simd
{
    /// <summary>
    /// Prefetches (into all cache levels) the cache lines of <paramref name="bytes"/> bytes from <paramref name="p"/>;
    /// addresses past the end of a buffer are harmless.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Prefetch(byte* p, int bytes)
    {
        for (int o = 0; o < bytes; o += 64) Sse.Prefetch0(p + o);
    }

    /// <summary>16 packed bytes → 32 bytes: the low nibbles (elements 0..15) then the high nibbles (elements 16..31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> BytesFromNibbles32(byte* p)
    {
        Vector128<byte> q = Vector128.Load(p);
        return Vector256.Create(q, Vector128.ShiftRightLogical(q.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0x0F);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> LowNibbles(Vector256<byte> q) => q & Vector256.Create((byte)0x0F);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> HighNibbles(Vector256<byte> q) =>
        Vector256.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & Vector256.Create((byte)0x0F);

    /// <summary>32 bits → 32 bytes, 0xFF where the bit is set (byte k from bit k).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> BytesFromBits32(uint bits)
    {
        Vector256<byte> v = Vector256.Create(bits).AsByte();
        // byte k takes source byte k/8 (in-lane shuffle: both lanes hold all 4 bytes)
        Vector256<byte> spread = Avx2.Shuffle(v, Vector256.Create(
            (byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        Vector256<byte> mask = Vector256.Create(0x8040201008040201UL).AsByte();
        return Vector256.Equals(spread & mask, mask);
    }

    /// <summary>Signed x signed 8-bit dot via the unsigned path: |x| * (y with x's sign).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> DotS8S8<T>(Vector256<int> acc, Vector256<sbyte> x, Vector256<sbyte> y) where T : struct, IIntDot =>
        T.DotU8S8(acc, Avx2.Abs(x), Avx2.Sign(y, x));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MulAdd(Vector256<int> sumi, float scale, Vector256<float> acc) =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(sumi), Vector256.Create(scale), acc);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MulAdd(Vector256<int> sumi, Vector256<float> scale, Vector256<float> acc) =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(sumi), scale, acc);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HSum(Vector256<float> v) => Vector128.Sum(v.GetLower() + v.GetUpper());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int HSum(Vector256<int> v) => Vector128.Sum(v.GetLower() + v.GetUpper());

    /// <summary>16 int16 lanes: the low 8 hold <paramref name="a"/>, the high 8 hold <paramref name="b"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<short> Scales16(int a, int b) => Vector256.Create(Vector128.Create((short)a), Vector128.Create((short)b));
}
