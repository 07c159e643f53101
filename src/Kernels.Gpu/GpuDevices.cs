using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace Infer.Kernels.Gpu;

/// <summary>What a <c>--device</c> value asks for.</summary>
public enum DeviceKind
{
    /// <summary>The best GPU present (CUDA, then OpenCL); the CPU backend when there is none.</summary>
    Auto,
    /// <summary>The CPU backend (<c>Infer.Kernels.Cpu</c>), not an ILGPU accelerator.</summary>
    Cpu,
    Cuda,
    OpenCL,
    /// <summary>ILGPU's CPU accelerator: the GPU kernels run on CPU threads. Slow; for tests.</summary>
    IlgpuCpu,
}

/// <summary>A parsed <c>--device</c> value: <c>auto</c>, <c>cpu</c>, <c>cuda[:i]</c>, <c>opencl[:i]</c>, <c>cpu-ilgpu[:i]</c>.</summary>
/// <param name="Kind">the backend asked for.</param>
/// <param name="Index">Index among the devices of that kind; -1 when not given (the first, or the best for auto).</param>
public readonly record struct DeviceRequest(DeviceKind Kind, int Index = -1)
{
    public static DeviceRequest Auto => new(DeviceKind.Auto);

    /// <summary>Parses a device name; false with an <paramref name="error"/> naming the problem when it is not one.</summary>
    public static bool TryParse(string? text, out DeviceRequest request, out string? error)
    {
        request = Auto;
        error = null;
        string s = (text ?? "").Trim().ToLowerInvariant();
        if (s.Length == 0)
        {
            error = "empty device name (expected auto, cpu, cuda[:N], opencl[:N] or cpu-ilgpu[:N])";
            return false;
        }
        int index = -1;
        int colon = s.IndexOf(':');
        if (colon >= 0)
        {
            string n = s[(colon + 1)..];
            if (!int.TryParse(n, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out index)
                || index > 1024)
            {
                error = $"bad device index '{n}' in '{text}' (expected a number such as cuda:0)";
                return false;
            }
            s = s[..colon];
        }
        DeviceKind? kind = s switch
        {
            "auto" or "gpu" => DeviceKind.Auto,
            "cpu" => DeviceKind.Cpu,
            "cuda" => DeviceKind.Cuda,
            "opencl" or "cl" => DeviceKind.OpenCL,
            "cpu-ilgpu" or "ilgpu-cpu" => DeviceKind.IlgpuCpu,
            _ => null,
        };
        if (kind is null)
        {
            error = $"unknown device '{text}' (expected auto, cpu, cuda[:N], opencl[:N] or cpu-ilgpu[:N])";
            return false;
        }
        if (index >= 0 && kind is DeviceKind.Auto or DeviceKind.Cpu)
        {
            error = $"device '{text}' takes no index";
            return false;
        }
        request = new DeviceRequest(kind.Value, index);
        return true;
    }

    public override string ToString() => Kind switch
    {
        DeviceKind.Auto => "auto",
        DeviceKind.Cpu => "cpu",
        _ => GpuDeviceInfo.KindName(Kind) + (Index >= 0 ? $":{Index}" : ""),
    };
}

/// <summary>One accelerator ILGPU can see (for <c>infer devices</c>).</summary>
/// <param name="Kind">CUDA, OpenCL or ILGPU's CPU accelerator.</param>
/// <param name="Index">Index among the devices of the same kind (the N of <c>cuda:N</c>).</param>
/// <param name="Name">the name the driver reports.</param>
/// <param name="MemoryBytes">device memory in bytes.</param>
/// <param name="Multiprocessors">streaming multiprocessors (CUDA) or compute units (OpenCL).</param>
/// <param name="WarpSize">threads per warp (CUDA) or per wavefront/subgroup as ILGPU reports it.</param>
public sealed record GpuDeviceInfo(DeviceKind Kind, int Index, string Name, long MemoryBytes, int Multiprocessors, int WarpSize)
{
    /// <summary>The <c>--device</c> value that picks this device.</summary>
    public string Id => $"{KindName(Kind)}:{Index}";

    internal static string KindName(DeviceKind kind) => kind switch
    {
        DeviceKind.Cuda => "cuda",
        DeviceKind.OpenCL => "opencl",
        DeviceKind.IlgpuCpu => "cpu-ilgpu",
        DeviceKind.Cpu => "cpu",
        _ => "auto",
    };
}

