using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.OpenCL;
using ILGPU.Runtime;
using ILGPU.Runtime.OpenCL;
using Infer.Kernels.Gpu.Kernels;

namespace Infer.Kernels.Gpu.Tests;

/// <summary>
/// No GPU in CI: the CPU accelerator runs kernels from their IL, so it cannot show that ILGPU's compiler accepts them
/// for CUDA or OpenCL. These compile every kernel to PTX (SM_80, through PtxListing as `backend-ops ptx` does) and to
/// OpenCL C 2.0 without a device, which catches constructs ILGPU cannot translate.
/// </summary>
public sealed class KernelCompileTests
{
    [Fact]
    public void EveryKernelCompilesToPtx()
    {
        int count = 0, dp4a = 0, gemms = 0, tables = 0, permutes = 0;
        foreach (var (name, ptx) in PtxListing.Compile(8, 0, 8, 0))
        {
            Assert.Contains(".entry", ptx);
            Assert.Contains(".target sm_80", ptx);
            if (name == nameof(GpuKernels.Attention))
            {
                // split attention's last group merges the splits: a ticket per (token, head) and device-wide fences
                Assert.Matches(@"atom\.add(\.global)?\.u32", ptx); // O2 names the address space
                Assert.Contains("membar.gl", ptx);
            }
            if (name.StartsWith(nameof(GpuKernels.GemmQ8), StringComparison.Ordinal))
            {
                // the tensor-core step, not the fallback: k = 32 per block, or k = 16 per half where Q6_K scales each 16
                string shape = name.Contains("Q6_K", StringComparison.Ordinal) ? "m16n8k16" : "m16n8k32";
                Assert.Contains($"mma.sync.aligned.{shape}.row.col.s32.s8.s8.s32", ptx);
                gemms++;
            }
            if (name is "MatMul<Q8_0Words>" or "MatMulFused<Q4_0Words>" or "MatMulNorm<Q8_0Words>" or "MatMul<Q5_KWords>"
                or "MatMul<Q3_KWords>"
                or "MatMul<Q2_KWords>"
                or "MatMul<IQ4_XSWords>"
                or "MatMul<Q5_1Words>" or "MatMul<IQ4_NLWords>")
            {
                Assert.Contains("dp4a.s32.s32", ptx); // int8 decode's dot, not the scalar fallback
                dp4a++;
            }
            if (name.Contains("IQ4_XS", StringComparison.Ordinal))
            {
                Assert.Contains("prmt.b32", ptx); // IQ4's table lookup as byte permutes, not the scalar fallback
                tables++;
            }
            if (name is "MatMul<IQ4_NLWords>" or "GemmQ8<IQ4_NLWords>" or "GemmQ8Wide<IQ4_NLWords>" or "MatMulNorm<IQ4_NLWords, Q5_KWords>")
            {
                Assert.Contains("prmt.b32", ptx); // IQ4_NL's table by byte permutes, not the scalar fallback
                permutes++;
            }
            count++;
        }
        Assert.Equal(105, count);
        Assert.Equal(7, tables);
        Assert.Equal(9, dp4a);
        Assert.Equal(22, gemms);
        Assert.Equal(4, permutes);
    }

    [Theory]
    [InlineData(null, OptimizationLevel.O2)]
    [InlineData("2", OptimizationLevel.O2)]
    [InlineData(" 1 ", OptimizationLevel.O1)]
    [InlineData("0", OptimizationLevel.O2)]
    public void KernelsCompileAtO2UnlessTheVariableSaysOne(string? setting, OptimizationLevel expected)
    {
        if (setting is null && Environment.GetEnvironmentVariable(GpuContextFactory.OptimizationVariable) is not null)
            Assert.Skip($"{GpuContextFactory.OptimizationVariable} is set in this environment");
        Assert.Equal(expected, GpuContextFactory.KernelOptimization(setting));
    }

    [Fact]
    public void EveryKernelCompilesToOpenClC()
    {
        using var context = GpuContextFactory.CreateContext();
        using var backend = new CLBackend(context, new CLCapabilityContext(false, false, false, false, false), CLDeviceVendor.Other, CLCVersion.CL20);
        int count = 0;
        foreach (var (name, method, isImplicit) in GpuKernels.EntryPoints())
        {
            var entry = isImplicit
                ? EntryPointDescription.FromImplicitlyGroupedKernel(method)
                : EntryPointDescription.FromExplicitlyGroupedKernel(method);
            var compiled = (CLCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
            Assert.Contains("kernel", compiled.Source);
            count++;
        }
        Assert.Equal(105, count);
    }
}
