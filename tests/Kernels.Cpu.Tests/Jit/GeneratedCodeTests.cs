using System.Runtime.InteropServices;
using Infer.Kernels.Cpu.Jit;
using Infer.Kernels.Cpu.Quants;
using Infer.Kernels.Cpu.Tests.Quants;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;

namespace Infer.Kernels.Cpu.Tests.Jit;

/// <summary>
/// The generated machine code: each instruction form <see cref="X64Assembler"/> writes, byte for byte against GNU as 2.40
/// (<c>as --64</c>, Intel syntax: the shortest displacements, EVEX's 8-bit ones in units of the operand size included), and the
/// generated tiles against the scalar reference dots.
/// </summary>
public unsafe class GeneratedCodeTests
{
    private static readonly (string Asm, Action<X64Assembler> Emit, string Bytes)[] Encodings =
    [
        ("push rbx", a => a.Push(Gpr.Rbx), "53"),
        ("push r15", a => a.Push(Gpr.R15), "41 57"),
        ("pop r12", a => a.Pop(Gpr.R12), "41 5c"),
        ("pop rbp", a => a.Pop(Gpr.Rbp), "5d"),
        ("ret", a => a.Ret(), "c3"),
        ("vzeroupper", a => a.VZeroUpper(), "c5 f8 77"),
        ("mov rax, rdx", a => a.Mov(Gpr.Rax, Gpr.Rdx), "48 89 d0"),
        ("mov r11, rsp", a => a.Mov(Gpr.R11, Gpr.Rsp), "49 89 e3"),
        ("mov rax, [rsp+56]", a => a.Mov(Gpr.Rax, new Mem(Gpr.Rsp, Disp: 56)), "48 8b 44 24 38"),
        ("mov r9, [r12+8]", a => a.Mov(Gpr.R9, new Mem(Gpr.R12, Disp: 8)), "4d 8b 4c 24 08"),
        ("mov eax, 0x80808080", a => a.Mov32(Gpr.Rax, 0x80808080), "b8 80 80 80 80"),
        ("mov r10d, 0x80808080", a => a.Mov32(Gpr.R10, 0x80808080), "41 ba 80 80 80 80"),
        ("movsxd rdi, edi", a => a.MovSxd(Gpr.Rdi, Gpr.Rdi), "48 63 ff"),
        ("movsxd r8, r9d", a => a.MovSxd(Gpr.R8, Gpr.R9), "4d 63 c1"),
        ("lea rax, [r9+r9*2]", a => a.Lea(Gpr.Rax, new Mem(Gpr.R9, Gpr.R9, 2)), "4b 8d 04 49"),
        ("lea r13, [rbx+rdi*4]", a => a.Lea(Gpr.R13, new Mem(Gpr.Rbx, Gpr.Rdi, 4)), "4c 8d 2c bb"),
        ("lea r12, [rbp+r9*4]", a => a.Lea(Gpr.R12, new Mem(Gpr.Rbp, Gpr.R9, 4)), "4e 8d 64 8d 00"),
        ("add rbx, r8", a => a.Add(Gpr.Rbx, Gpr.R8), "4c 01 c3"),
        ("add r8, rbx", a => a.Add(Gpr.R8, Gpr.Rbx), "49 01 d8"),
        ("add rsi, 272", a => a.Add(Gpr.Rsi, 272), "48 81 c6 10 01 00 00"),
        ("add r15, 0x100", a => a.Add(Gpr.R15, 0x100), "49 81 c7 00 01 00 00"),
        ("imul rbx, rdi, 0x122", a => a.IMul(Gpr.Rbx, Gpr.Rdi, 0x122), "48 69 df 22 01 00 00"),
        ("imul r10, r13, 0x90", a => a.IMul(Gpr.R10, Gpr.R13, 0x90), "4d 69 d5 90 00 00 00"),
        ("sar rdi, 5", a => a.Sar(Gpr.Rdi, 5), "48 c1 ff 05"),
        ("shl rdx, 2", a => a.Shl(Gpr.Rdx, 2), "48 c1 e2 02"),
        ("test rdi, rdi", a => a.Test(Gpr.Rdi, Gpr.Rdi), "48 85 ff"),
        ("dec qword [rsp]", a => a.DecQword(new Mem(Gpr.Rsp)), "48 ff 0c 24"),
        ("vpbroadcastd zmm0, [rbx]", a => a.VpBroadcastD(0, new Mem(Gpr.Rbx)), "62 f2 7d 48 58 03"),
        ("vpbroadcastd zmm11, [r12+rax+8]", a => a.VpBroadcastD(11, new Mem(Gpr.R12, Gpr.Rax, 1, 8)),
            "62 52 7d 48 58 5c 04 02"),
        ("vpbroadcastd zmm17, [r13+r9*2]", a => a.VpBroadcastD(17, new Mem(Gpr.R13, Gpr.R9, 2)), "62 82 7d 48 58 4c 4d 00"),
        ("vpbroadcastd zmm27, eax", a => a.VpBroadcastD(27, Gpr.Rax), "62 62 7d 48 7c d8"),
        ("vpbroadcastd zmm3, r10d", a => a.VpBroadcastD(3, Gpr.R10), "62 d2 7d 48 7c da"),
        ("vmovdqu32 ymm24, [rsi+32]", a => a.VMovDqu32Ymm(24, new Mem(Gpr.Rsi, Disp: 32)), "62 61 7e 28 6f 46 01"),
        ("vmovdqu32 ymm5, [r12]", a => a.VMovDqu32Ymm(5, new Mem(Gpr.R12)), "62 d1 7e 28 6f 2c 24"),
        ("vinserti64x4 zmm24, zmm24, [rsi+rdx+0xe0], 1", a => a.VInsertI64x4(24, 24, new Mem(Gpr.Rsi, Gpr.Rdx, 1, 0xE0), 1),
            "62 63 bd 40 3a 44 16 07 01"),
        ("vinserti64x4 zmm2, zmm19, [r13+r14], 1", a => a.VInsertI64x4(2, 19, new Mem(Gpr.R13, Gpr.R14), 1),
            "62 93 e5 40 3a 54 35 00 01"),
        ("vpxord zmm24, zmm24, zmm27", a => a.VpXorD(24, 24, 27), "62 01 3d 40 ef c3"),
        ("vpxord zmm12, zmm12, zmm12", a => a.VpXorD(12, 12, 12), "62 51 1d 48 ef e4"),
        ("vpxord zmm1, zmm30, zmm9", a => a.VpXorD(1, 30, 9), "62 d1 0d 40 ef c9"),
        ("vpandd zmm28, zmm24, zmm27", a => a.VpAndD(28, 24, 27), "62 01 3d 40 db e3"),
        ("vpandd zmm3, zmm17, zmm9", a => a.VpAndD(3, 17, 9), "62 d1 75 40 db d9"),
        ("vpsrlw zmm24, zmm24, 4", a => a.VpSrlW(24, 24, 4), "62 91 3d 40 71 d0 04"),
        ("vpsrlw zmm5, zmm19, 4", a => a.VpSrlW(5, 19, 4), "62 b1 55 48 71 d3 04"),
        ("vpsllw zmm31, zmm31, 3", a => a.VpSllW(31, 31, 3), "62 91 05 40 71 f7 03"),
        ("vpsllw zmm5, zmm19, 1", a => a.VpSllW(5, 19, 1), "62 b1 55 48 71 f3 01"),
        ("vpord zmm24, zmm24, zmm31", a => a.VpOrD(24, 24, 31), "62 01 3d 40 eb c7"),
        ("vpord zmm3, zmm17, zmm9", a => a.VpOrD(3, 17, 9), "62 d1 75 40 eb d9"),
        ("vpmulld zmm0, zmm29, [rbx]{1to16}", a => a.VpMullDBcst(0, 29, new Mem(Gpr.Rbx)), "62 f2 15 50 40 03"),
        ("vpmulld zmm11, zmm29, [r12+rax]{1to16}", a => a.VpMullDBcst(11, 29, new Mem(Gpr.R12, Gpr.Rax)), "62 52 15 50 40 1c 04"),
        ("vpmulld zmm17, zmm2, [r13+r9*2+8]{1to16}", a => a.VpMullDBcst(17, 2, new Mem(Gpr.R13, Gpr.R9, 2, 8)),
            "62 82 6d 58 40 4c 4d 02"),
        ("vpdpbusd zmm0, zmm24, [r8+4]{1to16}", a => a.VpDpBusdBcst(0, 24, new Mem(Gpr.R8, Disp: 4)), "62 d2 3d 50 50 40 01"),
        ("vpdpbusd zmm11, zmm24, [r11+rax+0x1c]{1to16}", a => a.VpDpBusdBcst(11, 24, new Mem(Gpr.R11, Gpr.Rax, 1, 0x1C)),
            "62 52 3d 50 50 5c 03 07"),
        ("vpdpbusd zmm20, zmm3, [rbp+r9*2]{1to16}", a => a.VpDpBusdBcst(20, 3, new Mem(Gpr.Rbp, Gpr.R9, 2)),
            "62 a2 65 58 50 64 4d 00"),
        ("vpdpbusd zmm31, zmm15, zmm16", a => a.VpDpBusd(31, 15, 16), "62 22 05 48 50 f8"),
        ("vmovups zmm25, [rcx]", a => a.VMovUps(25, new Mem(Gpr.Rcx)), "62 61 7c 48 10 09"),
        ("vmovups zmm18, [r12+64]", a => a.VMovUps(18, new Mem(Gpr.R12, Disp: 64)), "62 c1 7c 48 10 54 24 01"),
        ("vmovups [rax], zmm23", a => a.VMovUps(new Mem(Gpr.Rax), 23), "62 e1 7c 48 11 38"),
        ("vmovups [r13+r9+8], zmm4", a => a.VMovUps(new Mem(Gpr.R13, Gpr.R9, 1, 8), 4), "62 91 7c 48 11 a4 0d 08 00 00 00"),
        ("vmulps zmm26, zmm25, [r15+rax]{1to16}", a => a.VMulPsBcst(26, 25, new Mem(Gpr.R15, Gpr.Rax)),
            "62 41 34 50 59 14 07"),
        ("vmulps zmm7, zmm16, [rsp+4]{1to16}", a => a.VMulPsBcst(7, 16, new Mem(Gpr.Rsp, Disp: 4)), "62 f1 7c 50 59 7c 24 01"),
        ("vcvtdq2ps zmm11, zmm11", a => a.VCvtDq2Ps(11, 11), "62 51 7c 48 5b db"),
        ("vcvtdq2ps zmm16, zmm3", a => a.VCvtDq2Ps(16, 3), "62 e1 7c 48 5b c3"),
        ("vfmadd231ps zmm23, zmm11, zmm26", a => a.VFmAdd231Ps(23, 11, 26), "62 82 25 48 b8 fa"),
        ("vfmadd231ps zmm1, zmm17, zmm8", a => a.VFmAdd231Ps(1, 17, 8), "62 d2 75 40 b8 c8"),
        ("vpdpwssd zmm0, zmm28, [r8+0x104]{1to16}", a => a.VpDpWssdBcst(0, 28, new Mem(Gpr.R8, Disp: 0x104)), "62 d2 1d 50 52 40 41"),
        ("vpdpwssd zmm7, zmm28, [r10+rax+0x11c]{1to16}", a => a.VpDpWssdBcst(7, 28, new Mem(Gpr.R10, Gpr.Rax, 1, 0x11C)),
            "62 d2 1d 50 52 7c 02 47"),
        ("vfnmadd231ps zmm29, zmm0, zmm31", a => a.VFnMAdd231Ps(29, 0, 31), "62 02 7d 48 bc ef"),
        ("vfnmadd231ps zmm3, zmm12, zmm20", a => a.VFnMAdd231Ps(3, 12, 20), "62 b2 1d 48 bc dc"),
    ];

