using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Jit;

/// <summary>The weight layouts <see cref="GeneratedTiles"/> has tiles for.</summary>
internal enum TileFormat
{
    /// <summary>Q8_0, the VNNI layout (<see cref="Q8_0x8.Repack(byte*, nint, byte*, int)"/>: w + 128).</summary>
    Q8_0Biased,

    /// <summary>Q8_0, the signed layout (<see cref="Q8_0x8.RepackSigned"/>): each weight vector is xor'ed with 0x80 after its load.</summary>
    Q8_0Signed,

    /// <summary>Q4_0 (<see cref="Q4_0x8"/>): nibbles q in 0..15, low and high halves unpacked after the load.</summary>
    Q4_0,

    /// <summary>Q4_K (<see cref="Q4_Kx8"/>) against Q8_K activations (see <see cref="GeneratedTiles.GenerateK"/>).</summary>
    Q4_K,

    /// <summary>Q5_K (<see cref="Q5_Kx8"/>) against Q8_K activations (see <see cref="GeneratedTiles.GenerateK"/>).</summary>
    Q5_K,
}

/// <summary>
/// GEMM tiles with 512-bit <c>vpdpbusd</c> (AVX512-VNNI), which .NET 10 cannot emit (its <c>AvxVnni</c> is the 256-bit VEX form
/// only, and AMD Zen 4 has no VEX form at all), generated as machine code at load, as oneDNN's JIT kernels are. For Q8_0, signed
/// int8 weights against signed int8 activations leave the AVX-512BW tiles no int16 headroom (a <c>vpmaddwd</c> per
/// <c>vpmaddubsw</c>): 32 products per multiply instruction, as 256-bit <c>vpdpbusd</c>; these do 64. For Q4_0 the AVX-512BW tile
/// does 64 too, but needs an add, and a broadcast per 4 activation bytes, beside each; here the broadcast is the instruction's
/// memory operand.
/// <para>
/// A tile has <see cref="Q8_0x8.Tile16x6Vnni512"/>'s arguments: 16 rows (two groups of the 8-row layout, the second at
/// group + groupStride) times <c>tokens</c> activation rows (4, 8 or 12) of Q8_0 blocks with block sums and scales → y[t·yStride + r].
/// Per block each token's int32 sums (zmm0..) start at the layout's bias term (Q8_0: −128·Σy, as
/// <see cref="Q8_0.QuantizeActivationsVnni"/> stores it; Q4_0: −8 times the stored Σy), take eight <c>vpdpbusd</c> of the 16 rows'
/// 4 unsigned bytes (one zmm: the two groups' 32-byte vectors joined) against the token's 4 bytes broadcast from memory, then are
/// converted and added into float sums (zmm12..) times the rows' scales (<c>scales</c>, 16 floats a block) · the token's scale.
/// The Q4_K and Q5_K tiles (<see cref="GenerateK"/>) have the same arguments over Q8_K activation rows.
/// </para>
/// <para>
/// System V AMD64 calling convention (Linux x64): n = edi, group = rsi, groupStride = rdx, scales = rcx, a = r8, aStride = r9,
/// y = [rsp + 8], yStride = [rsp + 16]. The block count is kept on the stack; rbx, rbp and r12-r15 are saved.
/// </para>
/// </summary>
internal static unsafe partial class GeneratedTiles
{
    private static readonly string s_unsupported = Detect();

    /// <summary>Whether this process can run the generated tiles: Linux x64, AVX-512F/BW enabled in .NET, and AVX512-VNNI in CPUID.</summary>
    public static bool IsSupported => s_unsupported.Length == 0;

    /// <summary>Why <see cref="IsSupported"/> is false ("" when it is true).</summary>
    public static string Unsupported => s_unsupported;

    private static string Detect()
    {
        if (Environment.GetEnvironmentVariable("INFER_CPU_JIT") == "0") return "INFER_CPU_JIT=0";
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            return "generated kernels are built for Linux x64 only";
        // .NET's own switches (DOTNET_EnableAVX512=0) turn these off; the OS saves zmm state where they are on
        if (!Avx512F.IsSupported || !Avx512BW.IsSupported) return "no AVX-512F/BW";
        if (!X86Base.IsSupported || (X86Base.CpuId(7, 0).Ecx & (1 << 11)) == 0) return "no AVX512-VNNI";
        return "";
    }

    /// <summary>Tokens per call of the main tiles; the tails take 4.</summary>
    public const int TileTokens = 12;

    /// <summary>Whether the tiles were generated and committed to executable memory (false where <see cref="IsSupported"/> is).</summary>
    public static bool Ready => IsSupported && Code.Ready;

    /// <summary>
    /// The main and tail tiles of each <see cref="TileFormat"/>: managed entries for the kernel tables (the generated code is made on
    /// the first call of any).
    /// </summary>
    public static void Q8_0Biased(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y, nint yStride) =>
        Code.Q8_0Biased(n, group, groupStride, scales, a, aStride, y, yStride);

