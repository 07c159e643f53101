using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Infer.Kernels.Cpu.Backend;

/// <summary>
/// The per-group offsets a <see cref="Quants.QuantKernel.GemmVia"/> conversion leaves out (Q2_K's −dmin·m per 16 elements): y[t, r]
/// += Σ_g M[r, g]·S[t, g], with S the activations' sums over each group of 16 and M the rows' offsets, kept per 16-row tile as
/// [g][16] floats so that one FMA covers 16 rows (two 8-lane halves) for a token.
/// </summary>
internal static unsafe class GroupOffsets
{
    public const int GroupSize = 16;

    /// <summary>s[t·groups + g] = Σ of x[t, 16g .. 16g + 15] over <paramref name="tokens"/> rows of <paramref name="cols"/> floats.</summary>
    public static void GroupSums(float* x, int tokens, int cols, float* s)
    {
        int groups = cols / GroupSize;
        for (int t = 0; t < tokens; t++)
        {
            float* xt = x + (long)t * cols;
            float* st = s + (long)t * groups;
            for (int g = 0; g < groups; g++)
            {
                Vector256<float> v = Vector256.Load(xt + GroupSize * g) + Vector256.Load(xt + GroupSize * g + 8);
                st[g] = Vector256.Sum(v);
            }
        }
    }

    /// <summary>Row <paramref name="lane"/> (0..15) of the tile at <paramref name="tile"/>: its offsets <paramref name="row"/>[0..groups).</summary>
    public static void Scatter(float* tile, int lane, float* row, int groups)
    {
        for (int g = 0; g < groups; g++) tile[GroupSize * g + lane] = row[g];
    }

    /// <summary>
    /// y[t, r + i] += Σ_g tile[g][i]·s[t, g] for rows i &lt; <paramref name="count"/> of the tile and tokens t0..t1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Add(float* tile, int groups, float* s, int t0, int t1, float* y, int yCols, int r, int count)
    {
        if (Vector512.IsHardwareAccelerated && count == GroupSize)
        {
            Add512(tile, groups, s, t0, t1, y, yCols, r);
            return;
        }
        float* acc = stackalloc float[4 * GroupSize];
        int t = t0;
        for (; t + 4 <= t1; t += 4)
        {
            float* s0 = s + (long)t * groups, s1 = s0 + groups, s2 = s1 + groups, s3 = s2 + groups;
            Vector256<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
            for (int g = 0; g < groups; g++)
            {
                Vector256<float> lo = Vector256.Load(tile + GroupSize * g), hi = Vector256.Load(tile + GroupSize * g + 8);
                var v0 = Vector256.Create(s0[g]);
                a0 = Fma.MultiplyAdd(lo, v0, a0); b0 = Fma.MultiplyAdd(hi, v0, b0);
                var v1 = Vector256.Create(s1[g]);
                a1 = Fma.MultiplyAdd(lo, v1, a1); b1 = Fma.MultiplyAdd(hi, v1, b1);
                var v2 = Vector256.Create(s2[g]);
                a2 = Fma.MultiplyAdd(lo, v2, a2); b2 = Fma.MultiplyAdd(hi, v2, b2);
                var v3 = Vector256.Create(s3[g]);
                a3 = Fma.MultiplyAdd(lo, v3, a3); b3 = Fma.MultiplyAdd(hi, v3, b3);
            }
            a0.Store(acc); b0.Store(acc + 8); a1.Store(acc + 16); b1.Store(acc + 24);
            a2.Store(acc + 32); b2.Store(acc + 40); a3.Store(acc + 48); b3.Store(acc + 56);
            for (int c = 0; c < 4; c++)
            {
                float* yt = y + (long)(t + c) * yCols + r;
                for (int i = 0; i < count; i++) yt[i] += acc[GroupSize * c + i];
            }
        }
        for (; t < t1; t++)
        {
            float* st = s + (long)t * groups;
            Vector256<float> a = default, b = default;
            for (int g = 0; g < groups; g++)
            {
                var v = Vector256.Create(st[g]);
                a = Fma.MultiplyAdd(Vector256.Load(tile + GroupSize * g), v, a);
                b = Fma.MultiplyAdd(Vector256.Load(tile + GroupSize * g + 8), v, b);
            }
            a.Store(acc); b.Store(acc + 8);
            float* yt = y + (long)t * yCols + r;
            for (int i = 0; i < count; i++) yt[i] += acc[i];
        }
    }

    /// <summary>
    /// <see cref="Add"/> for a whole tile with 512-bit vectors: one FMA per group covers the 16 rows for a token, 8 tokens at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Add512(float* tile, int groups, float* s, int t0, int t1, float* y, int yCols, int r)
    {
        int t = t0;
        for (; t + 8 <= t1; t += 8)
        {
            float* st = s + (long)t * groups;
            long gs = groups;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            for (int g = 0; g < groups; g++)
            {
                Vector512<float> m = Vector512.Load(tile + GroupSize * g);
                a0 = Vector512.FusedMultiplyAdd(m, Vector512.Create(st[g]), a0);
                a1 = Vector512.FusedMultiplyAdd(m, Vector512.Create(st[gs + g]), a1);
                a2 = Vector512.FusedMultiplyAdd(m, Vector512.Create(st[2 * gs + g]), a2);
                a3 = Vector512.FusedMultiplyAdd(m, Vector512.Create(st[3 * gs + g]), a3);
                a4 = Vector512.FusedMultiplyAdd(m, Vector512.Create(st[4 * gs + g]), a4);
                a5 = Vector512.FusedMultiplyAdd(m, Vector512.Create(st[5 * gs + g]), a5);
                a6 = Vector512.FusedMultiplyAdd(m, Vector512.Create(st[6 * gs + g]), a6);
                a7 = Vector512.FusedMultiplyAdd(m, Vector512.Create(st[7 * gs + g]), a7);
            }
            float* yt = y + (long)t * yCols + r;
            (Vector512.Load(yt) + a0).Store(yt);
            (Vector512.Load(yt + yCols) + a1).Store(yt + yCols);
            (Vector512.Load(yt + 2 * yCols) + a2).Store(yt + 2 * yCols);
            (Vector512.Load(yt + 3 * yCols) + a3).Store(yt + 3 * yCols);
            (Vector512.Load(yt + 4 * yCols) + a4).Store(yt + 4 * yCols);
            (Vector512.Load(yt + 5 * yCols) + a5).Store(yt + 5 * yCols);
            (Vector512.Load(yt + 6 * yCols) + a6).Store(yt + 6 * yCols);
            (Vector512.Load(yt + 7 * yCols) + a7).Store(yt + 7 * yCols);
        }
        for (; t < t1; t++)
        {
            float* st = s + (long)t * groups;
            Vector512<float> a = default;
            for (int g = 0; g < groups; g++) a = Vector512.FusedMultiplyAdd(Vector512.Load(tile + GroupSize * g), Vector512.Create(st[g]), a);
            float* yt = y + (long)t * yCols + r;
            (Vector512.Load(yt) + a).Store(yt);
        }
    }
}