    public static TheoryData<int> EncodingCases() => new(Enumerable.Range(0, Encodings.Length));

    [Theory]
    [MemberData(nameof(EncodingCases))]
    public void InstructionEncodingMatchesGnuAs(int index)
    {
        var (text, emit, bytes) = Encodings[index];
        var asm = new X64Assembler();
        emit(asm);
        Assert.True(Convert.ToHexString(asm.ToArray()) == bytes.Replace(" ", "").ToUpperInvariant(),
            $"{text}: {Convert.ToHexString(asm.ToArray())} vs GNU as {bytes}");
    }

    [Fact]
    public void BranchesReachTheirLabels()
    {
        var asm = new X64Assembler();
        int back = asm.NewLabel(), forward = asm.NewLabel();
        asm.Bind(back);
        asm.Ret(); // 1 byte
        asm.Jnz(back); // 6 bytes at 1: rel32 = 0 − 7
        asm.Jle(forward); // 6 bytes at 7: rel32 = 14 − 13
        asm.Ret();
        asm.Bind(forward);
        Assert.Equal("C30F85F9FFFFFF0F8E01000000C3", Convert.ToHexString(asm.ToArray()));
        var unbound = new X64Assembler();
        unbound.Jnz(unbound.NewLabel());
        Assert.Throws<InvalidOperationException>(() => unbound.ToArray());
    }

