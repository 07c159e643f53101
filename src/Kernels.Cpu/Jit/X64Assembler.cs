namespace Infer.Kernels.Cpu.Jit;

/// <summary>x86-64 general registers in their encoding order.</summary>
internal enum Gpr { Rax, Rcx, Rdx, Rbx, Rsp, Rbp, Rsi, Rdi, R8, R9, R10, R11, R12, R13, R14, R15 }

/// <summary>A memory operand [base + index·scale + disp]; <see cref="Index"/> null for none.</summary>
internal readonly record struct Mem(Gpr Base, Gpr? Index = null, int Scale = 1, int Disp = 0)
{
    public static Mem operator +(Mem m, int disp) => m with { Disp = m.Disp + disp };
}

/// <summary>
/// The few x86-64 instructions the generated kernels use (<see cref="GeneratedTiles"/>), encoded by hand: general-register moves and
/// arithmetic for the pointers, and EVEX-encoded AVX-512 (F and VNNI) on zmm0-31. Memory operands take the shortest displacement
/// (EVEX's 8-bit one in units of the operand's size): a loop of a thousand 7-byte instructions, not 11-byte ones, stays within
/// what the front end delivers per cycle. Labels are resolved when <see cref="ToArray"/> is called.
/// Encodings are checked byte for byte against GNU as in the tests.
/// </summary>
internal sealed class X64Assembler
{
    private readonly List<byte> _code = new();
    private readonly List<(int At, int Label)> _fixups = new();
    private readonly List<int> _labels = new();

    public int Length => _code.Count;

    public int NewLabel()
    {
        _labels.Add(-1);
        return _labels.Count - 1;
    }

    public void Bind(int label) => _labels[label] = _code.Count;

    public byte[] ToArray()
    {
        var code = _code.ToArray();
        foreach (var (at, label) in _fixups)
        {
            int target = _labels[label];
            if (target < 0) throw new InvalidOperationException($"label {label} was never bound");
            BitConverter.TryWriteBytes(code.AsSpan(at, 4), target - (at + 4));
        }
        return code;
    }

    // ---- general registers ----

    public void Push(Gpr r)
    {
        if ((int)r >= 8) Emit(0x41);
        Emit((byte)(0x50 + ((int)r & 7)));
    }

    public void Pop(Gpr r)
    {
        if ((int)r >= 8) Emit(0x41);
        Emit((byte)(0x58 + ((int)r & 7)));
    }

    public void Ret() => Emit(0xC3);

    public void VZeroUpper() { Emit(0xC5); Emit(0xF8); Emit(0x77); }

    /// <summary>mov dst, src (64-bit).</summary>
    public void Mov(Gpr dst, Gpr src) => RegReg(0x89, (int)src, (int)dst);

    /// <summary>mov dst, qword [m].</summary>
    public void Mov(Gpr dst, Mem m) => RegMem(0x8B, (int)dst, m);

    /// <summary>mov dst32, imm32 (zero-extends into the 64-bit register).</summary>
    public void Mov32(Gpr dst, uint imm)
    {
        if ((int)dst >= 8) Emit(0x41);
        Emit((byte)(0xB8 + ((int)dst & 7)));
        Imm32((int)imm);
    }

    /// <summary>movsxd dst, src32: a 32-bit argument sign-extended (the upper half of its register is undefined on entry).</summary>
    public void MovSxd(Gpr dst, Gpr src) => RegReg(0x63, (int)dst, (int)src);

    public void Lea(Gpr dst, Mem m) => RegMem(0x8D, (int)dst, m);

    /// <summary>add dst, src (64-bit).</summary>
    public void Add(Gpr dst, Gpr src) => RegReg(0x01, (int)src, (int)dst);

    /// <summary>add dst, imm32 (64-bit).</summary>
    public void Add(Gpr dst, int imm)
    {
        RegReg(0x81, 0, (int)dst);
        Imm32(imm);
    }

    /// <summary>imul dst, src, imm32 (64-bit).</summary>
    public void IMul(Gpr dst, Gpr src, int imm)
    {
        RegReg(0x69, (int)dst, (int)src);
        Imm32(imm);
    }

    /// <summary>sar dst, imm8 (64-bit).</summary>
    public void Sar(Gpr dst, byte imm)
    {
        RegReg(0xC1, 7, (int)dst);
        Emit(imm);
    }

    /// <summary>shl dst, imm8 (64-bit).</summary>
    public void Shl(Gpr dst, byte imm)
    {
        RegReg(0xC1, 4, (int)dst);
        Emit(imm);
    }

    /// <summary>test a, b (64-bit).</summary>
    public void Test(Gpr a, Gpr b) => RegReg(0x85, (int)b, (int)a);

    /// <summary>dec qword [m].</summary>
    public void DecQword(Mem m) => RegMem(0xFF, 1, m);

    public void Jnz(int label) => Jcc(0x85, label);

