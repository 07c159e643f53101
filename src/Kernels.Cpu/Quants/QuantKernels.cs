using System.Runtime.Intrinsics.X86;
using Infer.Kernels.Cpu.Jit;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>
/// The kernels of one weight type, resolved once (ggml's type-traits row): how to quantize activations to <see cref="VecDotType"/>,
/// the dot of a weight row with an activation row, a 1-weight-row × 4-activation-rows dot for GEMM, and dequantization.
/// Every length is in elements and must be a multiple of <see cref="BlockSize"/> (and of the activation block size).
/// </summary>
public sealed unsafe class QuantKernel
{
    /// <summary>The weight type.</summary>
    public required GgmlType Type { get; init; }

    /// <summary>The activation format the dot expects: Q8_0, Q8_1, Q8_K, or F32 (activations used as they are).</summary>
    public required GgmlType VecDotType { get; init; }

    public required int BlockSize { get; init; }
    public required int TypeSize { get; init; }
    public required int VecDotBlockSize { get; init; }
    public required int VecDotTypeSize { get; init; }

    /// <summary>Which instruction set the dots use: "avx-vnni", "avx2", "avx512" (float formats) or "scalar".</summary>
    public required string Isa { get; init; }

    /// <summary>
    /// (x: n floats, y: an activation row of exactly <see cref="ActivationRowBytes"/>, n). Null when <see cref="VecDotType"/> is F32.
    /// For Q8_0 the row is the Q8_0 blocks (byte-identical to quantize_row_q8_0_ref) followed by one int32 Σqs and one float d per
    /// block, for Q8_1 the Q8_1 blocks followed by float d and float s per block, which the repacked kernels read.
    /// </summary>
    public required delegate*<float*, byte*, int, void> QuantizeActivations { get; init; }

    /// <summary>
    /// What the Q8_0 activation row's per-block int32 holds, as a multiple of Σqs: 1, or <see cref="Q8_0.VnniSumFactor"/> for the
    /// AVX-VNNI Q8_0 kernels (<see cref="Q8_0.QuantizeActivationsVnni"/>).
    /// </summary>
    public int ActivationSumFactor { get; init; } = 1;

    /// <summary>(n, weightRow, activationRow) → Σ w·a.</summary>
    public required delegate*<int, byte*, byte*, float> Dot { get; init; }

    /// <summary>(n, weightRow, activationRow0, activation row stride in bytes, float[4] results): the weight row against 4 activation rows.</summary>
    public required delegate*<int, byte*, byte*, nint, float*, void> Dot4 { get; init; }

    /// <summary>
    /// Optional plain-layout GEMM tile (n, weight row 0, weight row stride in bytes, activation row 0, activation row stride in bytes,
    /// float[16] results [c * 4 + r]): 4 weight rows · 4 activation rows. Null when the type has none (then <see cref="Dot4"/> per row).
    /// </summary>
    public delegate*<int, byte*, nint, byte*, nint, float*, void> Dot4x4 { get; init; }

    /// <summary>(weightRow, output floats, n).</summary>
    public required delegate*<byte*, float*, int, void> Dequantize { get; init; }

    /// <summary>
    /// Rows per repacked group (8), or 0 when this type has no repacked kernels on this CPU. A repacked group of 8 rows takes exactly
    /// 8 × <see cref="RowBytes"/>; the caller repacks row groups once at load (a tail of fewer than 8 rows stays in the plain layout
    /// and uses <see cref="Dot"/>).
    /// </summary>
    public int RepackRows { get; init; }

    /// <summary>(8 source rows, source row stride in bytes, destination group, n). Null when <see cref="RepackRows"/> is 0.</summary>
    public delegate*<byte*, nint, byte*, int, void> Repack { get; init; }

    /// <summary>
    /// (n, repacked group, activation row, float[8] results): the group's 8 rows · one activation row. Null when
    /// <see cref="RepackRows"/> is 0.
    /// </summary>
    public delegate*<int, byte*, byte*, float*, void> RepackedDot { get; init; }

    /// <summary>
    /// (n, repacked group, activation row 0, activation row stride in bytes, float[32] results, [c * 8 + r]): 8 rows · 4 activation
    /// rows.
    /// </summary>
    public delegate*<int, byte*, byte*, nint, float*, void> RepackedDot4 { get; init; }

    /// <summary>
    /// GEMM tile (n, repacked group 0, bytes from group 0 to group 1, the tile's scales from <see cref="RepackedTileScales"/>,
    /// activation row 0, activation row stride in bytes, y, y row stride in floats): 16 rows (two consecutive groups) ·
    /// <see cref="TileTokens"/> activation rows → y[c * yStride + r], r = 0..15. Null when the type has none.
    /// </summary>
    public delegate*<int, byte*, nint, float*, byte*, nint, float*, nint, void> RepackedTile { get; init; }

    /// <summary>
    /// (n, repacked group 0, bytes from group 0 to group 1, scales): the tile's block scales as floats, <see cref="TileScaleFloats"/>
    /// per weight block, written once per tile and read by every <see cref="RepackedTile"/> call on it.
    /// </summary>
    public delegate*<int, byte*, nint, float*, void> RepackedTileScales { get; init; }

    /// <summary>Floats per weight block that <see cref="RepackedTileScales"/> writes.</summary>
    public int TileScaleFloats { get; init; }