    [Fact]
    public void GeneratorRejectsOtherTileWidths()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => GeneratedTiles.Generate(TileFormat.Q8_0Biased, 6));
        Assert.Throws<ArgumentOutOfRangeException>(() => GeneratedTiles.Generate(TileFormat.Q4_0, 16));
        Assert.Throws<ArgumentOutOfRangeException>(() => GeneratedTiles.Generate(TileFormat.Q4_K, 6));
        Assert.Throws<ArgumentOutOfRangeException>(() => GeneratedTiles.Generate(TileFormat.Q5_K, 16));
    }

    /// <summary>Every <see cref="TileFormat"/> by name (the enum is internal) and width.</summary>
    public static TheoryData<string, int> TileCases()
    {
        var data = new TheoryData<string, int>();
        foreach (var format in Enum.GetNames<TileFormat>().Where(f => !f.EndsWith("_K", StringComparison.Ordinal))) // K-quants: below
            foreach (int tokens in new[] { 12, 8, 4 })
                data.Add(format, tokens);
        return data;
    }

    /// <summary>Integer sums are exact; only the float accumulation order differs (relative to Σ|w·a|), as for the other tiles.</summary>
    private const double DotRelTolerance = 2e-6;

    /// <summary>
    /// The generated tile of each layout and width against the scalar reference dot (<see cref="Q8_0.DotRef"/>,
    /// <see cref="Q4_0.DotRef"/>) over 1-16, 64 and 137 blocks, weights with quants at both ends of their range among random
    /// ones, the two groups apart (group stride) and the output strided (rows outside the tile's 16 must stay untouched).
    /// </summary>
    [Theory]
    [MemberData(nameof(TileCases))]
    public void GeneratedTileMatchesReference(string formatName, int tokens)
    {
        var format = Enum.Parse<TileFormat>(formatName);
        Assert.SkipUnless(GeneratedTiles.Ready, "no generated tiles here: " + QuantKernels.GeneratedUnavailable);
        var tile = (delegate* unmanaged[SuppressGCTransition]<int, byte*, nint, float*, byte*, nint, float*, nint, void>)
            ExecutableMemory.Commit(GeneratedTiles.Generate(format, tokens));
        Assert.True(tile != null);
        bool q4 = format == TileFormat.Q4_0;
        var type = q4 ? GgmlType.Q4_0 : GgmlType.Q8_0;
        int typeSize = q4 ? Q4_0Format.TypeSize : Q8_0Format.TypeSize;
        delegate*<byte*, nint, byte*, int, void> repack =
            q4 ? &Q4_0x8.Repack : format == TileFormat.Q8_0Biased ? &Q8_0x8.Repack : &Q8_0x8.RepackSigned;
        delegate*<int, byte*, nint, float*, void> tileScales = q4 ? &Q4_0x8.TileScales : &Q8_0x8.TileScales;
        // Q8_0 against −128·Σy block sums (the VNNI rows), Q4_0 against Σy (the plain ones)
        delegate*<float*, byte*, int, void> quantize = q4 ? &Q8_0.QuantizeActivationsFast : &Q8_0.QuantizeActivationsVnni;
        delegate*<int, byte*, byte*, float> reference = q4 ? &Q4_0.DotRef : &Q8_0.DotRef;
        var rng = new Random((int)format * 16 + tokens);
        foreach (int blocks in Enumerable.Range(1, 16).Concat([64, 137]))
        {
            int n = blocks * 32, rowBytes = blocks * typeSize;
            var plain = new byte[16 * rowBytes];
            for (int r = 0; r < 16; r++)
            {
                var x = new float[n];
                for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (r + 1);
                RowCodec.Quantize(type, x, plain.AsSpan(r * rowBytes, rowBytes));
            }
            // quants at both ends of the range: Q8_0 −128 (never written by ggml's quantizer, but a valid byte) and 127; Q4_0 0 and 15
            plain[2] = q4 ? (byte)0x0F : (byte)0x80;
            plain[rowBytes + 3] = q4 ? (byte)0xF0 : (byte)0x7F;
            int actBytes = n + n / 32 * (2 + 4 + 4) + 12;
            var act = new byte[tokens * actBytes];
            for (int c = 0; c < tokens; c++)
            {
                var x = new float[n];
                for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 4 - 2);
                fixed (float* px = x) fixed (byte* pa = &act[c * actBytes]) quantize(px, pa, n);
            }
            CheckTile(tile, format, tokens, n, plain, rowBytes, act, actBytes, blocks * 16 * sizeof(float), repack, tileScales, reference,
                type, GgmlType.Q8_0);
        }
    }

    public static TheoryData<string, int> KTileCases()
    {
        var data = new TheoryData<string, int>();
        foreach (var format in new[] { nameof(TileFormat.Q4_K), nameof(TileFormat.Q5_K) })
            foreach (int tokens in new[] { 12, 8, 4 })
                data.Add(format, tokens);
        return data;
    }

    /// <summary>
    /// The generated Q4_K and Q5_K tiles (12, 8 and 4 tokens) against <see cref="Q4_K.DotRef"/> and <see cref="Q5_K.DotRef"/> over
    /// 1-6, 16 and 57 super-blocks: random rows, one super-block of row 1 with every 6-bit scale and min at 63, row 2 with low bits
    /// 0 and 15, row 3 (Q5_K) with every fifth bit set, activations whose quants reach −127 and 127, the two groups apart and the
    /// output strided (rows outside the tile's 16 must stay untouched).
    /// </summary>
    [Theory]
    [MemberData(nameof(KTileCases))]
    public void GeneratedKTileMatchesReference(string formatName, int tokens)
    {
        var format = Enum.Parse<TileFormat>(formatName);
        Assert.SkipUnless(GeneratedTiles.Ready, "no generated tiles here: " + QuantKernels.GeneratedUnavailable);
        var tile = (delegate* unmanaged[SuppressGCTransition]<int, byte*, nint, float*, byte*, nint, float*, nint, void>)
            ExecutableMemory.Commit(GeneratedTiles.Generate(format, tokens));
        Assert.True(tile != null);
        bool q5 = format == TileFormat.Q5_K;
        var type = q5 ? GgmlType.Q5_K : GgmlType.Q4_K;
        int typeSize = q5 ? Q5_KFormat.TypeSize : Q4_KFormat.TypeSize;
        delegate*<byte*, nint, byte*, int, void> repack = q5 ? &Q5_Kx8.Repack : &Q4_Kx8.Repack;
        delegate*<int, byte*, nint, float*, void> tileScales = q5 ? &Q5_Kx8.JitTileScales : &Q4_Kx8.JitTileScales;
        delegate*<int, byte*, byte*, float> reference = q5 ? &Q5_K.DotRef : &Q4_K.DotRef;
        var rng = new Random(1000 + 16 * (int)format + tokens);
        foreach (int blocks in new[] { 1, 2, 3, 4, 5, 6, 16, 57 })
        {
            int n = blocks * 256, rowBytes = blocks * typeSize, actBytes = blocks * Q8_KFormat.TypeSize;
            var plain = new byte[16 * rowBytes];
            for (int r = 0; r < 16; r++)
            {
                var x = new float[n];
                for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (r + 1) + (r % 3 == 0 ? 0.5f : 0f);
                RowCodec.Quantize(type, x, plain.AsSpan(r * rowBytes, rowBytes));
            }
            plain.AsSpan(rowBytes + Q4_KFormat.ScalesOffset, 12).Fill(0xFF); // row 1: every scale and min 63 (same offset in Q5_K)
            plain.AsSpan(2 * rowBytes + (q5 ? Q5_KFormat.QsOffset : Q4_KFormat.QsOffset), 8).Fill(0xF0); // row 2: low bits 0 and 15
            if (q5) plain.AsSpan(3 * rowBytes + Q5_KFormat.QhOffset, 32).Fill(0xFF); // row 3: every fifth bit set
            var act = new byte[tokens * actBytes];
            for (int c = 0; c < tokens; c++)
            {
                var x = new float[n];
                for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 4 - 2);
                x[c] = -3; // the block's largest magnitude, negative: quantized to −127
                fixed (float* px = x) fixed (byte* pa = &act[c * actBytes]) Q8_K.QuantizeFast(px, pa, n);
            }
            CheckTile(tile, format, tokens, n, plain, rowBytes, act, actBytes, blocks * Q4_Kx8.JitScaleBytes, repack, tileScales,
                reference, type, GgmlType.Q8_K);
        }
    }

    /// <summary>
    /// Repacks the 16 rows of <paramref name="plain"/> as two groups (apart by more than a group), writes the tile's scales, runs
    /// the tile on <paramref name="tokens"/> activation rows into a strided output, and checks every row against the scalar
    /// reference dot (and that the rows past the tile's 16 stay untouched).
    /// </summary>
    private static void CheckTile(delegate* unmanaged[SuppressGCTransition]<int, byte*, nint, float*, byte*, nint, float*, nint, void> tile,
        TileFormat format, int tokens, int n, byte[] plain, int rowBytes, byte[] act, int actBytes, int scaleBytes,
        delegate*<byte*, nint, byte*, int, void> repack, delegate*<int, byte*, nint, float*, void> tileScales,
        delegate*<int, byte*, byte*, float> reference, GgmlType type, GgmlType actType)
    {
        const int yStride = 19;
        var y = new float[tokens * yStride];
        Array.Fill(y, float.NaN);
        int groupStride = 8 * rowBytes + 128;
        byte* packed = (byte*)NativeMemory.AlignedAlloc((nuint)(groupStride + 8 * rowBytes), 64);
        float* scales = (float*)NativeMemory.AlignedAlloc((nuint)scaleBytes, 64);
        try
        {
            fixed (byte* pPlain = plain, pAct = act)
            fixed (float* py = y)
            {
                repack(pPlain, rowBytes, packed, n);
                repack(pPlain + 8 * rowBytes, rowBytes, packed + groupStride, n);
                tileScales(n, packed, groupStride, scales);
                tile(n, packed, groupStride, scales, pAct, actBytes, py, yStride);
                for (int c = 0; c < tokens; c++)
                    for (int r = 0; r < yStride; r++)
                    {
                        float got = y[c * yStride + r];
                        if (r >= 16)
                        {
                            if (c + 1 < tokens) Assert.True(float.IsNaN(got), $"n={n} token {c}: wrote row {r}, outside the tile");
                            continue;
                        }
                        byte* w = pPlain + r * rowBytes, a = pAct + c * actBytes;
                        float expected = reference(n, w, a);
                        double tol = DotRelTolerance * QuantTestUtil.AbsDot(type, w, actType, a, n) + 1e-30;
                        Assert.True(Math.Abs(got - expected) <= tol, $"{format} {tokens} tokens, n={n}: token {c} row {r}: {got} vs {expected}");
                    }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(packed);
            NativeMemory.AlignedFree(scales);
        }
    }
}
