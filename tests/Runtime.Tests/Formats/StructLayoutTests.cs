using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Tests.Formats;

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
        Assert.Equal(84, Unsafe.SizeOf<BlockQ2_K>());
        Assert.Equal(18, Unsafe.SizeOf<BlockIQ4_NL>());
        Assert.Equal(136, Unsafe.SizeOf<BlockIQ4_XS>());
        Assert.Equal(110, Unsafe.SizeOf<BlockQ3_K>());
        Assert.Equal(144, Unsafe.SizeOf<BlockQ4_K>());
        Assert.Equal(176, Unsafe.SizeOf<BlockQ5_K>());
        Assert.Equal(210, Unsafe.SizeOf<BlockQ6_K>());
    }

    [Theory]
    [InlineData(GgmlType.Q8_0, Q8_0Format.BlockSize, Q8_0Format.TypeSize)]
    [InlineData(GgmlType.Q8_1, Q8_1Format.BlockSize, Q8_1Format.TypeSize)]
    [InlineData(GgmlType.Q4_0, Q4_0Format.BlockSize, Q4_0Format.TypeSize)]
    [InlineData(GgmlType.Q4_1, Q4_1Format.BlockSize, Q4_1Format.TypeSize)]
    [InlineData(GgmlType.Q5_0, Q5_0Format.BlockSize, Q5_0Format.TypeSize)]
    [InlineData(GgmlType.Q5_1, Q5_1Format.BlockSize, Q5_1Format.TypeSize)]
    [InlineData(GgmlType.Q8_K, Q8_KFormat.BlockSize, Q8_KFormat.TypeSize)]
    [InlineData(GgmlType.Q2_K, Q2_KFormat.BlockSize, Q2_KFormat.TypeSize)]
    [InlineData(GgmlType.IQ4_NL, IQ4Format.NlBlockSize, IQ4Format.NlTypeSize)]
    [InlineData(GgmlType.IQ4_XS, IQ4Format.XsBlockSize, IQ4Format.XsTypeSize)]
    [InlineData(GgmlType.Q3_K, Q3_KFormat.BlockSize, Q3_KFormat.TypeSize)]
    [InlineData(GgmlType.Q4_K, Q4_KFormat.BlockSize, Q4_KFormat.TypeSize)]
    [InlineData(GgmlType.Q5_K, Q5_KFormat.BlockSize, Q5_KFormat.TypeSize)]
    [InlineData(GgmlType.Q6_K, Q6_KFormat.BlockSize, Q6_KFormat.TypeSize)]
    [InlineData(GgmlType.F32, F32Format.BlockSize, F32Format.TypeSize)]
    [InlineData(GgmlType.F16, F16Format.BlockSize, F16Format.TypeSize)]
    [InlineData(GgmlType.BF16, BF16Format.BlockSize, BF16Format.TypeSize)]
    public void ConstantsAgreeWithGgmlTypeInfo(GgmlType type, int blockSize, int typeSize)
    {
        Assert.Equal(GgmlTypeInfo.BlockSize(type), blockSize);
        Assert.Equal(GgmlTypeInfo.TypeSize(type), typeSize);
    }

    /// <summary>The named offsets the kernels read through are the structs' own layout, and each struct is exactly the block's bytes.</summary>
    [Fact]
    public void FieldOffsetsAndSizesMatchTheBlockStructs()
    {
        AssertLayout<BlockQ8_0>(Q8_0Format.TypeSize, (nameof(BlockQ8_0.D), Q8_0Format.DOffset), (nameof(BlockQ8_0.Qs), Q8_0Format.QsOffset));
        Assert.Equal(Q8_0Format.TypeSize - Q8_0Format.QsOffset, Q8_0Format.QsBytes);
        AssertLayout<BlockQ8_1>(Q8_1Format.TypeSize, (nameof(BlockQ8_1.D), Q8_1Format.DOffset), (nameof(BlockQ8_1.S), Q8_1Format.SOffset),
            (nameof(BlockQ8_1.Qs), Q8_1Format.QsOffset));
        AssertLayout<BlockQ4_0>(Q4_0Format.TypeSize, (nameof(BlockQ4_0.D), Q4_0Format.DOffset), (nameof(BlockQ4_0.Qs), Q4_0Format.QsOffset));
        Assert.Equal(Q4_0Format.TypeSize - Q4_0Format.QsOffset, Q4_0Format.QsBytes);
        AssertLayout<BlockQ4_1>(Q4_1Format.TypeSize, (nameof(BlockQ4_1.D), Q4_1Format.DOffset), (nameof(BlockQ4_1.M), Q4_1Format.MOffset),
            (nameof(BlockQ4_1.Qs), Q4_1Format.QsOffset));
        AssertLayout<BlockQ5_0>(Q5_0Format.TypeSize, (nameof(BlockQ5_0.D), Q5_0Format.DOffset), (nameof(BlockQ5_0.Qh), Q5_0Format.QhOffset),
            (nameof(BlockQ5_0.Qs), Q5_0Format.QsOffset));
        AssertLayout<BlockQ5_1>(Q5_1Format.TypeSize, (nameof(BlockQ5_1.D), Q5_1Format.DOffset), (nameof(BlockQ5_1.M), Q5_1Format.MOffset),
            (nameof(BlockQ5_1.Qh), Q5_1Format.QhOffset), (nameof(BlockQ5_1.Qs), Q5_1Format.QsOffset));
        AssertLayout<BlockQ8_K>(Q8_KFormat.TypeSize, (nameof(BlockQ8_K.D), Q8_KFormat.DOffset), (nameof(BlockQ8_K.Qs), Q8_KFormat.QsOffset),
            (nameof(BlockQ8_K.BSums), Q8_KFormat.BSumsOffset));
        AssertLayout<BlockQ4_K>(Q4_KFormat.TypeSize, (nameof(BlockQ4_K.D), Q4_KFormat.DOffset), (nameof(BlockQ4_K.DMin), Q4_KFormat.DMinOffset),
            (nameof(BlockQ4_K.Scales), Q4_KFormat.ScalesOffset), (nameof(BlockQ4_K.Qs), Q4_KFormat.QsOffset));
        Assert.Equal(Q4_KFormat.QsOffset - Q4_KFormat.ScalesOffset, ScaleMinK4.Bytes);
        AssertLayout<BlockQ5_K>(Q5_KFormat.TypeSize, (nameof(BlockQ5_K.D), Q5_KFormat.DOffset), (nameof(BlockQ5_K.DMin), Q5_KFormat.DMinOffset),
            (nameof(BlockQ5_K.Scales), Q5_KFormat.ScalesOffset), (nameof(BlockQ5_K.Qh), Q5_KFormat.QhOffset),
            (nameof(BlockQ5_K.Qs), Q5_KFormat.QsOffset));
        AssertLayout<BlockQ2_K>(Q2_KFormat.TypeSize, (nameof(BlockQ2_K.Scales), Q2_KFormat.ScalesOffset), (nameof(BlockQ2_K.Qs), Q2_KFormat.QsOffset),
            (nameof(BlockQ2_K.D), Q2_KFormat.DOffset), (nameof(BlockQ2_K.DMin), Q2_KFormat.DMinOffset));
        AssertLayout<BlockQ3_K>(Q3_KFormat.TypeSize, (nameof(BlockQ3_K.HMask), Q3_KFormat.HMaskOffset), (nameof(BlockQ3_K.Qs), Q3_KFormat.QsOffset),
            (nameof(BlockQ3_K.Scales), Q3_KFormat.ScalesOffset), (nameof(BlockQ3_K.D), Q3_KFormat.DOffset));
        AssertLayout<BlockIQ4_NL>(IQ4Format.NlTypeSize, (nameof(BlockIQ4_NL.D), IQ4Format.NlDOffset), (nameof(BlockIQ4_NL.Qs), IQ4Format.NlQsOffset));
        AssertLayout<BlockIQ4_XS>(IQ4Format.XsTypeSize, (nameof(BlockIQ4_XS.D), IQ4Format.XsDOffset),
            (nameof(BlockIQ4_XS.ScalesH), IQ4Format.XsScalesHOffset), (nameof(BlockIQ4_XS.ScalesL), IQ4Format.XsScalesLOffset),
            (nameof(BlockIQ4_XS.Qs), IQ4Format.XsQsOffset));
        AssertLayout<BlockQ6_K>(Q6_KFormat.TypeSize, (nameof(BlockQ6_K.Ql), Q6_KFormat.QlOffset), (nameof(BlockQ6_K.Qh), Q6_KFormat.QhOffset),
            (nameof(BlockQ6_K.Scales), Q6_KFormat.ScalesOffset), (nameof(BlockQ6_K.D), Q6_KFormat.DOffset));
    }

    private static void AssertLayout<T>(int typeSize, params (string Field, int Offset)[] fields) where T : struct
    {
        Assert.Equal(typeSize, Unsafe.SizeOf<T>());
        foreach (var (field, offset) in fields) Assert.Equal(offset, (int)Marshal.OffsetOf<T>(field));
    }
}
