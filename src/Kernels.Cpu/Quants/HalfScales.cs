using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Infer.Kernels.Cpu.Quants;

/// <summary>
/// Block scales stored as fp16 in the repacked layouts, converted 8 at a time in 4-5 instructions (no F16C in .NET here):
/// the half's sign, exponent and mantissa are moved to the float bit positions but the exponent is left unbiased, which is the
/// value times 2^-112 (exact for every finite half, subnormals included). The caller multiplies by a factor that carries 2^112
/// (<see cref="Unbias"/>): x·2^-112 · (y·2^112) rounds once, to the same float as x·y (both scalings by powers of two are exact).
/// </summary>
internal static unsafe class HalfScales
{
    /// <summary>2^112: the exponent bias difference between float (127) and half (15).</summary>
    public const float Unbias = 5.192296858534828e33f;

    /// <summary>8 halves at <paramref name="h"/> → their values × 2^-112 (Inf and NaN halves come out as Inf and NaN after the × 2^112).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8Scaled(ushort* h) => Load8Scaled(h, Constants.Create());

    /// <summary><see cref="Load8Scaled(ushort*)"/> with the masks passed in, so a loop keeps them in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8Scaled(ushort* h, in Constants c)
    {
        // sign-extended: bit 15 (sign) fills bits 31..15; after << 13 bits 30..28 are sign copies, cleared by the mask
        Vector256<int> s = Avx2.ConvertToVector256Int32((short*)h);
        Vector256<int> bits = (s << 13) & c.SignExponentMantissa;
        // exponent 31 (Inf/NaN): set all float exponent bits so the value stays Inf/NaN after scaling
        Vector256<int> infNan = Vector256.Equals(bits & c.HalfExponent, c.HalfExponent);
        return (bits | (infNan & c.FloatExponent)).AsSingle();
    }

    /// <summary>
    /// The masks of <see cref="Load8Scaled(ushort*, in Constants)"/> and the nibble masks of the 4-bit kernels, created once per
    /// call.
    /// </summary>
    public readonly struct Constants
    {
        public Vector256<int> SignExponentMantissa { get; init; }
        public Vector256<int> HalfExponent { get; init; }
        public Vector256<int> FloatExponent { get; init; }
        public Vector256<byte> LowNibble { get; init; }
        public Vector256<byte> HighNibble { get; init; }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Constants Create() => new()
        {
            SignExponentMantissa = Vector256.Create(unchecked((int)0x8FFFFFFF)),
            HalfExponent = Vector256.Create(0x0F800000),
            FloatExponent = Vector256.Create(0x7F800000),
            LowNibble = Vector256.Create((byte)0x0F),
            HighNibble = Vector256.Create((byte)0xF0),
        };
    }
}