    public void Jle(int label) => Jcc(0x8E, label);

    private void Jcc(byte cc, int label)
    {
        Emit(0x0F);
        Emit(cc);
        _fixups.Add((_code.Count, label));
        Imm32(0);
    }

    /// <summary>REX.W op /r with a register operand: ModRM reg = <paramref name="reg"/> (or an opcode extension), rm =
    /// <paramref name="rm"/>.</summary>
    private void RegReg(byte op, int reg, int rm)
    {
        Emit((byte)(0x48 | ((reg >> 3) & 1) << 2 | ((rm >> 3) & 1)));
        Emit(op);
        Emit((byte)(0xC0 | (reg & 7) << 3 | (rm & 7)));
    }

    private void RegMem(byte op, int reg, Mem m)
    {
        Emit((byte)(0x48 | ((reg >> 3) & 1) << 2 | (((int?)m.Index ?? 0) >> 3 & 1) << 1 | ((int)m.Base >> 3 & 1)));
        Emit(op);
        ModRmMem(reg, m);
    }

    // ---- AVX-512 (EVEX) ----

    private const int Map0F = 1, Map0F38 = 2, Map0F3A = 3;
    private const int PpNone = 0, Pp66 = 1, PpF3 = 2;
    private const int L256 = 1, L512 = 2;

    /// <summary>vpbroadcastd zmm, dword [m].</summary>
    public void VpBroadcastD(int zmm, Mem m) => Evex(Map0F38, Pp66, false, L512, 0x58, zmm, 0, m, false, 4);

    /// <summary>vpbroadcastd zmm, r32.</summary>
    public void VpBroadcastD(int zmm, Gpr r) => EvexReg(Map0F38, Pp66, false, L512, 0x7C, zmm, 0, (int)r);

    /// <summary>vmovdqu32 ymm, [m]: 32 bytes into the low half of zmm <paramref name="zmm"/> (the upper half is zeroed).</summary>
    public void VMovDqu32Ymm(int zmm, Mem m) => Evex(Map0F, PpF3, false, L256, 0x6F, zmm, 0, m, false, 32);

    /// <summary>vinserti64x4 zmm, zmm_src, [m], imm8.</summary>
    public void VInsertI64x4(int zmm, int src, Mem m, byte imm)
    {
        Evex(Map0F3A, Pp66, true, L512, 0x3A, zmm, src, m, false, 32);
        Emit(imm);
    }

    /// <summary>vpxord zmm, a, b.</summary>
    public void VpXorD(int zmm, int a, int b) => EvexReg(Map0F, Pp66, false, L512, 0xEF, zmm, a, b);

    /// <summary>vpandd zmm, a, b.</summary>
    public void VpAndD(int zmm, int a, int b) => EvexReg(Map0F, Pp66, false, L512, 0xDB, zmm, a, b);

    /// <summary>vpsrlw zmm, src, imm8: each 16-bit lane shifted right (logical).</summary>
    public void VpSrlW(int zmm, int src, byte imm)
    {
        EvexReg(Map0F, Pp66, false, L512, 0x71, 2, zmm, src); // /2, the destination in vvvv
        Emit(imm);
    }

    /// <summary>vpsllw zmm, src, imm: each 16-bit lane shifted left.</summary>
    public void VpSllW(int zmm, int src, byte imm)
    {
        EvexReg(Map0F, Pp66, false, L512, 0x71, 6, zmm, src); // /6, the destination in vvvv
        Emit(imm);
    }

    /// <summary>vpord zmm, a, b.</summary>
    public void VpOrD(int zmm, int a, int b) => EvexReg(Map0F, Pp66, false, L512, 0xEB, zmm, a, b);

    /// <summary>vpmulld zmm, a, dword [m]{1to16}: the low 32 bits of each lane's product.</summary>
    public void VpMullDBcst(int zmm, int a, Mem m) => Evex(Map0F38, Pp66, false, L512, 0x40, zmm, a, m, true, 4);

    /// <summary>vpdpwssd zmm, s16 zmm_a, s16 dword [m]{1to16} (AVX512-VNNI): zmm += Σ of two s16·s16 products per int32 lane.</summary>
    public void VpDpWssdBcst(int zmm, int a, Mem m) => Evex(Map0F38, Pp66, false, L512, 0x52, zmm, a, m, true, 4);

    /// <summary>vpdpbusd zmm, u8 zmm_a, s8 dword [m]{1to16} (AVX512-VNNI): zmm += Σ of four u8·s8 products per int32 lane.</summary>
    public void VpDpBusdBcst(int zmm, int a, Mem m) => Evex(Map0F38, Pp66, false, L512, 0x50, zmm, a, m, true, 4);

    /// <summary>vpdpbusd zmm, zmm_a, zmm_b (AVX512-VNNI).</summary>
    public void VpDpBusd(int zmm, int a, int b) => EvexReg(Map0F38, Pp66, false, L512, 0x50, zmm, a, b);

