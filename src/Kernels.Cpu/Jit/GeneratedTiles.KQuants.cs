using Infer.Kernels.Cpu.Quants;
using Infer.Runtime.Formats;

namespace Infer.Kernels.Cpu.Jit;

internal static unsafe partial class GeneratedTiles
{
    /// <summary>Tokens per call of the Q4_K and Q5_K main tiles (their tails take 4).</summary>
    public const int KTileTokens = 12;

    // K-quant registers: per token a sub-block's int32 sums (zmm0..11, then the mins term) and the float sums (zmm12..23); then
    // the weights, a sub-block's d·scale (then its mins), a temporary, the low-bits mask (0x0F, Q5_K 0x1F), dmin, and Q5_K's
    // high-bits masks (0x07, 0x18) and second weight register
    private const int KSub = 0, KFloat = 12, KWeights = 24, KScale = 25, KTemp = 26, KMask = 27, KDMin = 28;
    private const int KMask07 = 29, KMask18 = 30, KHigh = 31;

    /// <summary>
    /// The Q4_K tile (<see cref="Q4_Kx8"/> layout, Q8_K activations, <see cref="Q4_Kx8.JitTileScales"/>): per super-block and
    /// sub-block j, each token's int32 sums of 32 nibbles · activation bytes (eight <c>vpdpbusd</c> with the activation's 4 bytes
    /// broadcast from memory; the low nibbles of pair j / 2 for even j, the high for odd), converted and added into the float sums
    /// times d · scale_j of the rows · d_y of the token; then the mins term Σ_j m_j · (bsums[2j] + bsums[2j+1]) (eight
    /// <c>vpdpwssd</c> of the (m, m) pairs against each bsums pair broadcast), subtracted times dmin · d_y. Two registers per token
    /// (an int32 sum per sub-block instead of a third, the super-block's) let 12 tokens share each unpacked weight vector.
    /// <para>
    /// Q5_K (<paramref name="q5"/>, <see cref="Q5_Kx8"/> layout, the same header and scales): the low sub-block of pair c is
    /// X(c, k) &amp; 0x1F, the high one (X &gt;&gt; 5) &amp; 0x07 | bits 2c, 2c + 1 of Y(k) moved to bits 3, 4 (16-bit shifts; the bits
    /// they carry across bytes are masked off). Weights ≤ 31: unsigned for <c>vpdpbusd</c>, sums at most 8 · 63 · 32 · 31 · 127.
    /// </para>
    /// </summary>
    private static byte[] GenerateK(int tokens, bool q5)
    {
        if (tokens is not (4 or 8 or 12)) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, "4, 8 or 12 tokens");
        int quads = tokens / 4;
        var asm = new X64Assembler();
        // each group of four tokens' current Q8_K block: d at +0, the quants at + 4, the sums of 16 at + 260
        Gpr[] q = [Gpr.R8, Gpr.R10, Gpr.R11];
        const Gpr group = Gpr.Rsi, scales = Gpr.Rcx, stride = Gpr.R9, stride3 = Gpr.Rax, nb = Gpr.Rdi; // the second group at rsi + rdx
        foreach (var r in Saved) asm.Push(r);
        asm.Mov32(stride3, q5 ? 0x1F1F1F1Fu : 0x0F0F0F0Fu);
        asm.VpBroadcastD(KMask, stride3);
        if (q5)
        {
            asm.Mov32(stride3, 0x07070707u);
            asm.VpBroadcastD(KMask07, stride3);
            asm.Mov32(stride3, 0x18181818u);
            asm.VpBroadcastD(KMask18, stride3);
        }
        asm.MovSxd(nb, nb);
        asm.Sar(nb, 8); // n / 256 super-blocks
        asm.Push(nb); // the loop's count, at [rsp]
        asm.Lea(stride3, new Mem(stride, stride, 2));
        for (int j = 1; j < quads; j++) asm.Lea(q[j], new Mem(q[j - 1], stride, 4));
        asm.Add(group, Q4_Kx8.QuantsOffset); // past the header: the first quant vector
        for (int t = 0; t < tokens; t++) asm.VpXorD(KFloat + t, KFloat + t, KFloat + t);
        int done = asm.NewLabel(), loop = asm.NewLabel();
        asm.Test(nb, nb);
        asm.Jle(done);

