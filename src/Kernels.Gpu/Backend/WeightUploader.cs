using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using Infer.Kernels.Gpu.Kernels;
using Infer.Runtime;
using Infer.Runtime.Backend;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Gpu.Backend;

/// <summary>The embed and matmul kernels of one weight format, compiled once per backend.</summary>
internal sealed class FormatKernels
{
    public required Action<Index1D, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, int> Embed;
    public required Action<KernelConfig, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, MatMulArgs> MatMul;
    public required Action<KernelConfig, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>,
        ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        FusedMatMulArgs> MatMulFused;
    public required Action<KernelConfig, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>,
        ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        FusedMatMulArgs, RopeStoreViews> MatMulNorm;

    /// <summary>MatMulNorm with the third part in another format (key), compiled on first use: see GpuKernels.MixedQkv.</summary>
    public readonly Dictionary<GgmlType, Lazy<Action<KernelConfig, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>,
        ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, FusedMatMulArgs, RopeStoreViews>>> MixedNorm = [];

    /// <summary>The int8 tensor-core GEMM of batches (GpuKernels.GemmQ8), for formats of int8 blocks; compiled on first use.</summary>
    public Lazy<Action<KernelConfig, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        GemmArgs, GemmParts>>? Gemm;

    /// <summary>GpuKernels.GemmQ8Wide of the same format (the default GEMM: 128 × 64 tiles, 256 threads); compiled on first use.</summary>
    public Lazy<Action<KernelConfig, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        GemmArgs, GemmParts>>? GemmWide;
}

internal static class FormatKernelsExtensions
{
    /// <summary>Adds the MatMulNorm whose third part is in <typeparamref name="TV"/> (<paramref name="vType"/>), compiled on first use.</summary>
    public static FormatKernels WithMixedNorm<TF, TV>(this FormatKernels k, DeviceState d, GgmlType vType)
        where TF : struct, IWeightFormat where TV : struct, IWeightFormat
    {
        k.MixedNorm[vType] = new(() => d.Acc.LoadStreamKernel<ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>, ArrayView<int>,
            ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            FusedMatMulArgs, RopeStoreViews>(GpuKernels.MatMulNorm<TF, TV>));
        return k;
    }

    /// <summary>
    /// Adds <see cref="GpuKernels.GemmQ8{TF}"/> and <see cref="GpuKernels.GemmQ8Wide{TF}"/> for a format of int8 blocks, compiled on
    /// first use.
    /// </summary>
    public static FormatKernels WithGemm<TF>(this FormatKernels k, DeviceState d) where TF : struct, IInt8Blocks
    {
        k.Gemm = new(() => d.Acc.LoadStreamKernel<ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, GemmArgs, GemmParts>(GpuKernels.GemmQ8<TF>));
        k.GemmWide = new(() => d.Acc.LoadStreamKernel<ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, GemmArgs, GemmParts>(GpuKernels.GemmQ8Wide<TF>));
        return k;
    }
}

/// <summary>Uploads weights in their own format and compiles each format's embed and matmul kernels once.</summary>
internal sealed class WeightUploader(DeviceState d)
{
    private readonly Dictionary<GgmlType, FormatKernels> _formats = [];

    /// <summary>Bytes of weights uploaded so far.</summary>
    public long WeightBytes { get; private set; }

