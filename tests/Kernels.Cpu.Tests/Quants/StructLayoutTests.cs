using System.Runtime.CompilerServices;
using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Tests.Quants;

public class StructLayoutTests
{
    [Fact]
    public void BlockSizesMatchGgml()
    {
        Assert.Equal(34, Unsafe.SizeOf<BlockQ8_0>());
        Assert.Equal(36, Unsafe.SizeOf<BlockQ8_1>());
        Assert.Equal(18, Unsafe.SizeOf<BlockQ4_0>());
        Assert.Equal(20, Unsafe.SizeOf<BlockQ4_1>());
        Assert.Equal(22, Unsafe.SizeOf<BlockQ5_0>());
        Assert.Equal(24, Unsafe.SizeOf<BlockQ5_1>());
        Assert.Equal(292, Unsafe.SizeOf<BlockQ8_K>());
        Assert.Equal(144, Unsafe.SizeOf<BlockQ4_K>());
        Assert.Equal(176, Unsafe.SizeOf<BlockQ5_K>());
        Assert.Equal(210, Unsafe.SizeOf<BlockQ6_K>());
    }

    [Theory]
    [InlineData(GgmlType.Q8_0, Q8_0.BlockSize, Q8_0.TypeSize)]
    [InlineData(GgmlType.Q8_1, Q8_1.BlockSize, Q8_1.TypeSize)]
    [InlineData(GgmlType.Q4_0, Q4_0.BlockSize, Q4_0.TypeSize)]
    [InlineData(GgmlType.Q4_1, Q4_1.BlockSize, Q4_1.TypeSize)]
    [InlineData(GgmlType.Q5_0, Q5_0.BlockSize, Q5_0.TypeSize)]
    [InlineData(GgmlType.Q5_1, Q5_1.BlockSize, Q5_1.TypeSize)]
    [InlineData(GgmlType.Q8_K, Q8_K.BlockSize, Q8_K.TypeSize)]
    [InlineData(GgmlType.Q4_K, Q4_K.BlockSize, Q4_K.TypeSize)]
    [InlineData(GgmlType.Q5_K, Q5_K.BlockSize, Q5_K.TypeSize)]
    [InlineData(GgmlType.Q6_K, Q6_K.BlockSize, Q6_K.TypeSize)]
    [InlineData(GgmlType.F32, F32.BlockSize, F32.TypeSize)]
    [InlineData(GgmlType.F16, F16.BlockSize, F16.TypeSize)]
    [InlineData(GgmlType.BF16, BF16.BlockSize, BF16.TypeSize)]
    public void ConstantsAgreeWithGgmlTypeInfo(GgmlType type, int blockSize, int typeSize)
    {
        Assert.Equal(GgmlTypeInfo.BlockSize(type), blockSize);
        Assert.Equal(GgmlTypeInfo.TypeSize(type), typeSize);
    }
}
