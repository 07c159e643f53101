using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>
/// Idioms of the 512-bit AVX-512BW GEMM tiles. A tile's zmm vector holds the same 4 elements of 16 weight rows: the 8 rows of
/// a repacked group in the low 256 bits, the 8 rows of the next group in the high 256 bits (two loads and one insert, shared by
/// every token of the tile), so one 4-byte activation broadcast feeds all 16 rows. <c>vpmaddubsw</c> products of small unsigned
/// weights are summed in int16 lanes (<c>vpaddw</c>) over a whole sub-block and widened once (<c>vpmaddwd</c>, which can apply an
/// integer scale at the same time): no 512-bit VNNI is needed, and the multiply ports do one instruction per 64 products.
/// </summary>
internal static unsafe class Wide
{
    public static bool IsSupported => Avx512BW.IsSupported && Avx512F.IsSupported && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>32 bytes of group 0 (low half) and 32 bytes of group 1 (high half).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Load2(byte* g0, byte* g1) =>
        Avx512F.InsertVector256(Vector256.Load(g0).ToVector512Unsafe(), Vector256.Load(g1), 1);

    /// <summary>The 4 bytes at <paramref name="p"/> in every int32 lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<sbyte> Broadcast4(byte* p) => Vector512.Create(*(int*)p).AsSByte();

    /// <summary>int16 lanes: acc + (u·s pairs) (no saturation while every pair and the running sum fit int16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<short> MulAdd16(Vector512<short> acc, Vector512<byte> u, Vector512<sbyte> s) =>
        acc + Avx512BW.MultiplyAddAdjacent(u, s);

    /// <summary>u·s pairs in int16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<short> Mul16(Vector512<byte> u, Vector512<sbyte> s) => Avx512BW.MultiplyAddAdjacent(u, s);

    /// <summary>int16 pairs → int32 lanes, each pair weighted by <paramref name="w"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> Widen(Vector512<short> s, Vector512<short> w) => Avx512BW.MultiplyAddAdjacent(s, w);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ToFloat(Vector512<int> s) => Avx512F.ConvertToVector512Single(s);

    /// <summary>Stores the 16 row results of a token: rows 0..15 at <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector512<float> v, float* y) => v.Store(y);
}