    /// <summary>Activation rows per <see cref="RepackedTile"/> call: 4, 6 or 8 (0 when there is no tile kernel).</summary>
    public int TileTokens { get; init; }

    /// <summary>
    /// Optional 4-token tile with <see cref="RepackedTile"/>'s arguments and scales, for the tokens a <see cref="TileTokens"/>-wide
    /// tile leaves (6-token tiles: 512 tokens are 84 tiles of 6 and two of 4, not 85 and two single-token dots, which read the
    /// tile's weights once per token). Null when <see cref="TileTokens"/> is 4 or 8.
    /// </summary>
    public delegate*<int, byte*, nint, float*, byte*, nint, float*, nint, void> RepackedTileTail { get; init; }

    /// <summary>
    /// Optional: the kernels of another type that multiply this type's rows in a prompt batch, after <see cref="ConvertRow"/> turned
    /// them into that type value for value (Q3_K as Q8_0, whose repacked tiles then run, as ik_llama.cpp converts the low-bit
    /// K-quants for its GEMM). Null when the type has none.
    /// </summary>
    public QuantKernel? GemmVia { get; init; }

    /// <summary>
    /// How many times longer a row is in <see cref="GemmVia"/>'s type (1, or 2 for IQ4_XS: two Q8_0 rows that sum to the row, against
    /// the activations repeated twice).
    /// </summary>
    public int GemmViaWidth { get; init; } = 1;

    /// <summary>
    /// (source row, destination row, n): one row of this type in <see cref="GemmVia"/>'s type, exactly, but for the per-group offsets
    /// of <see cref="RowMins"/> where it has them. Null without <see cref="GemmVia"/>.
    /// </summary>
    public delegate*<byte*, byte*, int, void> ConvertRow { get; init; }

    /// <summary>
    /// Optional (repacked group, destination group, n): a whole group of this type's repacked layout straight into
    /// <see cref="GemmVia"/>'s repacked layout, the bytes that <see cref="ConvertRow"/> of its 8 rows then GemmVia's
    /// <see cref="Repack"/> give (IQ4_NL, IQ4_XS: their repacked copy replaces the mapped rows, so prompts convert from it).
    /// </summary>
    public delegate*<byte*, byte*, int, void> ConvertGroup { get; init; }

    /// <summary>
    /// (source row, offsets, n): the offset of every value of each 16-element group that <see cref="ConvertRow"/> leaves out (Q2_K's
    /// −dmin·m), n / 16 floats. Null when the conversion is exact (Q3_K).
    /// </summary>
    public delegate*<byte*, float*, int, void> RowMins { get; init; }

    /// <summary>
    /// Optional: prompts in one pass through <see cref="GemmVia"/>'s tiles with float block scales taken from this type's repacked
    /// groups (IQ4_XS, whose d·(ls − 32) fp16 cannot hold: otherwise two Q8_0 halves, <see cref="GemmViaWidth"/>). Used for a
    /// weight whose rows are all in repacked groups.
    /// </summary>
    public ScaledVia? GemmViaScaled { get; init; }

    /// <summary>Weight rows per <see cref="RepackedTile"/> call.</summary>
    public const int TileRows = 16;

    /// <summary>Bytes of a weight row of <paramref name="n"/> elements.</summary>
    public long RowBytes(long n) => n / BlockSize * TypeSize;

    /// <summary>
    /// Bytes of an activation row of <paramref name="n"/> elements as <see cref="QuantizeActivations"/> writes it (floats when F32):
    /// for Q8_0 and Q8_1, the blocks plus two 4-byte values per block.
    /// </summary>
    public long ActivationRowBytes(long n) => VecDotType switch
    {
        GgmlType.Q8_0 => Q8_0.ActivationRowBytes(n),
        GgmlType.Q8_1 => Q8_1.ActivationRowBytes(n),
        _ => n / VecDotBlockSize * VecDotTypeSize,
    };
}

/// <summary>
/// A type's one-pass prompt path through <see cref="QuantKernel.GemmVia"/>'s tiles (<see cref="QuantKernel.GemmViaScaled"/>): its
/// repacked groups converted to the via type's groups without their scales, the tiles' float scales computed from the type's own
/// groups, and dots of its groups against the via type's activations for the tokens a tile leaves.
/// </summary>
public sealed unsafe class ScaledVia
{
    /// <summary>(repacked group, destination group, n): the values, in GemmVia's repacked layout.</summary>
    public required delegate*<byte*, byte*, int, void> Convert { get; init; }

    /// <summary>(n, repacked group 0, bytes to group 1, scales): what GemmVia's RepackedTileScales would give for the exact scales.</summary>
    public required delegate*<int, byte*, nint, float*, void> TileScales { get; init; }

    /// <summary>(n, repacked group, GemmVia's activation row, float[8]).</summary>
    public required delegate*<int, byte*, byte*, float*, void> Dot { get; init; }

    /// <summary>(n, repacked group, GemmVia's activation row 0, stride, float[32], [c * 8 + r]).</summary>
    public required delegate*<int, byte*, byte*, nint, float*, void> Dot4 { get; init; }
}