    private FormatKernels Kernels(GgmlType type)
    {
        if (_formats.TryGetValue(type, out var k)) return k;
        k = type switch
        {
            GgmlType.F32 => Load<F32Words>(),
            GgmlType.F16 => Load<F16Words>(),
            GgmlType.BF16 => Load<BF16Words>(),
            GgmlType.Q8_0 => Load<Q8_0Words>().WithGemm<Q8_0Words>(d),
            GgmlType.Q4_0 => Load<Q4_0Words>().WithGemm<Q4_0Words>(d),
            GgmlType.Q4_1 => Load<Q4_1Words>().WithGemm<Q4_1Words>(d),
            GgmlType.Q5_0 => Load<Q5_0Words>().WithMixedNorm<Q5_0Words, Q8_0Words>(d, GgmlType.Q8_0).WithGemm<Q5_0Words>(d),
            GgmlType.Q5_1 => Load<Q5_1Words>().WithMixedNorm<Q5_1Words, Q8_0Words>(d, GgmlType.Q8_0).WithGemm<Q5_1Words>(d),
            GgmlType.IQ4_NL => Load<IQ4_NLWords>().WithMixedNorm<IQ4_NLWords, Q5_KWords>(d, GgmlType.Q5_K).WithGemm<IQ4_NLWords>(d),
            GgmlType.Q4_K => Load<Q4_KWords>().WithMixedNorm<Q4_KWords, Q6_KWords>(d, GgmlType.Q6_K)
                .WithMixedNorm<Q4_KWords, Q5_KWords>(d, GgmlType.Q5_K).WithGemm<Q4_KWords>(d),
            GgmlType.Q5_K => Load<Q5_KWords>().WithMixedNorm<Q5_KWords, Q6_KWords>(d, GgmlType.Q6_K).WithGemm<Q5_KWords>(d),
            GgmlType.Q6_K => Load<Q6_KWords>().WithGemm<Q6_KWords>(d),
            GgmlType.Q3_K => Load<Q3_KWords>().WithMixedNorm<Q3_KWords, Q4_KWords>(d, GgmlType.Q4_K)
                .WithMixedNorm<Q3_KWords, Q5_KWords>(d, GgmlType.Q5_K).WithGemm<Q3_KWords>(d),
            GgmlType.Q2_K => Load<Q2_KWords>().WithMixedNorm<Q2_KWords, Q3_KWords>(d, GgmlType.Q3_K)
                .WithMixedNorm<Q2_KWords, Q4_KWords>(d, GgmlType.Q4_K).WithMixedNorm<Q2_KWords, Q5_KWords>(d, GgmlType.Q5_K),
            GgmlType.IQ4_XS => Load<IQ4_XSWords>().WithMixedNorm<IQ4_XSWords, Q5_KWords>(d, GgmlType.Q5_K).WithGemm<IQ4_XSWords>(d),
            _ => throw new NotSupportedException($"no GPU kernels for {GgmlTypeInfo.Name(type)}"),
        };
        _formats[type] = k;
        return k;
    }

    private FormatKernels Load<TF>() where TF : struct, IWeightFormat => new()
    {
        Embed = d.Acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, int>(
            GpuKernels.Embed<TF>),
        MatMul = d.Acc.LoadStreamKernel<ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, MatMulArgs>(GpuKernels.MatMul<TF>),
        MatMulFused = d.Acc.LoadStreamKernel<ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            FusedMatMulArgs>(GpuKernels.MatMulFused<TF>),
        MatMulNorm = d.Acc.LoadStreamKernel<ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            FusedMatMulArgs, RopeStoreViews>(GpuKernels.MatMulNorm<TF, TF>),
    };

    /// <summary>Weight types this backend runs.</summary>
    public static bool IsSupported(GgmlType type) =>
        type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.Q5_K
            or GgmlType.Q6_K
            or GgmlType.Q3_K
            or GgmlType.Q2_K
            or GgmlType.IQ4_XS
            or GgmlType.Q4_1
            or GgmlType.Q5_0
            or GgmlType.Q5_1
            or GgmlType.IQ4_NL;

    public unsafe IWeight LoadWeight(GgufTensor tensor)
    {
        if (!IsSupported(tensor.Type))
            throw new UnsupportedModelException(null,
                $"tensor '{tensor.Name}' has type {GgmlTypeInfo.Name(tensor.Type)}, which the GPU backend does not support yet");
        int cols = checked((int)tensor.RowLength);
        int rows = checked((int)tensor.RowCount);
        return Upload(tensor.Name, tensor.Type, rows, cols, tensor.Data, tensor.ByteSize);
    }