    /// <inheritdoc cref="Q8_0Biased"/>
    public static void Q8_0BiasedTail(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y,
        nint yStride) => Code.Q8_0BiasedTail(n, group, groupStride, scales, a, aStride, y, yStride);

    /// <inheritdoc cref="Q8_0Biased"/>
    public static void Q8_0Signed(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y, nint yStride) =>
        Code.Q8_0Signed(n, group, groupStride, scales, a, aStride, y, yStride);

    /// <inheritdoc cref="Q8_0Biased"/>
    public static void Q8_0SignedTail(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y,
        nint yStride) => Code.Q8_0SignedTail(n, group, groupStride, scales, a, aStride, y, yStride);

    /// <inheritdoc cref="Q8_0Biased"/>
    public static void Q4_0(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y, nint yStride) =>
        Code.Q4_0(n, group, groupStride, scales, a, aStride, y, yStride);

    /// <inheritdoc cref="Q8_0Biased"/>
    public static void Q4_0Tail(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y, nint yStride) =>
        Code.Q4_0Tail(n, group, groupStride, scales, a, aStride, y, yStride);

    /// <inheritdoc cref="Q8_0Biased"/>
    public static void Q4_K(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y, nint yStride) =>
        Code.Q4_K(n, group, groupStride, scales, a, aStride, y, yStride);

    /// <inheritdoc cref="Q8_0Biased"/>
    public static void Q4_KTail(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y, nint yStride) =>
        Code.Q4_KTail(n, group, groupStride, scales, a, aStride, y, yStride);

    /// <inheritdoc cref="Q8_0Biased"/>
    public static void Q5_K(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y, nint yStride) =>
        Code.Q5_K(n, group, groupStride, scales, a, aStride, y, yStride);

    /// <inheritdoc cref="Q8_0Biased"/>
    public static void Q5_KTail(int n, byte* group, nint groupStride, float* scales, byte* a, nint aStride, float* y, nint yStride) =>
        Code.Q5_KTail(n, group, groupStride, scales, a, aStride, y, yStride);

    /// <summary>The generated functions, made on first use (a few KiB of code for the life of the process).</summary>
    private static class Code
    {
        // pure computation with no calls back into the runtime, at most a few microseconds a call: no GC transition
        public static readonly delegate* unmanaged[SuppressGCTransition]<int, byte*, nint, float*, byte*, nint, float*, nint, void>
            Q8_0Biased = Commit(TileFormat.Q8_0Biased, TileTokens), Q8_0BiasedTail = Commit(TileFormat.Q8_0Biased, 4),
            Q8_0Signed = Commit(TileFormat.Q8_0Signed, TileTokens), Q8_0SignedTail = Commit(TileFormat.Q8_0Signed, 4),
            Q4_0 = Commit(TileFormat.Q4_0, TileTokens), Q4_0Tail = Commit(TileFormat.Q4_0, 4),
            Q4_K = Commit(TileFormat.Q4_K, KTileTokens), Q4_KTail = Commit(TileFormat.Q4_K, 4),
            Q5_K = Commit(TileFormat.Q5_K, KTileTokens), Q5_KTail = Commit(TileFormat.Q5_K, 4);

        public static readonly bool Ready = Q8_0Biased != null && Q8_0BiasedTail != null && Q8_0Signed != null && Q8_0SignedTail != null
            && Q4_0 != null && Q4_0Tail != null && Q4_K != null && Q4_KTail != null && Q5_K != null && Q5_KTail != null;

        private static delegate* unmanaged[SuppressGCTransition]<int, byte*, nint, float*, byte*, nint, float*, nint, void> Commit(
            TileFormat format, int tokens) =>
            IsSupported
                ? (delegate* unmanaged[SuppressGCTransition]<int, byte*, nint, float*, byte*, nint, float*, nint, void>)
                    ExecutableMemory.Commit(Generate(format, tokens))
                : null;
    }

    // registers: the tokens' int32 sums zmm0.., their float sums zmm12.., then the weights (two), the row scales, a temporary,
    // the format's byte constant (0x80 or 0x0F) and Q4_0's −8
    private const int FloatSums = 12, Weights = 24, Weights2 = 28, RowScales = 25, Temp = 26, Bytes = 27, MinusEight = 29;

