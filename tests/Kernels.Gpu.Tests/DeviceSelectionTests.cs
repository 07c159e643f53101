namespace Infer.Kernels.Gpu.Tests;

public sealed class DeviceSelectionTests
{
    [Theory]
    [InlineData("auto", DeviceKind.Auto, -1)]
    [InlineData("cpu", DeviceKind.Cpu, -1)]
    [InlineData("cuda", DeviceKind.Cuda, -1)]
    [InlineData("CUDA:1", DeviceKind.Cuda, 1)]
    [InlineData("opencl:0", DeviceKind.OpenCL, 0)]
    [InlineData(" cpu-ilgpu ", DeviceKind.IlgpuCpu, -1)]
    public void ParsesDeviceNames(string text, DeviceKind kind, int index)
    {
        Assert.True(DeviceRequest.TryParse(text, out var r, out var error), error);
        Assert.Equal(new DeviceRequest(kind, index), r);
    }

    [Theory]
    [InlineData("")]
    [InlineData("tpu")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:x")]
    [InlineData("cpu:0")]
    [InlineData("cuda:99999")]
    public void RejectsBadDeviceNames(string text)
    {
        Assert.False(DeviceRequest.TryParse(text, out _, out var error));
        Assert.False(string.IsNullOrWhiteSpace(error));
    }

    [Fact]
    public void ListsTheIlgpuCpuAccelerator()
    {
        var devices = GpuContextFactory.ListDevices();
        var cpu = Assert.Single(devices, d => d.Kind == DeviceKind.IlgpuCpu);
        Assert.Equal("cpu-ilgpu:0", cpu.Id);
        Assert.True(cpu.Multiprocessors > 0);
    }

    [Fact]
    public void MissingCudaDeviceGivesOneLineFallback()
    {
        bool hasCuda = GpuContextFactory.ListDevices().Any(d => d.Kind == DeviceKind.Cuda);
        var selection = GpuContextFactory.Select(new DeviceRequest(DeviceKind.Cuda));
        using var device = selection.Device;
        if (hasCuda)
        {
            Assert.True(selection.IsGpu);
            Assert.Null(selection.Message);
        }
        else
        {
            Assert.False(selection.IsGpu);
            Assert.Equal("no CUDA device found; running on the CPU backend", selection.Message);
        }
    }

    [Fact]
    public void OutOfRangeIndexNamesTheCount()
    {
        var selection = GpuContextFactory.Select(new DeviceRequest(DeviceKind.IlgpuCpu, 5));
        Assert.False(selection.IsGpu);
        Assert.Equal("no ILGPU CPU device 5 (found 1); running on the CPU backend", selection.Message);
    }

    [Fact]
    public void CpuRequestOpensNothingAndSaysNothing()
    {
        var selection = GpuContextFactory.Select(new DeviceRequest(DeviceKind.Cpu));
        Assert.False(selection.IsGpu);
        Assert.Null(selection.Message);
    }

    [Fact]
    public void AutoNeverPicksTheIlgpuCpuAccelerator()
    {
        var selection = GpuContextFactory.Select(DeviceRequest.Auto);
        using var device = selection.Device;
        if (selection.Device is { } d) Assert.NotEqual(DeviceKind.IlgpuCpu, d.Info.Kind);
        else Assert.Equal("no GPU (CUDA or OpenCL) device found; running on the CPU backend", selection.Message);
    }

    [Fact]
    public void AutoAgreesWithTheLoaderCheck()
    {
        // Without a loadable CUDA driver or OpenCL loader, auto answers without an ILGPU context, and must say what the
        // context would have said: no CUDA or OpenCL device among the devices it lists.
        bool listed = GpuContextFactory.ListDevices().Any(d => d.Kind is DeviceKind.Cuda or DeviceKind.OpenCL);
        if (listed) Assert.True(GpuContextFactory.GpuRuntimeLoadable());
        var selection = GpuContextFactory.Select(DeviceRequest.Auto);
        using var device = selection.Device;
        Assert.Equal(!listed, selection.NoneFound);
    }

    [Fact]
    public void LoaderCheckLoadsWhatExistsOnly()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("the loader check runs on Linux only");
        Assert.False(GpuContextFactory.GpuRuntimeLoadable(["libinfer-no-such-driver.so.1"]));
        Assert.True(GpuContextFactory.GpuRuntimeLoadable(["libinfer-no-such-driver.so.1", "libc.so.6"]));
    }

    [Fact]
    public void BackendDescribesTheDevice()
    {
        using var b = new GpuBackend(GpuContextFactory.OpenIlgpuCpu());
        Assert.Equal("gpu", b.Name);
        Assert.StartsWith("cpu-ilgpu:0 ", b.Description);
    }
}