    /// <summary>vmovups zmm, [m].</summary>
    public void VMovUps(int zmm, Mem m) => Evex(Map0F, PpNone, false, L512, 0x10, zmm, 0, m, false, 64);

    /// <summary>vmovups [m], zmm.</summary>
    public void VMovUps(Mem m, int zmm) => Evex(Map0F, PpNone, false, L512, 0x11, zmm, 0, m, false, 64);

    /// <summary>vmulps zmm, a, dword [m]{1to16}.</summary>
    public void VMulPsBcst(int zmm, int a, Mem m) => Evex(Map0F, PpNone, false, L512, 0x59, zmm, a, m, true, 4);

    /// <summary>vcvtdq2ps zmm, src.</summary>
    public void VCvtDq2Ps(int zmm, int src) => EvexReg(Map0F, PpNone, false, L512, 0x5B, zmm, 0, src);

    /// <summary>vfmadd231ps zmm, a, b: zmm += a·b.</summary>
    public void VFmAdd231Ps(int zmm, int a, int b) => EvexReg(Map0F38, Pp66, false, L512, 0xB8, zmm, a, b);

    /// <summary>vfnmadd231ps zmm, a, b: zmm −= a·b.</summary>
    public void VFnMAdd231Ps(int zmm, int a, int b) => EvexReg(Map0F38, Pp66, false, L512, 0xBC, zmm, a, b);

    private void EvexPrefix(int map, int pp, bool w, int ll, bool bcast, int reg, int vvvv, int x, int b)
    {
        Emit(0x62);
        Emit((byte)((~reg >> 3 & 1) << 7 | (~x & 1) << 6 | (~b & 1) << 5 | (~reg >> 4 & 1) << 4 | map));
        Emit((byte)((w ? 0x80 : 0) | (~vvvv & 15) << 3 | 0x04 | pp));
        Emit((byte)(ll << 5 | (bcast ? 0x10 : 0) | (~vvvv >> 4 & 1) << 3));
    }

    private void EvexReg(int map, int pp, bool w, int ll, byte op, int reg, int vvvv, int rm)
    {
        // a register rm: B extends it to 8-15, X to 16-31
        EvexPrefix(map, pp, w, ll, false, reg, vvvv, rm >> 4 & 1, rm >> 3 & 1);
        Emit(op);
        Emit((byte)(0xC0 | (reg & 7) << 3 | (rm & 7)));
    }

    /// <summary>
    /// An EVEX instruction with a memory operand; <paramref name="disp8Scale"/> is EVEX's N: an 8-bit displacement counts units of
    /// this many bytes (the memory operand's size).
    /// </summary>
    private void Evex(int map, int pp, bool w, int ll, byte op, int reg, int vvvv, Mem m, bool bcast, int disp8Scale)
    {
        EvexPrefix(map, pp, w, ll, bcast, reg, vvvv, ((int?)m.Index ?? 0) >> 3 & 1, (int)m.Base >> 3 & 1);
        Emit(op);
        ModRmMem(reg, m, disp8Scale);
    }

    /// <summary>
    /// ModRM (+ SIB) + displacement for [base + index·scale + disp], the shortest form: none (mod 00, except for an rbp or r13
    /// base), 8 bits in units of <paramref name="disp8Scale"/> (mod 01), else 32 bits (mod 10).
    /// </summary>
    private void ModRmMem(int reg, Mem m, int disp8Scale = 1)
    {
        if (m.Index == Gpr.Rsp) throw new ArgumentException("rsp cannot be an index register", nameof(m));
        int mod = m.Disp == 0 && ((int)m.Base & 7) != 5 ? 0
            : m.Disp % disp8Scale == 0 && m.Disp / disp8Scale is >= -128 and <= 127 ? 1 : 2;
        if (m.Index is null && ((int)m.Base & 7) != 4)
            Emit((byte)(mod << 6 | (reg & 7) << 3 | ((int)m.Base & 7)));
        else
        {
            Emit((byte)(mod << 6 | (reg & 7) << 3 | 4));
            int scaleBits = m.Scale switch
            {
                1 => 0,
                2 => 1,
                4 => 2,
                8 => 3,
                _ => throw new ArgumentException($"scale {m.Scale} is not 1, 2, 4 or 8", nameof(m)),
            };
            int index = m.Index is { } i ? (int)i & 7 : 4; // 100: no index
            Emit((byte)(scaleBits << 6 | index << 3 | ((int)m.Base & 7)));
        }
        if (mod == 1) Emit((byte)(sbyte)(m.Disp / disp8Scale));
        else if (mod == 2) Imm32(m.Disp);
    }

    private void Imm32(int v)
    {
        Emit((byte)v); Emit((byte)(v >> 8)); Emit((byte)(v >> 16)); Emit((byte)(v >> 24));
    }

    private void Emit(byte b) => _code.Add(b);
}
