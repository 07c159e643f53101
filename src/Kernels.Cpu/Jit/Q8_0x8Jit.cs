using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Jit;

/// <summary>
/// Q8_0 GEMM tiles with 512-bit <c>vpdpbusd</c> (AVX512-VNNI), which .NET 10 cannot emit (its <c>AvxVnni</c> is the 256-bit VEX
/// form only, and AMD Zen 4 has no VEX form at all), generated as machine code at load, as oneDNN's JIT kernels are.
/// Signed int8 weights against signed int8 activations leave no int16 headroom for the AVX-512BW tiles (<c>vpmaddubsw</c> needs
/// a <c>vpmaddwd</c> per product pair), so every other Q8_0 tile does 32 products per multiply instruction; these do 64.
/// <para>
/// The tile has <see cref="Q8_0x8.Tile16x6Vnni512"/>'s arguments: 16 rows (two groups of the <see cref="Q8_0x8"/> layout, the
/// second at group + groupStride) times <c>tokens</c> activation rows (4, 8 or 12) of <see cref="Q8_0.QuantizeActivationsVnni"/>
/// (block sums −128·Σy) → y[t·yStride + r]. Per block each token's int32 sums (zmm0..) start at −128·Σy, take eight
/// <c>vpdpbusd</c> of the 16 rows' 4 bytes (one zmm: the two groups' 32-byte vectors joined) against the token's 4 bytes
/// broadcast from memory, then are converted and added into float sums (zmm12..) times the rows' scales · the token's scale.
/// With <c>biased</c> false the weights are the signed layout (<see cref="Q8_0x8.RepackSigned"/>) and each loaded vector is
/// xor'ed with 0x80 (w + 128, once per weight vector, shared by every token).
/// </para>
/// <para>
/// System V AMD64 calling convention (Linux x64): n = edi, group = rsi, groupStride = rdx, scales = rcx, a = r8, aStride = r9,
/// y = [rsp + 8], yStride = [rsp + 16]. The block count is kept on the stack; rbx, rbp and r12-r15 are saved.
/// </para>
/// </summary>
internal static unsafe class Q8_0x8Jit
{
    /// <summary>Whether this process can run the generated tiles: Linux x64, AVX-512F/BW enabled in .NET, and AVX512-VNNI in CPUID.</summary>
    public static bool IsSupported { get; } = Detect();

    /// <summary>Why <see cref="IsSupported"/> is false ("" when it is true).</summary>
    public static string Unsupported { get; private set; } = "";

    private static bool Detect()
    {
        if (Environment.GetEnvironmentVariable("INFER_CPU_JIT") == "0") return Fail("INFER_CPU_JIT=0");
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            return Fail("generated kernels are built for Linux x64 only");
        // .NET's own switches (DOTNET_EnableAVX512=0) turn these off; the OS saves zmm state where they are on
        if (!Avx512F.IsSupported || !Avx512BW.IsSupported) return Fail("no AVX-512F/BW");
        if (!X86Base.IsSupported || (X86Base.CpuId(7, 0).Ecx & (1 << 11)) == 0) return Fail("no AVX512-VNNI");
        return true;

        static bool Fail(string why)
        {
            Unsupported = why;
            return false;
        }
    }

    /// <summary>Tokens per call of the main tiles; the tails take 4.</summary>
    public const int TileTokens = 12;

    /// <summary>Whether the tiles were generated and committed to executable memory (false where <see cref="IsSupported"/> is).</summary>
    public static bool Ready => IsSupported && Code.Ready;

    /// <summary>
    /// The main and tail tiles for the VNNI layout (<see cref="Q8_0x8.Repack(byte*, nint, byte*, int)"/>): managed entries for the
    /// kernel tables.
    /// </summary>
    public static void Biased(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y, nint yStride) =>
        Code.Biased(n, group, groupStride, scales, a, aStride, y, yStride);

    /// <inheritdoc cref="Biased"/>
    public static void BiasedTail(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y, nint yStride) =>
        Code.BiasedTail(n, group, groupStride, scales, a, aStride, y, yStride);

    /// <summary>The main and tail tiles for the signed layout (<see cref="Q8_0x8.RepackSigned"/>).</summary>
    public static void Signed(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y, nint yStride) =>
        Code.Signed(n, group, groupStride, scales, a, aStride, y, yStride);

    /// <inheritdoc cref="Signed"/>
    public static void SignedTail(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y, nint yStride) =>
        Code.SignedTail(n, group, groupStride, scales, a, aStride, y, yStride);

    /// <summary>The generated functions, made on first use (a few KiB of code for the life of the process).</summary>
    private static class Code
    {
        // pure computation with no calls back into the runtime, at most a few microseconds a call: no GC transition
        public static readonly delegate* unmanaged[SuppressGCTransition]<int, byte*, nint, float*, byte*, nint, float*, nint, void>
            Biased = Commit(TileTokens, true), BiasedTail = Commit(4, true), Signed = Commit(TileTokens, false),
            SignedTail = Commit(4, false);

        public static readonly bool Ready = Biased != null && BiasedTail != null && Signed != null && SignedTail != null;

        private static delegate* unmanaged[SuppressGCTransition]<int, byte*, nint, float*, byte*, nint, float*, nint, void> Commit(
            int tokens, bool biased) =>
            IsSupported
                ? (delegate* unmanaged[SuppressGCTransition]<int, byte*, nint, float*, byte*, nint, float*, nint, void>)
                    ExecutableMemory.Commit(Generate(tokens, biased))
                : null;
    }