    /// <summary>The machine code of a tile (internal for the tests).</summary>
    public static byte[] Generate(TileFormat format, int tokens)
    {
        if (format is TileFormat.Q4_K or TileFormat.Q5_K) return GenerateK(tokens, format == TileFormat.Q5_K);
        if (tokens is not (4 or 8 or 12)) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, "4, 8 or 12 tokens");
        int quads = tokens / 4;
        bool q4 = format == TileFormat.Q4_0;
        int groupBlock = q4 ? Q4_0x8.GroupBlockBytes : Q8_0x8.GroupBlockBytes;
        const int blockBytes = Q8_0Format.TypeSize, quants = Q8_0Format.QsOffset;
        var asm = new X64Assembler();
        // per group of four tokens: pointers to its first token's quants, block sums and block scales (each advances by block);
        // the other three tokens are at + aStride, + 2·aStride, + 3·aStride
        Gpr[] q = [Gpr.R8, Gpr.R10, Gpr.R11], s = [Gpr.Rbx, Gpr.Rbp, Gpr.R12], d = [Gpr.R13, Gpr.R14, Gpr.R15];
        const Gpr group = Gpr.Rsi, scales = Gpr.Rcx, stride = Gpr.R9, stride3 = Gpr.Rax, nb = Gpr.Rdi; // the second group at rsi + rdx
        foreach (var r in Saved) asm.Push(r);
        if (format != TileFormat.Q8_0Biased)
        {
            asm.Mov32(stride3, q4 ? 0x0F0F0F0Fu : 0x80808080u);
            asm.VpBroadcastD(Bytes, stride3);
        }
        if (q4)
        {
            asm.Mov32(stride3, unchecked((uint)-8));
            asm.VpBroadcastD(MinusEight, stride3);
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
        asm.Add(group, 8 * sizeof(ushort)); // past the 8 scales: the first quant vector
        for (int t = 0; t < tokens; t++) asm.VpXorD(FloatSums + t, FloatSums + t, FloatSums + t);
        int done = asm.NewLabel(), loop = asm.NewLabel();
        asm.Test(nb, nb);
        asm.Jle(done);

        asm.Bind(loop);
        for (int t = 0; t < tokens; t++)
        {
            if (q4) asm.VpMullDBcst(t, MinusEight, Token(s[t / 4], t)); // −8·Σy
            else asm.VpBroadcastD(t, Token(s[t / 4], t)); // −128·Σy
        }
        if (q4)
        {
            // vector j: byte 4r + e holds element 4j + e (low nibble) and 16 + 4j + e (high nibble) of row r
            for (int j = 0; j < 4; j++)
            {
                LoadPair(asm, Weights, 32 * j);
                asm.VpAndD(Weights2, Weights, Bytes);
                asm.VpSrlW(Weights, Weights, 4);
                asm.VpAndD(Weights, Weights, Bytes);
                Dots(Weights2, 4 * j);
                Dots(Weights, 16 + 4 * j);
            }
        }
        else
        {
            // vector k: byte 4r + e holds element 4k + e of row r
            for (int k = 0; k < 8; k++)
            {
                LoadPair(asm, Weights, 32 * k);
                if (format == TileFormat.Q8_0Signed) asm.VpXorD(Weights, Weights, Bytes);
                Dots(Weights, 4 * k);
            }
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
        return Finish(asm, tokens, FloatSums);

        // every token's sums += the weights' bytes · the token's 4 activation bytes at this offset into its block's quants
        void Dots(int weights, int offset)
        {
            for (int t = 0; t < tokens; t++) asm.VpDpBusdBcst(t, weights, Token(q[t / 4], t) + offset);
        }

    }

    /// <summary>The registers a tile saves (System V callee-saved).</summary>
    private static readonly Gpr[] Saved = [Gpr.Rbx, Gpr.Rbp, Gpr.R12, Gpr.R13, Gpr.R14, Gpr.R15];

    /// <summary>
    /// Every tile's end, at its loop's exit: the count off the stack, the float sums (registers <paramref name="sums"/>.., one per
    /// token) stored to y, <see cref="Saved"/> restored; the machine code.
    /// </summary>
    private static byte[] Finish(X64Assembler asm, int tokens, int sums)
    {
        asm.Pop(Gpr.Rdi);
        // after the 6 saved registers: return address at [rsp + 48], y at + 56, yStride at + 64
        asm.Mov(Gpr.Rax, new Mem(Gpr.Rsp, Disp: 56));
        asm.Mov(Gpr.Rdx, new Mem(Gpr.Rsp, Disp: 64));
        asm.Shl(Gpr.Rdx, 2); // floats → bytes
        for (int t = 0; t < tokens; t++)
        {
            asm.VMovUps(new Mem(Gpr.Rax), sums + t);
            if (t + 1 < tokens) asm.Add(Gpr.Rax, Gpr.Rdx);
        }
        for (int i = Saved.Length - 1; i >= 0; i--) asm.Pop(Saved[i]);
        asm.VZeroUpper();
        asm.Ret();
        return asm.ToArray();
    }

    /// <summary>
    /// The two groups' 32-byte vectors at this offset from the group pointer (rsi; the second group at + rdx), joined into a
    /// register (rows 0-7, then 8-15).
    /// </summary>
    private static void LoadPair(X64Assembler asm, int zmm, int offset)
    {
        asm.VMovDqu32Ymm(zmm, new Mem(Gpr.Rsi, Disp: offset));
        asm.VInsertI64x4(zmm, zmm, new Mem(Gpr.Rsi, Gpr.Rdx, 1, offset), 1);
    }

    /// <summary>Token t of its group of four, relative to that group's pointer p (the activation stride in r9, 3 · stride in rax).</summary>
    private static Mem Token(Gpr p, int t) => (t % 4) switch
    {
        0 => new Mem(p),
        1 => new Mem(p, Gpr.R9, 1),
        2 => new Mem(p, Gpr.R9, 2),
        _ => new Mem(p, Gpr.Rax, 1),
    };
}