    /// <summary>Uploads a weight [rows, cols] given in its GGUF encoding (rows of ggml blocks).</summary>
    public unsafe IWeight UploadWeight(string name, GgmlType type, int rows, int cols, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data) return Upload(name, type, rows, cols, p, data.Length);
    }

    public unsafe GpuWeight Upload(string name, GgmlType type, int rows, int cols, byte* data, long byteSize)
    {
        if (!IsSupported(type))
            throw new UnsupportedModelException(null,
                $"tensor '{name}' has type {GgmlTypeInfo.Name(type)}, which the GPU backend does not support yet");
        if (rows < 1 || cols < 1 || cols % GgmlTypeInfo.BlockSize(type) != 0)
            throw new ArgumentException($"tensor '{name}': bad shape [{cols}, {rows}] for {GgmlTypeInfo.Name(type)}");
        long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
        if (byteSize < rowBytes * rows)
            throw new ArgumentException($"tensor '{name}': {byteSize} bytes, expected {rowBytes * rows}");
        var kernels = Kernels(type);

        MemoryBuffer1D<float, Stride1D.Dense>? floats = null;
        if (rows == 1 && HostDecode.CanDecode(type))
        {
            var v = new float[cols];
            HostDecode.Row(type, data, v);
            floats = d.Track(d.Acc.Allocate1D(v));
        }

        MemoryBuffer1D<int, Stride1D.Dense> words;
        MemoryBuffer1D<ushort, Stride1D.Dense>? scales = null;
        switch (type)
        {
            case GgmlType.F32:
                words = d.Track(d.Acc.Allocate1D<int>((long)rows * cols));
                words.View.CopyFromCPU(ref Unsafe.AsRef<int>(data), (long)rows * cols);
                break;
            case GgmlType.F16:
            case GgmlType.BF16:
                {
                    int wordsPerRow = (cols + 1) / 2;
                    words = d.Track(d.Acc.Allocate1D<int>((long)rows * wordsPerRow));
                    if (cols % 2 == 0)
                        words.View.CopyFromCPU(ref Unsafe.AsRef<int>(data), (long)rows * wordsPerRow);
                    else
                    {
                        // Odd rows: pad each row to whole words.
                        var packed = new int[(long)rows * wordsPerRow];
                        fixed (int* dst = packed)
                            for (long r = 0; r < rows; r++)
                                Buffer.MemoryCopy(data + r * rowBytes, (byte*)(dst + r * wordsPerRow), (long)wordsPerRow * 4, rowBytes);
                        words.View.CopyFromCPU(packed);
                    }
                    break;
                }
            case GgmlType.Q4_K:
            case GgmlType.Q5_K:
            case GgmlType.Q6_K:
            case GgmlType.Q3_K:
            case GgmlType.Q2_K:
            case GgmlType.IQ4_XS:
            case GgmlType.Q4_1:
            case GgmlType.Q5_1:
                {
                    // Raw (super-)blocks as words; Q6_K's 210-byte and Q3_K's 110-byte blocks are padded to whole words.
                    long blocks = (long)rows * (cols / GgmlTypeInfo.BlockSize(type));
                    var (blockBytes, wordsPerBlock) = type switch
                    {
                        GgmlType.Q4_K => (Q4_KFormat.TypeSize, Q4_KWords.WordsPerBlock),
                        GgmlType.Q5_K => (Q5_KFormat.TypeSize, Q5_KWords.WordsPerBlock),
                        GgmlType.Q3_K => (Q3_KFormat.TypeSize, Q3_KWords.WordsPerBlock),
                        GgmlType.Q2_K => (Q2_KFormat.TypeSize, Q2_KWords.WordsPerBlock),
                        GgmlType.IQ4_XS => (IQ4Format.XsTypeSize, IQ4_XSWords.WordsPerBlock),
                        GgmlType.Q4_1 => (Q4_1Format.TypeSize, Q4_1Words.WordsPerBlock),
                        GgmlType.Q5_1 => (Q5_1Format.TypeSize, Q5_1Words.WordsPerBlock),
                        _ => (Q6_KFormat.TypeSize, Q6_KWords.WordsPerBlock),
                    };
                    var q = new int[blocks * wordsPerBlock];
                    fixed (int* qp = q)
                        for (long b = 0; b < blocks; b++)
                            Buffer.MemoryCopy(data + b * blockBytes, qp + b * wordsPerBlock, (long)wordsPerBlock * 4, blockBytes);
                    words = d.Track(d.Acc.Allocate1D(q));
                    break;
                }
            default:
                {
                    // Q8_0, Q4_0, Q5_0, IQ4_NL: blocks of 32 that start with their f16 d, split into the scales and 32-bit words of
                    // the bytes after d (Q5_0's qh and qs: 5 words)
                    long blocks = (long)rows * (cols / Q8_0Format.BlockSize);
                    int blockBytes = type switch
                    {
                        GgmlType.Q8_0 => Q8_0Format.TypeSize,
                        GgmlType.Q4_0 => Q4_0Format.TypeSize,
                        GgmlType.Q5_0 => Q5_0Format.TypeSize,
                        GgmlType.IQ4_NL => IQ4Format.NlTypeSize,
                        _ => throw new NotSupportedException($"no GPU upload for {GgmlTypeInfo.Name(type)}"),
                    };
                    int qsOffset = Q8_0Format.QsOffset, quantBytes = blockBytes - qsOffset;
                    var s = new ushort[blocks];
                    var q = new int[blocks * quantBytes / 4];
                    fixed (ushort* sp = s)
                    fixed (int* qp = q)
                        for (long b = 0; b < blocks; b++)
                        {
                            byte* src = data + b * blockBytes;
                            sp[b] = (ushort)(src[Q8_0Format.DOffset] | src[Q8_0Format.DOffset + 1] << 8);
                            Buffer.MemoryCopy(src + qsOffset, (byte*)qp + b * quantBytes, quantBytes, quantBytes);
                        }
                    scales = d.Track(d.Acc.Allocate1D(s));
                    words = d.Track(d.Acc.Allocate1D(q));
                    break;
                }
        }
        WeightBytes += words.LengthInBytes + (scales?.LengthInBytes ?? 0);
        return new GpuWeight
        {
            Name = name, Type = type, Rows = rows, Cols = cols, Words = words, Scales = scales, Floats = floats, Kernels = kernels,
        };
    }
}
