using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Backend;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Ops;

/// <summary>
/// One element type of the KV cache (<see cref="KvCacheType"/>) as the attention kernels see it: how a row of headDim floats is
/// stored, and how a run of stored rows is read back as floats. The kernels are generic over this, so the JIT specializes
/// each (K type, V type) pair and the float32 cache keeps its in-place reads.
/// </summary>
internal unsafe interface IKvRows
{
    /// <summary>False for float32: attention reads the cache in place instead of converting it.</summary>
    static abstract bool Converts { get; }

    static abstract KvCacheType Type { get; }

    /// <summary>One row: <paramref name="headDim"/> floats at <paramref name="src"/> → its stored bytes at <paramref name="dst"/>.</summary>
    static abstract void Store(float* src, byte* dst, int headDim);

    /// <summary><paramref name="rows"/> consecutive stored rows → floats, row r at dst + r · <paramref name="dstStride"/>.</summary>
    static abstract void Load(byte* src, int rows, int headDim, float* dst, int dstStride);
}

/// <summary>float32 rows (stored as they are).</summary>
internal readonly unsafe struct KvF32 : IKvRows
{
    public static bool Converts => false;
    public static KvCacheType Type => KvCacheType.F32;

    public static void Store(float* src, byte* dst, int headDim) => Buffer.MemoryCopy(src, dst, 4L * headDim, 4L * headDim);

    public static void Load(byte* src, int rows, int headDim, float* dst, int dstStride)
    {
        for (int r = 0; r < rows; r++)
            Buffer.MemoryCopy(src + 4L * r * headDim, dst + (long)r * dstStride, 4L * headDim, 4L * headDim);
    }
}

/// <summary>IEEE half rows: stored rounded to nearest even (as ggml), read back exactly, 16 or 8 lanes at a time.</summary>
internal readonly unsafe struct KvF16 : IKvRows
{
    public static bool Converts => true;
    public static KvCacheType Type => KvCacheType.F16;

    public static void Store(float* src, byte* dst, int headDim) =>
        TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(src, headDim), new Span<Half>(dst, headDim));

    public static void Load(byte* src, int rows, int headDim, float* dst, int dstStride)
    {
        var h = (short*)src;
        for (int r = 0; r < rows; r++, h += headDim) KvRows.HalfToFloat(h, headDim, dst + (long)r * dstStride);
    }
}

/// <summary>Q8_0 rows: headDim / 32 blocks of an fp16 scale and 32 int8 values, quantized as ggml's reference does.</summary>
internal readonly unsafe struct KvQ8_0 : IKvRows
{
    public static bool Converts => true;
    public static KvCacheType Type => KvCacheType.Q8_0;

    public static void Store(float* src, byte* dst, int headDim) => Q8_0.QuantizeFast(src, dst, headDim);

    public static void Load(byte* src, int rows, int headDim, float* dst, int dstStride)
    {
        int blocks = headDim / Q8_0Format.BlockSize;
        for (int r = 0; r < rows; r++, src += (long)blocks * Q8_0Format.TypeSize) KvRows.Q8ToFloat(src, blocks, dst + (long)r * dstStride);
    }
}

/// <summary>
/// The conversions of KV cache rows, each with its scalar reference (<c>...Ref</c>: ggml's <see cref="HalfBits"/> and
/// <see cref="Q8_0Format"/>), and the dispatch by <see cref="KvCacheType"/> for callers outside the generic kernels.
/// </summary>
public static unsafe class KvRows
{
    /// <summary>2^112: rebiases a half exponent (bias 15) to a float one (bias 127).</summary>
    private const float Pow2Plus112 = 5.192296858534828e33f;

    public static long RowBytes(KvCacheType type, int headDim) => KvCacheTypes.RowBytes(type, headDim);

    /// <summary>One row of <paramref name="headDim"/> floats → its stored bytes.</summary>
    public static void Store(KvCacheType type, float* src, byte* dst, int headDim)
    {
        switch (type)
        {
            case KvCacheType.F32: KvF32.Store(src, dst, headDim); break;
            case KvCacheType.F16: KvF16.Store(src, dst, headDim); break;
            case KvCacheType.Q8_0: KvQ8_0.Store(src, dst, headDim); break;
            default: throw new ArgumentOutOfRangeException(nameof(type));
        }
    }

    /// <summary>Consecutive stored rows → floats, row r at dst + r · <paramref name="dstStride"/>.</summary>
    public static void Load(KvCacheType type, byte* src, int rows, int headDim, float* dst, int dstStride)
    {
        switch (type)
        {
            case KvCacheType.F32: KvF32.Load(src, rows, headDim, dst, dstStride); break;
            case KvCacheType.F16: KvF16.Load(src, rows, headDim, dst, dstStride); break;
            case KvCacheType.Q8_0: KvQ8_0.Load(src, rows, headDim, dst, dstStride); break;
            default: throw new ArgumentOutOfRangeException(nameof(type));
        }
    }