/// <summary>The kernel table keyed by <see cref="GgmlType"/> (the formats' reference quantizers are in <see cref="RowCodec"/>).</summary>
public static unsafe class QuantKernels
{
    /// <summary>
    /// Selects the instruction sets for tests and benchmarks: <see cref="IsaLevel.Best"/> (the default) takes, per kernel, the fastest
    /// this CPU has; the others restrict it to one family so every path can be tested on one machine. Avx512: the 512-bit AVX-512BW
    /// tiles with the AVX2 256-bit kernels for the rest (an AVX-512 CPU without AVX-VNNI, such as Zen 4); AvxVnni: the 256-bit
    /// AVX-VNNI kernels only; Avx2: the AVX2 kernels only.
    /// </summary>
    public enum IsaLevel { Best, Avx2, Scalar, Avx512, AvxVnni }

    private static readonly QuantKernel?[] Best = Build(IsaLevel.Best, generated: true);

    /// <summary>
    /// Whether the Q8_0, Q4_0, Q4_K and Q5_K GEMM tiles run as generated machine code with 512-bit AVX512-VNNI (<see cref="GeneratedTiles"/>) in
    /// <see cref="Get(GgmlType)"/>'s kernels; <see cref="GeneratedUnavailable"/> says why not. <c>INFER_CPU_JIT=0</c> turns it off.
    /// </summary>
    public static bool Generated => GeneratedTiles.Ready;

    /// <summary>Why <see cref="Generated"/> is false: "" when it is true.</summary>
    public static string GeneratedUnavailable =>
        GeneratedTiles.Ready ? "" : GeneratedTiles.IsSupported ? "executable memory was refused" : GeneratedTiles.Unsupported;

