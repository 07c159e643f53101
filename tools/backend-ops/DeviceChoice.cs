using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using Infer.Kernels.Gpu;

namespace Infer.BackendOps;

/// <summary>No accelerator of the kind asked for: the tool says so and exits with <see cref="Program.ExitNoDevice"/>.</summary>
public sealed class NoDeviceException(string message) : Exception(message);

/// <summary>
/// Which accelerators a <c>--device</c> value names: <c>cuda[:N]</c>; <c>opencl</c> (every OpenCL GPU) or <c>opencl:N</c> (the
/// N-th OpenCL device of any type, as <c>infer --device</c> counts them); <c>cpu-ilgpu</c> (ILGPU's CPU accelerator); <c>auto</c>
/// (every CUDA device and OpenCL GPU; the CPU accelerator when there is none).
/// </summary>
internal static class DeviceChoice
{
    public static IReadOnlyList<DeviceRequest> Resolve(string text, TextWriter log)
    {
        string s = text.Trim().ToLowerInvariant();
        if (s is "opencl" or "cl") return OpenClGpus(log) is { Count: > 0 } gpus ? gpus : throw new NoDeviceException("no OpenCL GPU found");
        if (s is "auto" or "gpu")
        {
            var list = new List<DeviceRequest>();
            int cuda = GpuContextFactory.ListDevices().Count(d => d.Kind == DeviceKind.Cuda);
            for (int i = 0; i < cuda; i++) list.Add(new DeviceRequest(DeviceKind.Cuda, i));
            list.AddRange(OpenClGpus(log));
            if (list.Count > 0) return list;
            log.WriteLine("no CUDA device or OpenCL GPU found: testing ILGPU's CPU accelerator");
            return [new DeviceRequest(DeviceKind.IlgpuCpu, 0)];
        }
        if (!DeviceRequest.TryParse(s, out var request, out string? error)) throw new UsageException($"--device: {error}");
        if (request.Kind is DeviceKind.Auto or DeviceKind.Cpu)
            throw new UsageException($"--device {text}: backend-ops tests a GPU backend (cuda, opencl, cpu-ilgpu or auto)");
        return [request.Index < 0 ? request with { Index = 0 } : request];
    }

    /// <summary>Opens one accelerator, or throws <see cref="NoDeviceException"/> naming what is missing.</summary>
    /// <param name="request">the device kind and index.</param>
    /// <param name="ilgpuCpu">the shape of ILGPU's CPU accelerator (tests: groups wide enough for the int8 GEMM); null: the default.</param>
    public static GpuDevice Open(DeviceRequest request, CPUDevice? ilgpuCpu = null)
    {
        var selection = GpuContextFactory.Select(request, ilgpuCpu);
        return selection.Device
            ?? throw new NoDeviceException(selection.Message?.Replace("; running on the CPU backend", "") ?? $"no device {request}");
    }

    /// <summary>The OpenCL devices that are GPUs, as requests of their index among all OpenCL devices.</summary>
    private static List<DeviceRequest> OpenClGpus(TextWriter log)
    {
        var list = new List<DeviceRequest>();
        try
        {
            using var context = ILGPU.Context.Create(b => b.OpenCL());
            var devices = context.GetCLDevices();
            for (int i = 0; i < devices.Count; i++)
                if (devices[i].DeviceType == CLDeviceType.CL_DEVICE_TYPE_GPU) list.Add(new DeviceRequest(DeviceKind.OpenCL, i));
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            log.WriteLine($"OpenCL discovery failed: {e.Message}");
        }
        return list;
    }

    /// <summary>One line per accelerator ILGPU sees, with what decides how kernels compile (architecture, instruction set, type).</summary>
    public static void Describe(TextWriter w)
    {
        using var context = ILGPU.Context.Create(b => b.Cuda().OpenCL().CPU(GpuContextFactory.DefaultIlgpuCpuDevice));
        var counts = new Dictionary<string, int>();
        foreach (var d in context)
        {
            string kind = d switch { CudaDevice => "cuda", CLDevice => "opencl", _ => "cpu-ilgpu" };
            int i = counts.GetValueOrDefault(kind);
            counts[kind] = i + 1;
            string extra = d switch
            {
                CudaDevice c => $"sm_{c.Architecture?.Major}{c.Architecture?.Minor}, PTX ISA {c.InstructionSet}, driver {c.DriverVersion}",
                CLDevice c => $"{c.DeviceType}, {c.VendorName}, {c.DeviceVersion}",
                _ => "emulated on CPU threads",
            };
            w.WriteLine($"{kind}:{i,-3} {d.Name.Trim()} | {d.MemorySize / (1 << 20)} MiB, {d.NumMultiprocessors} multiprocessors, "
                + $"warp {d.WarpSize}, {d.MaxNumThreadsPerGroup} threads/group, {d.MaxSharedMemoryPerGroup / 1024} KiB shared/group | {extra}");
        }
    }
}