        asm.Bind(loop);
        for (int j = 0; j < 8; j++)
        {
            for (int t = 0; t < tokens; t++) asm.VpXorD(KSub + t, KSub + t, KSub + t);
            for (int k = 0; k < 8; k++)
            {
                // vector P(j / 2, k) (Q5_K: X(j / 2, k)): byte 4r + e holds element 4k + e of sub-block j of row r in its low bits
                // for even j; for odd j in its high bits (Q5_K: bits 3-4 in Y(k))
                int c = j / 2, offset = Q4_Kx8.PairBytes * c + 32 * k;
                LoadPair(asm, KWeights, offset);
                if ((j & 1) == 0) asm.VpAndD(KWeights, KWeights, KMask);
                else if (!q5)
                {
                    asm.VpSrlW(KWeights, KWeights, 4);
                    asm.VpAndD(KWeights, KWeights, KMask);
                }
                else
                {
                    asm.VpSrlW(KWeights, KWeights, 5);
                    asm.VpAndD(KWeights, KWeights, KMask07);
                    LoadPair(asm, KHigh, Q5_Kx8.HighBitsOffset - Q4_Kx8.QuantsOffset + 32 * k);
                    if (2 * c < 3) asm.VpSllW(KHigh, KHigh, (byte)(3 - 2 * c));
                    else asm.VpSrlW(KHigh, KHigh, (byte)(2 * c - 3));
                    asm.VpAndD(KHigh, KHigh, KMask18);
                    asm.VpOrD(KWeights, KWeights, KHigh);
                }
                for (int t = 0; t < tokens; t++)
                    asm.VpDpBusdBcst(KSub + t, KWeights, Token(q[t / 4], t) + (Q8_KFormat.QsOffset + 32 * j + 4 * k));
            }
            asm.VMovUps(KScale, new Mem(scales, Disp: 64 * j)); // d · scale_j of the 16 rows
            for (int t = 0; t < tokens; t++)
            {
                asm.VCvtDq2Ps(KSub + t, KSub + t);
                asm.VMulPsBcst(KTemp, KScale, Token(q[t / 4], t)); // · the token's d
                asm.VFmAdd231Ps(KFloat + t, KSub + t, KTemp);
            }
        }
        // the mins term, in the sub-block registers, times dmin · d_y off the float sums
        for (int t = 0; t < tokens; t++) asm.VpXorD(KSub + t, KSub + t, KSub + t);
        for (int j = 0; j < 8; j++)
        {
            asm.VMovUps(KScale, new Mem(scales, Disp: Q4_Kx8.JitMinsOffset + 64 * j));
            for (int t = 0; t < tokens; t++)
                asm.VpDpWssdBcst(KSub + t, KScale, Token(q[t / 4], t) + (Q8_KFormat.BSumsOffset + 4 * j));
        }
        asm.VMovUps(KDMin, new Mem(scales, Disp: Q4_Kx8.JitDMinOffset));
        for (int t = 0; t < tokens; t++)
        {
            asm.VCvtDq2Ps(KSub + t, KSub + t);
            asm.VMulPsBcst(KTemp, KDMin, Token(q[t / 4], t));
            asm.VFnMAdd231Ps(KFloat + t, KSub + t, KTemp);
        }
        asm.Add(group, q5 ? Q5_Kx8.GroupBlockBytes : Q4_Kx8.GroupBlockBytes);
        asm.Add(scales, Q4_Kx8.JitScaleBytes);
        for (int j = 0; j < quads; j++) asm.Add(q[j], Q8_KFormat.TypeSize);
        asm.DecQword(new Mem(Gpr.Rsp));
        asm.Jnz(loop);

        asm.Bind(done);
        return Finish(asm, tokens, KFloat);
    }
}
