using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>The activation rows of the Q8_1-paired kernels (Q4_1, Q5_1 weights).</summary>
public static unsafe class Q8_1
{
    /// <summary>
    /// Activation rows for the Q8_1-paired kernels (<see cref="QuantKernel.QuantizeActivations"/>): the Q8_1 blocks of
    /// <see cref="Q8_1Format.QuantizeRef"/> (n/32 × 36 bytes), then the blocks' d and then their s (both fp16 in the block) as float32,
    /// which the repacked kernels read instead of converting them per weight row (see <see cref="BlockScales"/>, <see cref="BlockSums"/>).
    /// </summary>
    public static void QuantizeActivationsRef(float* x, byte* y, int n)
    {
        Q8_1Format.QuantizeRef(x, y, n);
        WriteTrailers(y, n);
    }

    /// <summary><see cref="QuantizeActivationsRef"/>, vectorized (same bytes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeActivationsFast(float* x, byte* y, int n)
    {
        if (!Avx2.IsSupported)
        {
            QuantizeActivationsRef(x, y, n);
            return;
        }
        int nb = n / Q8_1Format.BlockSize;
        for (int i = 0; i < nb; i++)
        {
            byte* yb = y + (nint)i * Q8_1Format.TypeSize;
            float d = Q8_0.QuantizeBlock(x + (nint)i * Q8_1Format.BlockSize, (sbyte*)(yb + Q8_1Format.QsOffset));
            *(ushort*)(yb + Q8_1Format.DOffset) = HalfBits.FromFloat(d);
            Vector256<sbyte> q = Vector256.Load((sbyte*)(yb + Q8_1Format.QsOffset));
            // Σqs exactly as the reference's int sum, times the float d, rounded to fp16 once
            Vector256<short> pairs = Avx2.MultiplyAddAdjacent(Vector256.Create((byte)1), q);
            int sum = Simd.HSum(Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1)));
            *(ushort*)(yb + Q8_1Format.SOffset) = HalfBits.FromFloat(sum * d);
        }
        WriteTrailers(y, n);
    }

    /// <summary>Bytes of an activation row with its two float trailers.</summary>
    public static long ActivationRowBytes(long n) => n / Q8_1Format.BlockSize * (Q8_1Format.TypeSize + 2 * sizeof(float));

    /// <summary>The float32 d per block of an activation row of <paramref name="nb"/> blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float* BlockScales(byte* row, int nb) => (float*)(row + (nint)nb * Q8_1Format.TypeSize);

    /// <summary>The float32 s (= fp16 d·Σqs, as the block holds it) per block of an activation row of <paramref name="nb"/> blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float* BlockSums(byte* row, int nb) => (float*)(row + (nint)nb * (Q8_1Format.TypeSize + sizeof(float)));

    private static void WriteTrailers(byte* y, int n)
    {
        int nb = n / Q8_1Format.BlockSize;
        float* d = BlockScales(y, nb), s = BlockSums(y, nb);
        for (int i = 0; i < nb; i++)
        {
            byte* yb = y + (nint)i * Q8_1Format.TypeSize;
            d[i] = HalfBits.ToFloat(*(ushort*)(yb + Q8_1Format.DOffset));
            s[i] = HalfBits.ToFloat(*(ushort*)(yb + Q8_1Format.SOffset));
        }
    }
}
