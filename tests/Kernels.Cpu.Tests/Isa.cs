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
    public const string NoAvxVnni = "this CPU lacks AVX-VNNI: the AVX-VNNI kernels (the only Q8_0 repacked ones) are not run";
    public const string NoAvx512 = "this CPU lacks AVX-512F: the AVX-512 float kernels (F32/F16/BF16 dots, 4x4 tile) are not run";

    public static bool HasAvx2 => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// Skips unless <paramref name="level"/> selects kernels of <paramref name="type"/> that no other level tests here.
    /// Without AVX2 every level is the scalar reference (compared with itself, it checks nothing); level Best adds to
    /// level Avx2 only AVX-VNNI for the integer formats (and AVX-512BW for Q6_K's dot), AVX-512F for the float formats.
    /// </summary>
    public static void RequireSimd(GgmlType type, QuantKernels.IsaLevel level)
    {
        if (level == QuantKernels.IsaLevel.Scalar) return;
        Assert.SkipUnless(HasAvx2, NoAvx2);
        if (level != QuantKernels.IsaLevel.Best) return;
        if (type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16) Assert.SkipUnless(Avx512F.IsSupported, NoAvx512);
        else if (!(type == GgmlType.Q6_K && Avx512BW.IsSupported)) Assert.SkipUnless(AvxVnni.IsSupported, NoAvxVnni);
    }

    /// <summary>
    /// Skips when <paramref name="type"/> has 8-row repacked kernels at <paramref name="level"/> on a CPU with every
    /// instruction set they use, but not on this one. Returns false when the type has none at that level by design
    /// (scalar level, or Q8_0 below AVX-VNNI): then there is nothing to skip.
    /// </summary>
    public static bool RequireRepacked(GgmlType type, QuantKernels.IsaLevel level)
    {
        bool designed = level switch
        {
            QuantKernels.IsaLevel.Scalar => false,
            QuantKernels.IsaLevel.Avx2 => type is GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K,
            _ => type is GgmlType.Q4_0 or GgmlType.Q8_0 or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K,
        };
        if (!designed) return false;
        Assert.SkipUnless(HasAvx2, NoAvx2);
        if (type == GgmlType.Q8_0) Assert.SkipUnless(AvxVnni.IsSupported, NoAvxVnni);
        return true;
    }
}
