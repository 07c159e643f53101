using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Infer.Kernels.Gpu.Kernels;

namespace Infer.Kernels.Gpu;

/// <summary>
/// Every kernel of the GPU backend compiled to PTX by ILGPU's PTX backend, without a device: the text a CUDA driver is
/// handed at load. With NVIDIA's <c>ptxas</c> (<c>backend-ops ptx</c>) it shows, on a machine without a GPU, whether the
/// assembler accepts each kernel for a given architecture and what it costs in registers, spills and shared memory.
/// </summary>
public static class PtxListing
{
    /// <summary>
    /// Each kernel entry point and instantiation, with its PTX for <c>sm_{smMajor}{smMinor}</c> and PTX ISA isaMajor.isaMinor,
    /// at ILGPU's <paramref name="level"/> (default: <see cref="GpuContextFactory.KernelOptimization"/>, what a device gets).
    /// </summary>
    public static IEnumerable<(string Name, string Ptx)> Compile(int smMajor, int smMinor, int isaMajor, int isaMinor,
        OptimizationLevel? level = null)
    {
        using var context = GpuContextFactory.CreateContext(level: level);
        using var backend = new PTXBackend(context, new CudaArchitecture(smMajor, smMinor), new CudaInstructionSet(isaMajor, isaMinor), null!);
        foreach (var (name, method, isImplicit) in GpuKernels.EntryPoints())
        {
            var entry = isImplicit
                ? EntryPointDescription.FromImplicitlyGroupedKernel(method)
                : EntryPointDescription.FromExplicitlyGroupedKernel(method);
            var compiled = (PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
            yield return (name, compiled.PTXAssembly);
        }
    }
}
