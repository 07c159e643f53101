using System.Runtime.Intrinsics.X86;
using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Tests;

/// <summary>
/// Skips a test whose check needs an instruction set this CPU lacks, so it is reported as skipped with the reason instead
/// of passing without running its check. One fixed reason per missing instruction set: .ci/run counts skips per reason.
/// </summary>
internal static class Isa
{
    public const string NoAvx2 = "this CPU lacks AVX2+FMA: the SIMD kernels are not run";
    public const string NoAvxVnni = "this CPU lacks AVX-VNNI: the AVX-VNNI kernels (the level AvxVnni) are not run";
    public const string NoAvx512 = "this CPU lacks AVX-512F: the AVX-512 float kernels (F32/F16/BF16 dots, 4x4 tile) are not run";

    public static bool HasAvx2 => Avx2.IsSupported && Fma.IsSupported;

    public const string NoAvx512Bw = "this CPU lacks AVX-512BW: the 512-bit integer tiles are not run";

    /// <summary>
    /// Skips unless <paramref name="level"/> selects kernels of <paramref name="type"/> that no other level tests here.
    /// Without AVX2 every level is the scalar reference (compared with itself, it checks nothing). Level Avx512 adds the
    /// 512-bit AVX-512BW tiles to level Avx2 (and AVX-512F for the float formats), AvxVnni adds AVX-VNNI, Best takes both.
    /// </summary>
    public static void RequireSimd(GgmlType type, QuantKernels.IsaLevel level)
    {
        if (level == QuantKernels.IsaLevel.Scalar) return;
        Assert.SkipUnless(HasAvx2, NoAvx2);
        bool isFloat = type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16;
        switch (level)
        {
            case QuantKernels.IsaLevel.Avx512:
                Assert.SkipUnless(isFloat ? Avx512F.IsSupported : Avx512BW.IsSupported, isFloat ? NoAvx512 : NoAvx512Bw);
                break;
            case QuantKernels.IsaLevel.AvxVnni:
                Assert.SkipUnless(!isFloat && AvxVnni.IsSupported, isFloat ? NoAvxVnniFloat : NoAvxVnni);
                break;
            case QuantKernels.IsaLevel.Best:
                if (isFloat) Assert.SkipUnless(Avx512F.IsSupported, NoAvx512);
                else Assert.SkipUnless(AvxVnni.IsSupported || Avx512BW.IsSupported, NoVnniNorAvx512Bw);
                break;
        }
    }

    public const string NoAvxVnniFloat = "AVX-VNNI has no float kernels: level AvxVnni runs the AVX2 float kernels, tested at Avx2";
    public const string NoVnniNorAvx512Bw = "this CPU lacks AVX-VNNI and AVX-512BW: level Best is level Avx2 here";

    /// <summary>
    /// Skips when <paramref name="type"/> has 8-row repacked kernels at <paramref name="level"/> on a CPU with every
    /// instruction set they use, but not on this one. Returns false when the type has none at that level by design
    /// (the scalar level): then there is nothing to skip.
    /// </summary>
    public static bool RequireRepacked(GgmlType type, QuantKernels.IsaLevel level)
    {
        if (level == QuantKernels.IsaLevel.Scalar || !Repacked.Contains(type)) return false;
        Assert.SkipUnless(HasAvx2, NoAvx2);
        return true;
    }

    /// <summary>The levels that take the generated tiles where the CPU has AVX512-VNNI (<see cref="QuantKernels.Generated"/>).</summary>
    public static readonly QuantKernels.IsaLevel[] GeneratedLevels = [QuantKernels.IsaLevel.Best, QuantKernels.IsaLevel.Avx512];

    /// <summary>The types with generated tiles.</summary>
    public static readonly GgmlType[] GeneratedTypes = [GgmlType.Q8_0, GgmlType.Q4_0];

    public const string NoGenerated =
        "no generated tiles on this CPU (no AVX512-VNNI or not Linux x64): a level without them is the level itself, tested above";

    /// <summary>Skips a case of the intrinsics-only kernels (<paramref name="generated"/> false) where no level has generated ones.</summary>
    public static void RequireWithoutGenerated(bool generated)
    {
        if (!generated) Assert.SkipUnless(QuantKernels.Generated, NoGenerated);
    }

    /// <summary>The types with 8-row repacked kernels on every AVX2 CPU.</summary>
    public static readonly GgmlType[] Repacked =
    [
        GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
        GgmlType.IQ4_NL, GgmlType.IQ4_XS,
    ];

    /// <summary>The repacked types without a tile of their own: prompts convert their groups for the Q8_0 tiles (GemmVia).</summary>
    public static readonly GgmlType[] RepackedWithoutTile = [GgmlType.IQ4_NL, GgmlType.IQ4_XS];
}