    /// <summary>Weight types with a dot kernel.</summary>
    public static readonly IReadOnlyList<GgmlType> SupportedWeightTypes =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS,
    ];

    public static bool IsSupported(GgmlType type) => (uint)type < (uint)Best.Length && Best[(int)type] is not null;

    /// <summary>The kernels for weights of <paramref name="type"/>, using the best instruction set of this CPU.</summary>
    /// <exception cref="NotSupportedException">The type has no kernel; the message names it.</exception>
    public static QuantKernel Get(GgmlType type) => Get(type, IsaLevel.Best);

    /// <param name="type">The weight type.</param>
    /// <param name="level">The instruction sets (<see cref="IsaLevel"/>).</param>
    /// <param name="generated">
    /// Whether the level may take the generated Q8_0, Q4_0, Q4_K and Q5_K tiles (<see cref="Generated"/>; Best and Avx512 only): false keeps
    /// the .NET intrinsics tiles, so tests can run both on one CPU.
    /// </param>
    public static QuantKernel Get(GgmlType type, IsaLevel level, bool generated = true)
    {
        var table = level == IsaLevel.Best && generated ? Best : Build(level, generated);
        if ((uint)type < (uint)table.Length && table[(int)type] is { } k) return k;
        throw new NotSupportedException(
            $"weight type {GgmlTypeInfo.Name(type)} is not supported by the CPU kernels (supported: {string.Join(", ", SupportedWeightTypes)})");
    }

    private static QuantKernel?[] Build(IsaLevel level, bool generated)
    {
        bool vnni = (level is IsaLevel.Best or IsaLevel.AvxVnni) && VnniDot.IsSupported;
        bool avx2 = level != IsaLevel.Scalar && Avx2Dot.IsSupported;
        bool avx512 = (level is IsaLevel.Best or IsaLevel.Avx512) && Avx512F.IsSupported && Fma.IsSupported;
        bool avx512bw = avx512 && Avx512BW.IsSupported && Avx2.IsSupported;
        // 512-bit tiles: vpmaddubsw zmm with int16 sums does 64 products per multiply instruction, vpdpbusd ymm 32 (Zen 5, one core:
        // 402 against 217 GMAC/s at peak, `Kernels.Benchmarks cputime peak`), so they win wherever AVX-512BW is present
        bool wide = avx512bw && Wide.IsSupported;
        // Q8_0 without VNNI: the 512-bit tile (|w| times y with w's sign, no int16 headroom) needs as many instructions as two 256-bit
        // ones, so it pays only where a 512-bit instruction costs one (one core here: 143 against 88 GMAC/s for the AVX2 tile)
        bool wide8 = wide && Wide.FullWidth;
        // Q8_0, Q4_0, Q4_K and Q5_K GEMM tiles with 512-bit vpdpbusd, generated (.NET 10 has only the 256-bit form): 64 products per
        // multiply instruction against 32 for every intrinsics tile of signed int8 weights, and no add or broadcast beside it for
        // Q4_0's; the K-quants' int16 sums and vpmaddwd per sub-block become a float multiply-add per sub-block and token
        bool jit = generated && avx512bw && GeneratedTiles.Ready;
        string intIsa = vnni ? "avx-vnni" : avx2 ? "avx2" : "scalar";
        string tileIsa = wide ? intIsa + ", avx512bw tiles" : intIsa;
        string floatIsa = avx512 ? "avx512" : avx2 ? "avx2" : "scalar";
        var t = new QuantKernel?[(int)GgmlType.BF16 + 1]; // IQ4_NL (20) and IQ4_XS (23) are below BF16 (30)

        delegate*<float*, byte*, int, void> q8_0 = avx2 ? &Q8_0.QuantizeActivationsFast : &Q8_0.QuantizeActivationsRef;
        delegate*<float*, byte*, int, void> q8_1 = avx2 ? &Q8_1.QuantizeActivationsFast : &Q8_1.QuantizeActivationsRef;
        delegate*<float*, byte*, int, void> q8_K = avx2 ? &Q8_K.QuantizeFast : &Q8_KFormat.QuantizeRef;

        t[(int)GgmlType.F32] = Float(GgmlType.F32, F32Format.TypeSize, floatIsa,
            avx512 ? &F32.DotAvx512 : avx2 ? &F32.DotAvx2 : &F32.DotRef,
            avx512 ? &F32.Dot4Avx512 : avx2 ? &F32.Dot4Avx2 : &F32.Dot4Ref, &F32Format.DequantizeRef);
        t[(int)GgmlType.F16] = Float(GgmlType.F16, F16Format.TypeSize, floatIsa,
            avx512 ? &F16.DotAvx512 : avx2 ? &F16.DotAvx2 : &F16.DotRef,
            avx512 ? &HalfDot4.Avx512<F16ToFloat> : avx2 ? &F16.Dot4Avx2 : &F16.Dot4Ref, &F16Format.DequantizeRef,
            avx512 ? &HalfDot4.Tile4x4Avx512<F16ToFloat> : null);
        t[(int)GgmlType.BF16] = Float(GgmlType.BF16, BF16Format.TypeSize, floatIsa,
            avx512 ? &BF16.DotAvx512 : avx2 ? &BF16.DotAvx2 : &BF16.DotRef,
            avx512 ? &HalfDot4.Avx512<BF16ToFloat> : avx2 ? &BF16.Dot4Avx2 : &BF16.Dot4Ref, &BF16Format.DequantizeRef,
            avx512 ? &HalfDot4.Tile4x4Avx512<BF16ToFloat> : null);

        // the VNNI Q8_0 kernels and the generated tiles (on either layout) take their activations' block sums as −128·Σqs (the
        // weights' +128 bias), the others as Σqs or not at all
        bool vnniActivations = vnni || jit;
        var q8_0Kernel = Quant(GgmlType.Q8_0, Q8_0Format.BlockSize, Q8_0Format.TypeSize,
            GgmlType.Q8_0, Q8_0Format.BlockSize, Q8_0Format.TypeSize, vnniActivations ? &Q8_0.QuantizeActivationsVnni : q8_0, intIsa,
            vnni ? &Q8_0.DotSimd<VnniDot> : avx2 ? &Q8_0.DotSimd<Avx2Dot> : &Q8_0.DotRef,
            vnni ? &Q8_0.Dot4Simd<VnniDot> : avx2 ? &Q8_0.Dot4Simd<Avx2Dot> : &Q8_0.Dot4Ref, &Q8_0Format.DequantizeRef,
            vnniActivations ? Q8_0.VnniSumFactor : 1);
        const string jitIsa = ", avx512-vnni tiles (generated)";
        t[(int)GgmlType.Q8_0] = !avx2 ? q8_0Kernel : vnni
            ? WithRepack(q8_0Kernel, Q8_0x8.Rows, &Q8_0x8.Repack, &Q8_0x8.Dot<VnniDot>, &Q8_0x8.Dot4<VnniDot>,
                jit ? &GeneratedTiles.Q8_0Biased : avx512 ? &Q8_0x8.Tile16x6Vnni512 : &Q8_0x8.Tile16x4<VnniDot>, &Q8_0x8.TileScales, 16,
                jit ? GeneratedTiles.TileTokens : avx512 ? 6 : 4, isa: jit ? intIsa + jitIsa : avx512 ? "avx-vnni, avx512 tiles" : null,
                tail: jit ? &GeneratedTiles.Q8_0BiasedTail : avx512 ? &Q8_0x8.Tile16x4<VnniDot> : null)
            : jit
                ? WithRepack(q8_0Kernel, Q8_0x8.Rows, &Q8_0x8.RepackSigned, &Q8_0x8.Dot<Avx2Dot>, &Q8_0x8.Dot4<Avx2Dot>,
                    &GeneratedTiles.Q8_0Signed, &Q8_0x8.TileScales, 16, GeneratedTiles.TileTokens, intIsa + jitIsa, &GeneratedTiles.Q8_0SignedTail)
                : WithRepack(q8_0Kernel, Q8_0x8.Rows, &Q8_0x8.RepackSigned, &Q8_0x8.Dot<Avx2Dot>, &Q8_0x8.Dot4<Avx2Dot>,
                    wide8 ? &Q8_0x8.Tile16x8Avx512 : &Q8_0x8.Tile16x4<Avx2Dot>, &Q8_0x8.TileScales, 16, wide8 ? 8 : 4,
                    wide8 ? tileIsa : null);
        var q4_0Kernel = Quant(GgmlType.Q4_0, Q4_0Format.BlockSize, Q4_0Format.TypeSize,
            GgmlType.Q8_0, Q8_0Format.BlockSize, Q8_0Format.TypeSize, q8_0, intIsa,
            vnni ? &Q4_0.DotSimd<VnniDot> : avx2 ? &Q4_0.DotSimd<Avx2Dot> : &Q4_0.DotRef,
            vnni ? &Q4_0.Dot4Simd<VnniDot> : avx2 ? &Q4_0.Dot4Simd<Avx2Dot> : &Q4_0.Dot4Ref, &Q4_0Format.DequantizeRef);
        t[(int)GgmlType.Q4_0] = !avx2 ? q4_0Kernel : WithRepack(q4_0Kernel, Q4_0x8.Rows, &Q4_0x8.Repack,
            vnni ? &Q4_0x8.Dot<VnniDot> : &Q4_0x8.Dot<Avx2Dot>, vnni ? &Q4_0x8.Dot4<VnniDot> : &Q4_0x8.Dot4<Avx2Dot>,
            jit ? &GeneratedTiles.Q4_0 : wide ? &Q4_0x8.Tile16x8Avx512 : vnni ? &Q4_0x8.Tile16x4<VnniDot> : &Q4_0x8.Tile16x4<Avx2Dot>,
            &Q4_0x8.TileScales, 16, jit ? GeneratedTiles.TileTokens : wide ? Q4_0x8.WideTileTokens : 4,
            jit ? intIsa + jitIsa : wide ? tileIsa : null, jit ? &GeneratedTiles.Q4_0Tail : null);
        var q4_1Kernel = Quant(GgmlType.Q4_1, Q4_1Format.BlockSize, Q4_1Format.TypeSize,
            GgmlType.Q8_1, Q8_1Format.BlockSize, Q8_1Format.TypeSize, q8_1, intIsa,
            vnni ? &Q4_1.DotSimd<VnniDot> : avx2 ? &Q4_1.DotSimd<Avx2Dot> : &Q4_1.DotRef,
            vnni ? &Q4_1.Dot4Simd<VnniDot> : avx2 ? &Q4_1.Dot4Simd<Avx2Dot> : &Q4_1.Dot4Ref, &Q4_1Format.DequantizeRef);
        t[(int)GgmlType.Q4_1] = !avx2 ? q4_1Kernel : Legacy<Q4_1x8>(q4_1Kernel, vnni, wide, tileIsa);
        var q5_0Kernel = Quant(GgmlType.Q5_0, Q5_0Format.BlockSize, Q5_0Format.TypeSize,
            GgmlType.Q8_0, Q8_0Format.BlockSize, Q8_0Format.TypeSize, q8_0, intIsa,
            vnni ? &Q5_0.DotSimd<VnniDot> : avx2 ? &Q5_0.DotSimd<Avx2Dot> : &Q5_0.DotRef,
            vnni ? &Q5_0.Dot4Simd<VnniDot> : avx2 ? &Q5_0.Dot4Simd<Avx2Dot> : &Q5_0.Dot4Ref, &Q5_0Format.DequantizeRef);
        t[(int)GgmlType.Q5_0] = !avx2 ? q5_0Kernel : Legacy<Q5_0x8>(q5_0Kernel, vnni, wide, tileIsa);
        var q5_1Kernel = Quant(GgmlType.Q5_1, Q5_1Format.BlockSize, Q5_1Format.TypeSize,
            GgmlType.Q8_1, Q8_1Format.BlockSize, Q8_1Format.TypeSize, q8_1, intIsa,
            vnni ? &Q5_1.DotSimd<VnniDot> : avx2 ? &Q5_1.DotSimd<Avx2Dot> : &Q5_1.DotRef,
            vnni ? &Q5_1.Dot4Simd<VnniDot> : avx2 ? &Q5_1.Dot4Simd<Avx2Dot> : &Q5_1.Dot4Ref, &Q5_1Format.DequantizeRef);
        t[(int)GgmlType.Q5_1] = !avx2 ? q5_1Kernel : Legacy<Q5_1x8>(q5_1Kernel, vnni, wide, tileIsa);
        // Q2_K and Q3_K (Q2_K and Q3_K_M files): plain-layout dots for decode; prompts converted to Q8_0 per matmul (GemmVia),
        // where the Q8_0 kernels have repacked tiles (AVX2 and up)
        var q8Tiles = t[(int)GgmlType.Q8_0] is { RepackedTile: not null } q8 ? q8 : null;
        var q2_KKernel = Quant(GgmlType.Q2_K, Q2_KFormat.BlockSize, Q2_KFormat.TypeSize,
            GgmlType.Q8_K, Q8_KFormat.BlockSize, Q8_KFormat.TypeSize, q8_K, intIsa,
            vnni ? &Q2_K.DotSimd<VnniDot> : avx2 ? &Q2_K.DotSimd<Avx2Dot> : &Q2_K.DotRef,
            vnni ? &Q2_K.Dot4Simd<VnniDot> : avx2 ? &Q2_K.Dot4Simd<Avx2Dot> : &Q2_K.Dot4Ref, &Q2_KFormat.DequantizeRef);
        // prompts: (sc & 15)·q as Q8_0 through its tiles, and −dmin·m per group of 16 added from the activations' group sums
        t[(int)GgmlType.Q2_K] = WithGemmVia(q2_KKernel, q8Tiles, &Q2_K.ToQ8_0, &Q2_K.RowMins);
        var q3_KKernel = Quant(GgmlType.Q3_K, Q3_KFormat.BlockSize, Q3_KFormat.TypeSize,
            GgmlType.Q8_K, Q8_KFormat.BlockSize, Q8_KFormat.TypeSize, q8_K, intIsa,
            vnni ? &Q3_K.DotSimd<VnniDot> : avx2 ? &Q3_K.DotSimd<Avx2Dot> : &Q3_K.DotRef,
            vnni ? &Q3_K.Dot4Simd<VnniDot> : avx2 ? &Q3_K.Dot4Simd<Avx2Dot> : &Q3_K.Dot4Ref, &Q3_KFormat.DequantizeRef);
        // prompts: Q3_K rows converted exactly to Q8_0 per matmul (−(sc − 32)·(q − 4) fits int8) and multiplied by its tiles
        t[(int)GgmlType.Q3_K] = WithGemmVia(q3_KKernel, q8Tiles, &Q3_K.ToQ8_0);
        // IQ4_NL (Q8_0 activations; prompts as Q8_0, exactly: d8 = d, q8 = kvalues[q]) and IQ4_XS (Q8_K activations, plain dots)
        var iq4NlKernel = Quant(GgmlType.IQ4_NL, IQ4Format.NlBlockSize, IQ4Format.NlTypeSize,
            GgmlType.Q8_0, Q8_0Format.BlockSize, Q8_0Format.TypeSize, q8_0, intIsa,
            vnni ? &IQ4.DotNlSimd<VnniDot> : avx2 ? &IQ4.DotNlSimd<Avx2Dot> : &IQ4.DotNlRef,
            vnni ? &IQ4.Dot4NlSimd<VnniDot> : avx2 ? &IQ4.Dot4NlSimd<Avx2Dot> : &IQ4.Dot4NlRef, &IQ4Format.DequantizeNl);
        // decode through the 8-row interleaved layout (IQ4x8: a lookup and a vpdpbusd per 4 elements of 8 rows); prompts convert its
        // groups straight into the Q8_0 tiles' groups
        if (avx2)
            iq4NlKernel = WithRepack(iq4NlKernel, IQ4x8.Rows, &Q4_0x8.Repack, vnni ? &IQ4x8.DotNl<VnniDot> : &IQ4x8.DotNl<Avx2Dot>,
                vnni ? &IQ4x8.Dot4Nl<VnniDot> : &IQ4x8.Dot4Nl<Avx2Dot>);
        t[(int)GgmlType.IQ4_NL] = WithGemmVia(iq4NlKernel, q8Tiles, &IQ4.NlToQ8_0,
            group: vnni ? &IQ4x8.NlToQ8_0x8<VnniDot> : &IQ4x8.NlToQ8_0x8<Avx2Dot>);
        var iq4XsKernel = Quant(GgmlType.IQ4_XS, IQ4Format.XsBlockSize, IQ4Format.XsTypeSize,
            GgmlType.Q8_K, Q8_KFormat.BlockSize, Q8_KFormat.TypeSize, q8_K, intIsa,
            vnni ? &IQ4.DotXsSimd<VnniDot> : avx2 ? &IQ4.DotXsSimd<Avx2Dot> : &IQ4.DotXsRef,
            vnni ? &IQ4.Dot4XsSimd<VnniDot> : avx2 ? &IQ4.Dot4XsSimd<Avx2Dot> : &IQ4.Dot4XsRef, &IQ4Format.DequantizeXs);
        // prompts: (ls − 32)·kvalue = 32·hi + lo, two exact Q8_0 halves of a row twice as long (scales 32·d and d)
        if (avx2)
            iq4XsKernel = WithRepack(iq4XsKernel, IQ4x8.Rows, &IQ4x8.RepackXs, vnni ? &IQ4x8.DotXs<VnniDot> : &IQ4x8.DotXs<Avx2Dot>,
                vnni ? &IQ4x8.Dot4Xs<VnniDot> : &IQ4x8.Dot4Xs<Avx2Dot>);
        t[(int)GgmlType.IQ4_XS] = WithGemmVia(iq4XsKernel, q8Tiles, &IQ4.XsToQ8_0x2, width: 2,
            group: vnni ? &IQ4x8.XsToQ8_0x8x2<VnniDot> : &IQ4x8.XsToQ8_0x8x2<Avx2Dot>,
            scaled: !avx2 ? null : new ScaledVia
            {
                // the kvalues as Q8_0 (biased where the Q8_0 groups are: AVX-VNNI), the scales d·(ls − 32) as floats
                Convert = vnni ? &IQ4x8.XsToQ8_0x8<VnniDot> : &IQ4x8.XsToQ8_0x8<Avx2Dot>, TileScales = &IQ4x8.XsTileScales,
                Dot = vnni ? &IQ4x8.DotXsQ8_0<VnniDot> : &IQ4x8.DotXsQ8_0<Avx2Dot>,
                Dot4 = vnni ? &IQ4x8.Dot4XsQ8_0<VnniDot> : &IQ4x8.Dot4XsQ8_0<Avx2Dot>,
            });
        var q4_KKernel = Quant(GgmlType.Q4_K, Q4_KFormat.BlockSize, Q4_KFormat.TypeSize,
            GgmlType.Q8_K, Q8_KFormat.BlockSize, Q8_KFormat.TypeSize, q8_K, intIsa,
            vnni ? &Q4_K.DotSimd<VnniDot> : avx2 ? &Q4_K.DotSimd<Avx2Dot> : &Q4_K.DotRef,
            vnni ? &Q4_K.Dot4Simd<VnniDot> : avx2 ? &Q4_K.Dot4Simd<Avx2Dot> : &Q4_K.Dot4Ref, &Q4_KFormat.DequantizeRef);
        t[(int)GgmlType.Q4_K] = !avx2 ? q4_KKernel : WithRepack(q4_KKernel, Q4_Kx8.Rows, &Q4_Kx8.Repack,
            vnni ? &Q4_Kx8.Dot<VnniDot> : &Q4_Kx8.Dot<Avx2Dot>, vnni ? &Q4_Kx8.Dot4<VnniDot> : &Q4_Kx8.Dot4<Avx2Dot>,
            jit ? &GeneratedTiles.Q4_K : wide ? &Q4_Kx8.Tile16x8Avx512 : vnni ? &Q4_Kx8.Tile16x4<VnniDot> : &Q4_Kx8.Tile16x4<Avx2Dot>,
            jit ? &Q4_Kx8.JitTileScales : wide ? &Q4_Kx8.WideTileScales : &Q4_Kx8.TileScales,
            jit ? Q4_Kx8.JitTileScaleFloats : wide ? Q4_Kx8.WideTileScaleFloats : Q4_Kx8.TileScaleFloats,
            jit ? GeneratedTiles.KTileTokens : wide ? 8 : 4, jit ? intIsa + jitIsa : wide ? tileIsa : null,
            jit ? &GeneratedTiles.Q4_KTail : null);
        var q5_KKernel = Quant(GgmlType.Q5_K, Q5_KFormat.BlockSize, Q5_KFormat.TypeSize,
            GgmlType.Q8_K, Q8_KFormat.BlockSize, Q8_KFormat.TypeSize, q8_K, intIsa,
            vnni ? &Q5_K.DotSimd<VnniDot> : avx2 ? &Q5_K.DotSimd<Avx2Dot> : &Q5_K.DotRef,
            vnni ? &Q5_K.Dot4Simd<VnniDot> : avx2 ? &Q5_K.Dot4Simd<Avx2Dot> : &Q5_K.Dot4Ref, &Q5_KFormat.DequantizeRef);
        t[(int)GgmlType.Q5_K] = !avx2 ? q5_KKernel : WithRepack(q5_KKernel, Q5_Kx8.Rows, &Q5_Kx8.Repack,
            vnni ? &Q5_Kx8.Dot<VnniDot> : &Q5_Kx8.Dot<Avx2Dot>, vnni ? &Q5_Kx8.Dot4<VnniDot> : &Q5_Kx8.Dot4<Avx2Dot>,
            jit ? &GeneratedTiles.Q5_K : wide ? &Q5_Kx8.Tile16x8Avx512 : vnni ? &Q5_Kx8.Tile16x4<VnniDot> : &Q5_Kx8.Tile16x4<Avx2Dot>,
            jit ? &Q5_Kx8.JitTileScales : wide ? &Q5_Kx8.WideTileScales : &Q5_Kx8.TileScales,
            jit ? Q4_Kx8.JitTileScaleFloats : wide ? Q4_Kx8.WideTileScaleFloats : Q5_Kx8.TileScaleFloats,
            jit ? GeneratedTiles.KTileTokens : wide ? 8 : 4, jit ? intIsa + jitIsa : wide ? tileIsa : null,
            jit ? &GeneratedTiles.Q5_KTail : null);
        var q6_KKernel = Quant(GgmlType.Q6_K, Q6_KFormat.BlockSize, Q6_KFormat.TypeSize,
            GgmlType.Q8_K, Q8_KFormat.BlockSize, Q8_KFormat.TypeSize, q8_K,
            avx512bw ? intIsa + " (unrepacked GEMV: avx512bw)" : intIsa,
            avx512bw ? &Q6_K.DotAvx512 : vnni ? &Q6_K.DotSimd<VnniDot> : avx2 ? &Q6_K.DotSimd<Avx2Dot> : &Q6_K.DotRef,
            vnni ? &Q6_K.Dot4Simd<VnniDot> : avx2 ? &Q6_K.Dot4Simd<Avx2Dot> : &Q6_K.Dot4Ref, &Q6_KFormat.DequantizeRef);
        t[(int)GgmlType.Q6_K] = !avx2 ? q6_KKernel : WithRepack(q6_KKernel, Q6_Kx8.Rows, &Q6_Kx8.Repack,
            vnni ? &Q6_Kx8.Dot<VnniDot> : &Q6_Kx8.Dot<Avx2Dot>, vnni ? &Q6_Kx8.Dot4<VnniDot> : &Q6_Kx8.Dot4<Avx2Dot>,
            wide ? &Q6_Kx8.Tile16x8Avx512 : vnni ? &Q6_Kx8.Tile16x4<VnniDot> : &Q6_Kx8.Tile16x4<Avx2Dot>,
            wide ? &Q6_Kx8.WideTileScales : &Q6_Kx8.TileScales, wide ? Q6_Kx8.WideTileScaleFloats : Q6_Kx8.TileScaleFloats,
            wide ? 8 : 4, wide ? tileIsa : null);
        return t;
    }

    private static QuantKernel WithRepack(QuantKernel k, int rows, delegate*<byte*, nint, byte*, int, void> repack,
        delegate*<int, byte*, byte*, float*, void> dot, delegate*<int, byte*, byte*, nint, float*, void> dot4,
        delegate*<int, byte*, nint, float*, byte*, nint, float*, nint, void> tile = null,
        delegate*<int, byte*, nint, float*, void> tileScales = null, int tileScaleFloats = 0, int tileTokens = 4, string? isa = null,
        delegate*<int, byte*, nint, float*, byte*, nint, float*, nint, void> tail = null) => new()
        {
            Type = k.Type, VecDotType = k.VecDotType, BlockSize = k.BlockSize, TypeSize = k.TypeSize,
            VecDotBlockSize = k.VecDotBlockSize, VecDotTypeSize = k.VecDotTypeSize, Isa = isa ?? k.Isa,
            QuantizeActivations = k.QuantizeActivations, ActivationSumFactor = k.ActivationSumFactor, Dot = k.Dot, Dot4 = k.Dot4,
            Dequantize = k.Dequantize, RepackRows = rows, Repack = repack, RepackedDot = dot, RepackedDot4 = dot4,
            RepackedTile = tile, RepackedTileScales = tileScales, TileScaleFloats = tileScaleFloats, TileTokens = tile == null ? 0 : tileTokens,
            RepackedTileTail = tail,
        };

    /// <summary>
    /// <paramref name="k"/> with prompts through <paramref name="via"/>'s kernels (<see cref="QuantKernel.GemmVia"/>); k itself when
    /// via is null.
    /// </summary>
    private static QuantKernel WithGemmVia(QuantKernel k, QuantKernel? via, delegate*<byte*, byte*, int, void> convert,
        delegate*<byte*, float*, int, void> mins = null, int width = 1, delegate*<byte*, byte*, int, void> group = null,
        ScaledVia? scaled = null) =>
        via is null ? k : new()
        {
            Type = k.Type, VecDotType = k.VecDotType, BlockSize = k.BlockSize, TypeSize = k.TypeSize,
            VecDotBlockSize = k.VecDotBlockSize, VecDotTypeSize = k.VecDotTypeSize,
            Isa = $"{k.Isa}; prompts as {GgmlTypeInfo.Name(via.Type)} ({via.Isa})",
            QuantizeActivations = k.QuantizeActivations, ActivationSumFactor = k.ActivationSumFactor, Dot = k.Dot, Dot4 = k.Dot4,
            Dequantize = k.Dequantize, RepackRows = k.RepackRows, Repack = k.Repack, RepackedDot = k.RepackedDot,
            RepackedDot4 = k.RepackedDot4, GemmVia = via, ConvertRow = convert, RowMins = mins, GemmViaWidth = width,
            ConvertGroup = k.RepackRows > 0 ? group : null, GemmViaScaled = k.RepackRows > 0 ? scaled : null,
        };

    /// <summary>The repacked kernels of a legacy type (<see cref="LegacyX8"/>) on an AVX2 CPU.</summary>
    private static QuantKernel Legacy<F>(QuantKernel k, bool vnni, bool wide, string tileIsa) where F : struct, ILegacyX8 =>
        WithRepack(k, LegacyX8.Rows, &LegacyX8.Repack<F>, vnni ? &LegacyX8.Dot<F, VnniDot> : &LegacyX8.Dot<F, Avx2Dot>,
            vnni ? &LegacyX8.Dot4<F, VnniDot> : &LegacyX8.Dot4<F, Avx2Dot>,
            wide ? &LegacyX8.Tile16x8Avx512<F> : vnni ? &LegacyX8.Tile16x4<F, VnniDot> : &LegacyX8.Tile16x4<F, Avx2Dot>,
            &LegacyX8.TileScales<F>, LegacyX8.TileScaleFloats<F>(), wide ? 8 : 4, wide ? tileIsa : null);

    private static QuantKernel Float(GgmlType type, int typeSize, string isa,
        delegate*<int, byte*, byte*, float> dot, delegate*<int, byte*, byte*, nint, float*, void> dot4,
        delegate*<byte*, float*, int, void> dequantize, delegate*<int, byte*, nint, byte*, nint, float*, void> dot4x4 = null) => new()
        {
            Type = type, VecDotType = GgmlType.F32, BlockSize = 1, TypeSize = typeSize,
            VecDotBlockSize = F32Format.BlockSize, VecDotTypeSize = F32Format.TypeSize, Isa = isa,
            QuantizeActivations = null, Dot = dot, Dot4 = dot4, Dequantize = dequantize, Dot4x4 = dot4x4,
        };

    private static QuantKernel Quant(GgmlType type, int blockSize, int typeSize,
        GgmlType vecDotType, int vecDotBlockSize, int vecDotTypeSize, delegate*<float*, byte*, int, void> quantizeActivations, string isa,
        delegate*<int, byte*, byte*, float> dot, delegate*<int, byte*, byte*, nint, float*, void> dot4,
        delegate*<byte*, float*, int, void> dequantize, int activationSumFactor = 1) => new()
        {
            Type = type, VecDotType = vecDotType, BlockSize = blockSize, TypeSize = typeSize,
            VecDotBlockSize = vecDotBlockSize, VecDotTypeSize = vecDotTypeSize, Isa = isa,
            QuantizeActivations = quantizeActivations, ActivationSumFactor = activationSumFactor, Dot = dot, Dot4 = dot4,
            Dequantize = dequantize,
        };
}
