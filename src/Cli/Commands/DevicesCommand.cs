using System.CommandLine;
using Infer.Kernels.Gpu;

namespace Infer.Cli.Commands;

/// <summary><c>infer devices</c>: the accelerators ILGPU finds (CUDA, OpenCL), with memory, and the CPU backend.</summary>
internal static class DevicesCommand
{
    public static Command Create(CliContext io)
    {
        var command = new Command("devices", "list the GPUs (CUDA, OpenCL) and the CPU");
        command.SetAction(_ => List(io.Out, io.Err));
        return command;
    }

    /// <summary>The device table (also <c>infer --list-devices</c>, llama.cpp's spelling).</summary>
    public static int List(TextWriter stdout, TextWriter stderr)
    {
        stdout.WriteLine($"{"DEVICE",-12} {"MEMORY",10}  NAME");
        string isa = System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? "AVX-512"
            : System.Runtime.Intrinsics.X86.Avx2.IsSupported ? "AVX2" : "no AVX2";
        stdout.WriteLine($"{"cpu",-12} {"",10}  {Environment.ProcessorCount} cores ({isa}), the default when no GPU is found");
        IReadOnlyList<GpuDeviceInfo> devices;
        try
        {
            devices = GpuContextFactory.ListDevices();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            stderr.WriteLine($"GPU discovery failed: {e.Message}");
            return 0;
        }
        foreach (var d in devices.Where(d => d.Kind != DeviceKind.IlgpuCpu))
            stdout.WriteLine($"{d.Id,-12} {Units.FormatSize(d.MemoryBytes),10}  {d.Name}");
        if (!devices.Any(d => d.Kind is DeviceKind.Cuda or DeviceKind.OpenCL))
            stdout.WriteLine("no CUDA or OpenCL device found");
        return 0;
    }
}