/// <summary>
/// The result of asking for a device: either an opened <see cref="GpuDevice"/>, or none with a one-line
/// <see cref="Message"/> saying why (the caller prints it and runs on the CPU backend).
/// </summary>
public sealed class DeviceSelection
{
    internal DeviceSelection(GpuDevice? device, string? message, bool noneFound = false)
    {
        Device = device;
        Message = message;
        NoneFound = noneFound;
    }

    /// <summary>The opened accelerator, or null when the CPU backend should be used.</summary>
    public GpuDevice? Device { get; }

    /// <summary>
    /// Why no GPU was opened although one was asked for (or auto found none), e.g. "no CUDA device found; running on the
    /// CPU backend"; null when nothing needs saying.
    /// </summary>
    public string? Message { get; }

    /// <summary>True when the machine has no CUDA or OpenCL device at all (not one that failed to open, nor a missing index).</summary>
    public bool NoneFound { get; }

    public bool IsGpu => Device is not null;
}

/// <summary>An ILGPU context and one accelerator on it; owns both. Hand it to <see cref="GpuBackend"/>.</summary>
public sealed class GpuDevice : IDisposable
{
    internal GpuDevice(Context context, Accelerator accelerator, GpuDeviceInfo info)
    {
        Context = context;
        Accelerator = accelerator;
        Info = info;
    }

    public Context Context { get; }
    public Accelerator Accelerator { get; }
    public GpuDeviceInfo Info { get; }

    public void Dispose()
    {
        Accelerator.Dispose();
        Context.Dispose();
    }
}

/// <summary>Creates ILGPU contexts, lists accelerators and opens the one a <see cref="DeviceRequest"/> names.</summary>
public static class GpuContextFactory
{
    /// <summary>
    /// ILGPU's CPU accelerator shape used by <c>cpu-ilgpu</c>: groups of 4 threads (one warp of 4), 2 multiprocessors.
    /// Groups and barriers are emulated with OS threads and cost tens of microseconds each, so small groups run fastest.
    /// </summary>
    public static CPUDevice DefaultIlgpuCpuDevice { get; } = new(numThreadsPerWarp: 4, numWarpsPerMultiprocessor: 1, numMultiprocessors: 2);

    /// <summary>Environment variable: "1" compiles the GPU kernels at ILGPU's O1 instead of O2 (a way back, should O2 miscompile).</summary>
    public const string OptimizationVariable = "INFER_GPU_OPT";

    /// <summary>
    /// ILGPU's optimization level for the kernels: O2 unless <paramref name="setting"/> (by default the environment variable
    /// <see cref="OptimizationVariable"/>) is "1". Measured with ptxas for sm_90 (<c>backend-ops ptx</c>): at O1 every inline
    /// PTX result (dp4a, mma.sync) goes through a local-memory slot that ptxas keeps storing to (up to 108 STL in a fused
    /// kernel); O2 keeps them in registers in every decode kernel and takes MatMulNorm&lt;Q4_K&gt; from 78 to 51 registers.
    /// </summary>
    public static OptimizationLevel KernelOptimization(string? setting = null) =>
        (setting ?? Environment.GetEnvironmentVariable(OptimizationVariable))?.Trim() == "1" ? OptimizationLevel.O1 : OptimizationLevel.O2;

    /// <summary>
    /// A context with CUDA, OpenCL and the CPU accelerator, compiling at <paramref name="level"/> (default
    /// <see cref="KernelOptimization"/>); the Algorithms library supplies MathF.Exp and friends on CUDA and OpenCL.
    /// </summary>
    internal static Context CreateContext(CPUDevice? cpu = null, OptimizationLevel? level = null) =>
        Context.Create(b => b.Cuda().OpenCL().CPU(cpu ?? DefaultIlgpuCpuDevice).Optimize(level ?? KernelOptimization()).EnableAlgorithms());

    /// <summary>Every accelerator present: CUDA devices, then OpenCL devices, then ILGPU's CPU accelerator.</summary>
    public static IReadOnlyList<GpuDeviceInfo> ListDevices()
    {
        using var context = CreateContext();
        return Describe(context);
    }

    private static List<GpuDeviceInfo> Describe(Context context)
    {
        var list = new List<GpuDeviceInfo>();
        var counts = new Dictionary<DeviceKind, int>();
        foreach (var kind in new[] { DeviceKind.Cuda, DeviceKind.OpenCL, DeviceKind.IlgpuCpu })
            foreach (var d in DevicesOf(context, kind))
            {
                int i = counts.GetValueOrDefault(kind);
                counts[kind] = i + 1;
                list.Add(new GpuDeviceInfo(kind, i, d.Name.Trim(), d.MemorySize, d.NumMultiprocessors, d.WarpSize));
            }
        return list;
    }

