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

    /// <summary>
    /// Whether a 512-bit instruction costs the vector units no more than a 256-bit one. False on AMD Zen 4 (family 19h), which
    /// splits each into two 256-bit halves: there a 512-bit kernel gains only where it needs fewer instructions for the same products
    /// (the int16 sums of the 4- to 6-bit tiles), not where it needs as many or more (Q8_0 without VNNI: its sign handling).
    /// </summary>
    public static readonly bool FullWidth = !IsAmdFamily(0x19);

    private static bool IsAmdFamily(int family)
    {
        if (!X86Base.IsSupported) return false;
        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        bool amd = ebx == 0x68747541 && edx == 0x69746E65 && ecx == 0x444D4163; // "AuthenticAMD"
        int eax = X86Base.CpuId(1, 0).Eax;
        int baseFamily = (eax >> 8) & 0xF;
        return amd && (baseFamily == 0xF ? baseFamily + ((eax >> 20) & 0xFF) : baseFamily) == family;
    }

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

    /// <summary>
    /// s + <paramref name="scale"/> · Σ w_k·y over one 32-element sub-block of 16 rows (8 vectors of 4 elements) against one token's
    /// activations at <paramref name="q"/>: the products add up in int16 (each lane sums 16 of them: the caller keeps w·y small
    /// enough), then one <c>vpmaddwd</c> widens them with the scale.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> SubBlock32(Vector512<int> s, in WideWeights w, Vector512<short> scale, byte* q)
    {
        Vector512<short> p = Mul16(w.W0, Broadcast4(q));
        p = MulAdd16(p, w.W1, Broadcast4(q + 4));
        p = MulAdd16(p, w.W2, Broadcast4(q + 8));
        p = MulAdd16(p, w.W3, Broadcast4(q + 12));
        p = MulAdd16(p, w.W4, Broadcast4(q + 16));
        p = MulAdd16(p, w.W5, Broadcast4(q + 20));
        p = MulAdd16(p, w.W6, Broadcast4(q + 24));
        p = MulAdd16(p, w.W7, Broadcast4(q + 28));
        return s + Widen(p, scale);
    }

    /// <summary>
    /// <see cref="SubBlock32"/> for weights up to 31: the products add up in int16 over 4 vectors at a time (each lane then sums 8
    /// products, at most 8·31·128 = 31744), widened twice.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> SubBlock32Split(Vector512<int> s, in WideWeights w, Vector512<short> scale, byte* q)
    {
        Vector512<short> p = Mul16(w.W0, Broadcast4(q));
        p = MulAdd16(p, w.W1, Broadcast4(q + 4));
        p = MulAdd16(p, w.W2, Broadcast4(q + 8));
        p = MulAdd16(p, w.W3, Broadcast4(q + 12));
        Vector512<short> r = Mul16(w.W4, Broadcast4(q + 16));
        r = MulAdd16(r, w.W5, Broadcast4(q + 20));
        r = MulAdd16(r, w.W6, Broadcast4(q + 24));
        r = MulAdd16(r, w.W7, Broadcast4(q + 28));
        return s + Widen(p, scale) + Widen(r, scale);
    }
}

/// <summary>The 8 unpacked weight vectors of one 32-element sub-block of 16 rows: W_k holds elements 4k..4k+3 of every row.</summary>
internal readonly struct WideWeights(Vector512<byte> w0, Vector512<byte> w1, Vector512<byte> w2, Vector512<byte> w3,
    Vector512<byte> w4, Vector512<byte> w5, Vector512<byte> w6, Vector512<byte> w7)
{
    public readonly Vector512<byte> W0 = w0, W1 = w1, W2 = w2, W3 = w3, W4 = w4, W5 = w5, W6 = w6, W7 = w7;
}
