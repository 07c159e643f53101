using ILGPU;
using ILGPU.Runtime;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Gpu.Backend;

/// <summary>
/// A weight on the device in its own format: F32/F16/BF16 rows as 32-bit words; Q8_0/Q4_0/Q5_0/IQ4_NL split into f16 scales and quant
/// words; Q4_1/Q5_1 blocks and K-quant super-blocks as words. Vectors (norms, biases) also as float32.
/// </summary>
internal sealed class GpuWeight : IWeight
{
    public required string Name { get; init; }
    public required GgmlType Type { get; init; }
    public required int Rows { get; init; }
    public required int Cols { get; init; }
    public required MemoryBuffer1D<int, Stride1D.Dense> Words { get; init; }
    public MemoryBuffer1D<ushort, Stride1D.Dense>? Scales { get; init; }
    public MemoryBuffer1D<float, Stride1D.Dense>? Floats { get; init; } // vectors: (cols) float32
    public required FormatKernels Kernels { get; init; }
}

/// <summary>A float32 activation (rows, cols) on the device, row-major.</summary>
internal sealed class GpuActivation : IActivation
{
    public required int Rows { get; init; }
    public required int Cols { get; init; }
    public required MemoryBuffer1D<float, Stride1D.Dense> Buffer { get; init; }
    public ArrayView<float> View => Buffer.View;
}