    private static List<Device> DevicesOf(Context context, DeviceKind kind) => kind switch
    {
        DeviceKind.Cuda => [.. context.GetCudaDevices()],
        DeviceKind.OpenCL => [.. context.GetCLDevices()],
        DeviceKind.IlgpuCpu => [.. context.GetCPUDevices()],
        _ => [],
    };

    /// <summary>
    /// Opens the accelerator <paramref name="request"/> names. Never throws for a missing device: the selection then
    /// holds no device and a one-line message. <c>auto</c> tries CUDA, then OpenCL, and never picks ILGPU's CPU accelerator.
    /// </summary>
    public static DeviceSelection Select(DeviceRequest request, CPUDevice? ilgpuCpu = null)
    {
        if (request.Kind == DeviceKind.Cpu) return new DeviceSelection(null, null);
        if (request.Kind == DeviceKind.Auto && !GpuRuntimeLoadable())
            return new DeviceSelection(null, Choose(request, []).Message, noneFound: true);
        var context = CreateContext(ilgpuCpu);
        try
        {
            var devices = Describe(context);
            var (info, message) = Choose(request, devices);
            if (info is null)
            {
                context.Dispose();
                return new DeviceSelection(null, message, noneFound: !devices.Any(d => d.Kind is DeviceKind.Cuda or DeviceKind.OpenCL));
            }
            var d = DevicesOf(context, info.Kind)[info.Index];
            return new DeviceSelection(new GpuDevice(context, d.CreateAccelerator(context), info), null);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            context.Dispose();
            return new DeviceSelection(null, $"could not open {request}: {e.Message.Trim()}; running on the CPU backend");
        }
    }

    /// <summary>
    /// Whether a CUDA driver or an OpenCL loader can be loaded at all (checked on Linux; elsewhere assumed). Without either,
    /// <c>auto</c> has nothing to find, and skipping ILGPU's context spares a CPU-only run about 9 MB of resident memory
    /// (<c>infer bench</c>, 1B Q8_0 after 4,096 positions: 1,595 MB with the context, 1,586 without).
    /// </summary>
    internal static bool GpuRuntimeLoadable(IEnumerable<string>? libraries = null)
    {
        if (!OperatingSystem.IsLinux()) return true;
        foreach (var name in libraries ?? ["libcuda.so.1", "libcuda.so", "libOpenCL.so.1", "libOpenCL.so"])
        {
            if (!NativeLibrary.TryLoad(name, out var handle)) continue;
            NativeLibrary.Free(handle);
            return true;
        }
        return false;
    }

    /// <summary>
    /// Which of <paramref name="devices"/> (as <see cref="ListDevices"/> lists them) <paramref name="request"/> picks, without
    /// opening it: <c>auto</c> the first CUDA device, else the first OpenCL one; a kind the one of that index (0 when not
    /// given). Null with the one-line reason when none fits (the caller runs on the CPU backend), or for <c>cpu</c>.
    /// </summary>
    public static (GpuDeviceInfo? Device, string? Message) Choose(DeviceRequest request, IReadOnlyList<GpuDeviceInfo> devices)
    {
        if (request.Kind == DeviceKind.Cpu) return (null, null);
        var kinds = request.Kind == DeviceKind.Auto ? [DeviceKind.Cuda, DeviceKind.OpenCL] : new[] { request.Kind };
        foreach (var kind in kinds)
        {
            var ofKind = devices.Where(d => d.Kind == kind).ToList();
            if (ofKind.Count == 0) continue;
            int index = request.Index < 0 ? 0 : request.Index;
            if (index >= ofKind.Count) return (null, $"no {Display(kind)} device {index} (found {ofKind.Count}); running on the CPU backend");
            return (ofKind[index], null);
        }
        string what = request.Kind == DeviceKind.Auto ? "GPU (CUDA or OpenCL)" : Display(request.Kind);
        return (null, $"no {what} device found; running on the CPU backend");
    }

    /// <summary>Opens ILGPU's CPU accelerator (tests): always present.</summary>
    public static GpuDevice OpenIlgpuCpu(CPUDevice? shape = null) =>
        Select(new DeviceRequest(DeviceKind.IlgpuCpu, 0), shape).Device
        ?? throw new InvalidOperationException("ILGPU's CPU accelerator could not be opened");

    private static string Display(DeviceKind kind) => kind switch
    {
        DeviceKind.Cuda => "CUDA",
        DeviceKind.OpenCL => "OpenCL",
        DeviceKind.IlgpuCpu => "ILGPU CPU",
        _ => kind.ToString(),
    };
}