    // registers: the tokens' int32 sums zmm0.., their float sums zmm12.., then the weights, row scales, a temporary, 0x80 bytes
    private const int FloatSums = 12, Weights = 24, RowScales = 25, Temp = 26, Bias = 27;

    /// <summary>The machine code of the tile (public for the encoding tests).</summary>
    public static byte[] Generate(int tokens, bool biased)
    {
        if (tokens is not (4 or 8 or 12)) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, "4, 8 or 12 tokens");
        int quads = tokens / 4;
        const int blockBytes = Q8_0Format.TypeSize, quants = Q8_0Format.QsOffset, groupBlock = Q8_0x8.GroupBlockBytes;
        var asm = new X64Assembler();
        // per group of four tokens: pointers to its first token's quants, block sums and block scales (each advances by block);
        // the other three tokens are at + aStride, + 2·aStride, + 3·aStride
        Gpr[] q = [Gpr.R8, Gpr.R10, Gpr.R11], s = [Gpr.Rbx, Gpr.Rbp, Gpr.R12], d = [Gpr.R13, Gpr.R14, Gpr.R15];
        const Gpr group = Gpr.Rsi, groupStride = Gpr.Rdx, scales = Gpr.Rcx, stride = Gpr.R9, stride3 = Gpr.Rax, nb = Gpr.Rdi;
        Gpr[] saved = [Gpr.Rbx, Gpr.Rbp, Gpr.R12, Gpr.R13, Gpr.R14, Gpr.R15];
        foreach (var r in saved) asm.Push(r);
        if (!biased)
        {
            asm.Mov32(stride3, 0x80808080);
            asm.VpBroadcastD(Bias, stride3);
        }
        asm.MovSxd(nb, nb);
        asm.Sar(nb, 5); // n / 32 blocks
        asm.Push(nb); // the loop's count, at [rsp]
        asm.IMul(s[0], nb, blockBytes);
        asm.Add(s[0], Gpr.R8); // a + nb·34: the block sums
        asm.Lea(d[0], new Mem(s[0], nb, 4)); // + nb·4: the block scales
        asm.Add(Gpr.R8, quants); // q[0] = a + 2: the first block's quants
        asm.Lea(stride3, new Mem(stride, stride, 2));
        for (int j = 1; j < quads; j++)
        {
            asm.Lea(q[j], new Mem(q[j - 1], stride, 4));
            asm.Lea(s[j], new Mem(s[j - 1], stride, 4));
            asm.Lea(d[j], new Mem(d[j - 1], stride, 4));
        }
        asm.Add(group, 8 * sizeof(ushort)); // past the 8 scales: V_0
        for (int t = 0; t < tokens; t++) asm.VpXorD(FloatSums + t, FloatSums + t, FloatSums + t);
        int done = asm.NewLabel(), loop = asm.NewLabel();
        asm.Test(nb, nb);
        asm.Jle(done);

        asm.Bind(loop);
        for (int t = 0; t < tokens; t++) asm.VpBroadcastD(t, Token(s[t / 4], t)); // −128·Σy
        for (int k = 0; k < 8; k++)
        {
            asm.VMovDqu32Ymm(Weights, new Mem(group, Disp: 32 * k));
            asm.VInsertI64x4(Weights, Weights, new Mem(group, groupStride, 1, 32 * k), 1);
            if (!biased) asm.VpXorD(Weights, Weights, Bias);
            for (int t = 0; t < tokens; t++) asm.VpDpBusdBcst(t, Weights, Token(q[t / 4], t) + 4 * k);
        }
        asm.VMovUps(RowScales, new Mem(scales));
        for (int t = 0; t < tokens; t++)
        {
            asm.VMulPsBcst(Temp, RowScales, Token(d[t / 4], t)); // dx · dy
            asm.VCvtDq2Ps(t, t);
            asm.VFmAdd231Ps(FloatSums + t, t, Temp);
        }
        asm.Add(group, groupBlock);
        asm.Add(scales, 16 * sizeof(float));
        for (int j = 0; j < quads; j++)
        {
            asm.Add(q[j], blockBytes);
            asm.Add(s[j], sizeof(int));
            asm.Add(d[j], sizeof(float));
        }
        asm.DecQword(new Mem(Gpr.Rsp));
        asm.Jnz(loop);

        asm.Bind(done);
        asm.Pop(nb);
        // after the 6 saved registers: return address at [rsp + 48], y at + 56, yStride at + 64
        asm.Mov(Gpr.Rax, new Mem(Gpr.Rsp, Disp: 56));
        asm.Mov(Gpr.Rdx, new Mem(Gpr.Rsp, Disp: 64));
        asm.Shl(Gpr.Rdx, 2); // floats → bytes
        for (int t = 0; t < tokens; t++)
        {
            asm.VMovUps(new Mem(Gpr.Rax), FloatSums + t);
            if (t + 1 < tokens) asm.Add(Gpr.Rax, Gpr.Rdx);
        }
        for (int i = saved.Length - 1; i >= 0; i--) asm.Pop(saved[i]);
        asm.VZeroUpper();
        asm.Ret();
        return asm.ToArray();

        // token t of its group of four, relative to that group's pointer p
        static Mem Token(Gpr p, int t) => (t % 4) switch
        {
            0 => new Mem(p),
            1 => new Mem(p, stride, 1),
            2 => new Mem(p, stride, 2),
            _ => new Mem(p, stride3, 1),
        };
    }
}