    /// <summary>Scalar reference of <see cref="Store"/>: ggml's fp32→fp16 rounding, ggml's Q8_0 reference quantizer.</summary>
    public static void StoreRef(KvCacheType type, float* src, byte* dst, int headDim)
    {
        switch (type)
        {
            case KvCacheType.F32: new ReadOnlySpan<float>(src, headDim).CopyTo(new Span<float>(dst, headDim)); break;
            case KvCacheType.F16:
                for (int i = 0; i < headDim; i++) ((ushort*)dst)[i] = HalfBits.FromFloat(src[i]);
                break;
            case KvCacheType.Q8_0: Q8_0Format.QuantizeRef(src, dst, headDim); break;
            default: throw new ArgumentOutOfRangeException(nameof(type));
        }
    }

    /// <summary>Scalar reference of <see cref="Load"/>: ggml's fp16→fp32 bit conversion, ggml's Q8_0 dequantizer.</summary>
    public static void LoadRef(KvCacheType type, byte* src, int rows, int headDim, float* dst, int dstStride)
    {
        long rowBytes = RowBytes(type, headDim);
        for (int r = 0; r < rows; r++)
        {
            byte* s = src + r * rowBytes;
            float* d = dst + (long)r * dstStride;
            switch (type)
            {
                case KvCacheType.F32: new ReadOnlySpan<float>(s, headDim).CopyTo(new Span<float>(d, headDim)); break;
                case KvCacheType.F16:
                    for (int i = 0; i < headDim; i++) d[i] = HalfBits.ToFloatRef(((ushort*)s)[i]);
                    break;
                case KvCacheType.Q8_0: Q8_0Format.DequantizeRef(s, d, headDim); break;
                default: throw new ArgumentOutOfRangeException(nameof(type));
            }
        }
    }

    /// <summary><paramref name="n"/> halves → floats, exactly (subnormals, infinities and NaN included).</summary>
    internal static void HalfToFloat(short* h, int n, float* dst)
    {
        int i = 0;
        if (Avx512F.IsSupported)
        {
            for (; i + 16 <= n; i += 16) HalfToFloat(Avx512F.ConvertToVector512Int32(Vector256.Load(h + i))).Store(dst + i);
        }
        if (Avx2.IsSupported)
        {
            for (; i + 8 <= n; i += 8) HalfToFloat(Avx2.ConvertToVector256Int32(h + i)).Store(dst + i);
        }
        for (; i < n; i++) dst[i] = HalfBits.ToFloat((ushort)h[i]);
    }

    /// <summary>
    /// Sign-extended half bits (one per int lane) → floats: shifted by 13 the exponent and mantissa sit in float position with
    /// the sign in bit 31 (the sign copies in bits 30..28 are masked off), which reads as value × 2^-112 (exact for every finite
    /// half, subnormals included); the multiply by 2^112 restores it. Exponent 31 (Inf/NaN) gets all float exponent bits first.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> HalfToFloat(Vector512<int> s)
    {
        Vector512<int> bits = (s << 13) & Vector512.Create(unchecked((int)0x8FFFFFFF));
        Vector512<int> infNan = Vector512.Equals(bits & Vector512.Create(0x0F800000), Vector512.Create(0x0F800000));
        return (bits | (infNan & Vector512.Create(0x7F800000))).AsSingle() * Vector512.Create(Pow2Plus112);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> HalfToFloat(Vector256<int> s)
    {
        Vector256<int> bits = (s << 13) & Vector256.Create(unchecked((int)0x8FFFFFFF));
        Vector256<int> infNan = Vector256.Equals(bits & Vector256.Create(0x0F800000), Vector256.Create(0x0F800000));
        return (bits | (infNan & Vector256.Create(0x7F800000))).AsSingle() * Vector256.Create(Pow2Plus112);
    }

    /// <summary><paramref name="blocks"/> Q8_0 blocks → 32 floats each: qs[j] · d, one rounding (as the reference).</summary>
    internal static void Q8ToFloat(byte* src, int blocks, float* dst)
    {
        for (int b = 0; b < blocks; b++, src += Q8_0Format.TypeSize, dst += Q8_0Format.BlockSize)
        {
            float d = HalfBits.ToFloat(*(ushort*)(src + Q8_0Format.DOffset));
            var qs = (sbyte*)(src + Q8_0Format.QsOffset);
            if (Avx512F.IsSupported)
            {
                var vd = Vector512.Create(d);
                (Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(qs))) * vd).Store(dst);
                (Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(qs + 16))) * vd).Store(dst + 16);
            }
            else if (Avx2.IsSupported)
            {
                var vd = Vector256.Create(d);
                for (int j = 0; j < Q8_0Format.BlockSize; j += 8)
                    (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(qs + j)) * vd).Store(dst + j);
            }
            else
            {
                for (int j = 0; j < Q8_0Format.BlockSize; j++) dst[j] = qs[j] * d;
            }
        }
    }
}
