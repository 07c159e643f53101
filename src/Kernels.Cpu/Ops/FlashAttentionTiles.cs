using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Infer.Kernels.Cpu.Ops;

/// <summary>
/// The register-blocked micro-kernels of <see cref="FlashAttention"/> for one vector width. The driver is generic over this,
/// so the JIT specializes it per width; tests run both widths.
/// </summary>
internal unsafe interface ITileOps
{
    /// <summary>Query rows per score-kernel pass (two vectors): MPad is a multiple of this.</summary>
    static abstract int RowChunk { get; }

    /// <summary>Keys per score-kernel call.</summary>
    static abstract int ScoreKeys { get; }

    /// <summary>Cache positions per block of the online softmax (a multiple of <see cref="ScoreKeys"/>).</summary>
    static abstract int KeyBlock { get; }

    /// <summary>Output columns per accumulate call: DPad is a multiple of this; values are read in place when headDim is too.</summary>
    static abstract int ValueColumns { get; }

    /// <summary>
    /// Sᵀ[j, r] = Σ_i k_j[i] · Qᵀ[i, r] for keys j in 0..ScoreKeys-1 (k_j = k + j * kStride) and all mPad rows, written at
    /// s + j * mPad. Keys from <paramref name="available"/> on repeat the last available key (their scores are never used).
    /// </summary>
    static abstract void Scores(float* qt, int mPad, int d, float* k, int kStride, int available, float* s);

    /// <summary>
    /// One online-softmax step over a block of <paramref name="count"/> keys, lane-wise over the rows: masks Sᵀ[j, r] to -∞
    /// where position maskFrom + j &gt; rowPos[r] (when <paramref name="maskFrom"/> ≥ 0), then newMax = max(rowMax, max_j S),
    /// correction = exp(rowMax - newMax), Pᵀ = exp(Sᵀ - newMax) in place, rowSum = rowSum · correction + Σ_j P.
    /// </summary>
    static abstract void UpdateSoftmax(float* s, int mPad, int count, int maskFrom, int* rowPos, float* rowMax, float* rowSum, float* correction);

    /// <summary>
    /// O[r, 0..ValueColumns) = O[r, ..] · correction[r] + Σ_j Pᵀ[j, r] · v_j[0..ValueColumns) for four rows r (O rows oStride apart).
    /// </summary>
    static abstract void Accumulate4(float* o, int oStride, float* p, int pStride, float* correction, float* v, int vStride, int count);

    /// <summary><see cref="Accumulate4"/> for one row.</summary>
    static abstract void Accumulate1(float* o, float* p, int pStride, float correction, float* v, int vStride, int count);
}

/// <summary>AVX-512 tiles: scores 8 keys × 32 rows (16 accumulators), values 4 rows × 64 columns (16 accumulators).</summary>
internal unsafe struct Tile512 : ITileOps
{
    public static int RowChunk => 32;
    public static int ScoreKeys => 8;
    public static int KeyBlock => 32;
    public static int ValueColumns => 64;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> acc) => Vector512.FusedMultiplyAdd(a, b, acc);

    public static void Scores(float* qt, int mPad, int d, float* k, int kStride, int available, float* s)
    {
        float* k0 = k, k1 = KeyRow(k, kStride, 1, available), k2 = KeyRow(k, kStride, 2, available), k3 = KeyRow(k, kStride, 3, available);
        float* k4 = KeyRow(k, kStride, 4, available), k5 = KeyRow(k, kStride, 5, available);
        float* k6 = KeyRow(k, kStride, 6, available), k7 = KeyRow(k, kStride, 7, available);
        for (int c = 0; c < mPad; c += 32)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default, b6 = default, b7 = default;
            float* qi = qt + c;
            for (int i = 0; i < d; i++, qi += mPad)
            {
                var qa = Vector512.Load(qi);
                var qb = Vector512.Load(qi + 16);
                var x = Vector512.Create(k0[i]); a0 = Fma(qa, x, a0); b0 = Fma(qb, x, b0);
                x = Vector512.Create(k1[i]); a1 = Fma(qa, x, a1); b1 = Fma(qb, x, b1);
                x = Vector512.Create(k2[i]); a2 = Fma(qa, x, a2); b2 = Fma(qb, x, b2);
                x = Vector512.Create(k3[i]); a3 = Fma(qa, x, a3); b3 = Fma(qb, x, b3);
                x = Vector512.Create(k4[i]); a4 = Fma(qa, x, a4); b4 = Fma(qb, x, b4);
                x = Vector512.Create(k5[i]); a5 = Fma(qa, x, a5); b5 = Fma(qb, x, b5);
                x = Vector512.Create(k6[i]); a6 = Fma(qa, x, a6); b6 = Fma(qb, x, b6);
                x = Vector512.Create(k7[i]); a7 = Fma(qa, x, a7); b7 = Fma(qb, x, b7);
            }
            float* sc = s + c;
            a0.Store(sc); b0.Store(sc + 16); sc += mPad;
            a1.Store(sc); b1.Store(sc + 16); sc += mPad;
            a2.Store(sc); b2.Store(sc + 16); sc += mPad;
            a3.Store(sc); b3.Store(sc + 16); sc += mPad;
            a4.Store(sc); b4.Store(sc + 16); sc += mPad;
            a5.Store(sc); b5.Store(sc + 16); sc += mPad;
            a6.Store(sc); b6.Store(sc + 16); sc += mPad;
            a7.Store(sc); b7.Store(sc + 16);
        }
    }

    public static void UpdateSoftmax(float* s, int mPad, int count, int maskFrom, int* rowPos, float* rowMax, float* rowSum, float* correction)
    {
        var negInf = Vector512.Create(float.NegativeInfinity);
        for (int c = 0; c < mPad; c += 16)
        {
            var old = Vector512.Load(rowMax + c);
            var max = old;
            if (maskFrom >= 0)
            {
                var pos = Vector512.Load(rowPos + c);
                for (int j = 0; j < count; j++)
                {
                    float* sj = s + (long)j * mPad + c;
                    var visible = Vector512.GreaterThanOrEqual(pos, Vector512.Create(maskFrom + j)).AsSingle();
                    var x = Vector512.ConditionalSelect(visible, Vector512.Load(sj), negInf);
                    x.Store(sj);
                    max = Vector512.MaxNative(max, x);
                }
            }
            else
            {
                for (int j = 0; j < count; j++) max = Vector512.MaxNative(max, Vector512.Load(s + (long)j * mPad + c));
            }
            var sum = Vector512<float>.Zero;
            for (int j = 0; j < count; j++)
            {
                float* sj = s + (long)j * mPad + c;
                var e = Vector512.Exp(Vector512.Load(sj) - max);
                e.Store(sj);
                sum += e;
            }
            var corr = Vector512.Exp(old - max);
            corr.Store(correction + c);
            Vector512.FusedMultiplyAdd(Vector512.Load(rowSum + c), corr, sum).Store(rowSum + c);
            max.Store(rowMax + c);
        }
    }

    public static void Accumulate4(float* o, int oStride, float* p, int pStride, float* correction, float* v, int vStride, int count)
    {
        float* o0 = o, o1 = o + oStride, o2 = o1 + oStride, o3 = o2 + oStride;
        var c0 = Vector512.Create(correction[0]);
        var c1 = Vector512.Create(correction[1]);
        var c2 = Vector512.Create(correction[2]);
        var c3 = Vector512.Create(correction[3]);
        Vector512<float> r00 = Vector512.Load(o0) * c0, r01 = Vector512.Load(o0 + 16) * c0;
        Vector512<float> r02 = Vector512.Load(o0 + 32) * c0, r03 = Vector512.Load(o0 + 48) * c0;
        Vector512<float> r10 = Vector512.Load(o1) * c1, r11 = Vector512.Load(o1 + 16) * c1;
        Vector512<float> r12 = Vector512.Load(o1 + 32) * c1, r13 = Vector512.Load(o1 + 48) * c1;
        Vector512<float> r20 = Vector512.Load(o2) * c2, r21 = Vector512.Load(o2 + 16) * c2;
        Vector512<float> r22 = Vector512.Load(o2 + 32) * c2, r23 = Vector512.Load(o2 + 48) * c2;
        Vector512<float> r30 = Vector512.Load(o3) * c3, r31 = Vector512.Load(o3 + 16) * c3;
        Vector512<float> r32 = Vector512.Load(o3 + 32) * c3, r33 = Vector512.Load(o3 + 48) * c3;
        float* vj = v, pj = p;
        for (int j = 0; j < count; j++, vj += vStride, pj += pStride)
        {
            var v0 = Vector512.Load(vj);
            var v1 = Vector512.Load(vj + 16);
            var v2 = Vector512.Load(vj + 32);
            var v3 = Vector512.Load(vj + 48);
            var x = Vector512.Create(pj[0]); r00 = Fma(v0, x, r00); r01 = Fma(v1, x, r01); r02 = Fma(v2, x, r02); r03 = Fma(v3, x, r03);
            x = Vector512.Create(pj[1]); r10 = Fma(v0, x, r10); r11 = Fma(v1, x, r11); r12 = Fma(v2, x, r12); r13 = Fma(v3, x, r13);
            x = Vector512.Create(pj[2]); r20 = Fma(v0, x, r20); r21 = Fma(v1, x, r21); r22 = Fma(v2, x, r22); r23 = Fma(v3, x, r23);
            x = Vector512.Create(pj[3]); r30 = Fma(v0, x, r30); r31 = Fma(v1, x, r31); r32 = Fma(v2, x, r32); r33 = Fma(v3, x, r33);
        }
        r00.Store(o0); r01.Store(o0 + 16); r02.Store(o0 + 32); r03.Store(o0 + 48);
        r10.Store(o1); r11.Store(o1 + 16); r12.Store(o1 + 32); r13.Store(o1 + 48);
        r20.Store(o2); r21.Store(o2 + 16); r22.Store(o2 + 32); r23.Store(o2 + 48);
        r30.Store(o3); r31.Store(o3 + 16); r32.Store(o3 + 32); r33.Store(o3 + 48);
    }

    public static void Accumulate1(float* o, float* p, int pStride, float correction, float* v, int vStride, int count)
    {
        var c = Vector512.Create(correction);
        Vector512<float> r0 = Vector512.Load(o) * c, r1 = Vector512.Load(o + 16) * c;
        Vector512<float> r2 = Vector512.Load(o + 32) * c, r3 = Vector512.Load(o + 48) * c;
        float* vj = v, pj = p;
        for (int j = 0; j < count; j++, vj += vStride, pj += pStride)
        {
            var x = Vector512.Create(pj[0]);
            r0 = Fma(Vector512.Load(vj), x, r0);
            r1 = Fma(Vector512.Load(vj + 16), x, r1);
            r2 = Fma(Vector512.Load(vj + 32), x, r2);
            r3 = Fma(Vector512.Load(vj + 48), x, r3);
        }
        r0.Store(o); r1.Store(o + 16); r2.Store(o + 32); r3.Store(o + 48);
    }

    /// <summary>Key j of a score-kernel call, or the last available key when j is past it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float* KeyRow(float* k, int kStride, int j, int available) => k + (long)Math.Min(j, available - 1) * kStride;
}

/// <summary>AVX2 tiles: scores 4 keys × 16 rows (8 accumulators), values 4 rows × 16 columns (8 accumulators): 16 ymm registers suffice.</summary>
internal unsafe struct Tile256 : ITileOps
{
    public static int RowChunk => 16;
    public static int ScoreKeys => 4;
    public static int KeyBlock => 32;
    public static int ValueColumns => 16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> acc) => Vector256.FusedMultiplyAdd(a, b, acc);

    public static void Scores(float* qt, int mPad, int d, float* k, int kStride, int available, float* s)
    {
        float* k0 = k, k1 = Tile512.KeyRow(k, kStride, 1, available);
        float* k2 = Tile512.KeyRow(k, kStride, 2, available), k3 = Tile512.KeyRow(k, kStride, 3, available);
        for (int c = 0; c < mPad; c += 16)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
            float* qi = qt + c;
            for (int i = 0; i < d; i++, qi += mPad)
            {
                var qa = Vector256.Load(qi);
                var qb = Vector256.Load(qi + 8);
                var x = Vector256.Create(k0[i]); a0 = Fma(qa, x, a0); b0 = Fma(qb, x, b0);
                x = Vector256.Create(k1[i]); a1 = Fma(qa, x, a1); b1 = Fma(qb, x, b1);
                x = Vector256.Create(k2[i]); a2 = Fma(qa, x, a2); b2 = Fma(qb, x, b2);
                x = Vector256.Create(k3[i]); a3 = Fma(qa, x, a3); b3 = Fma(qb, x, b3);
            }
            float* sc = s + c;
            a0.Store(sc); b0.Store(sc + 8); sc += mPad;
            a1.Store(sc); b1.Store(sc + 8); sc += mPad;
            a2.Store(sc); b2.Store(sc + 8); sc += mPad;
            a3.Store(sc); b3.Store(sc + 8);
        }
    }

    public static void UpdateSoftmax(float* s, int mPad, int count, int maskFrom, int* rowPos, float* rowMax, float* rowSum, float* correction)
    {
        var negInf = Vector256.Create(float.NegativeInfinity);
        for (int c = 0; c < mPad; c += 8)
        {
            var old = Vector256.Load(rowMax + c);
            var max = old;
            if (maskFrom >= 0)
            {
                var pos = Vector256.Load(rowPos + c);
                for (int j = 0; j < count; j++)
                {
                    float* sj = s + (long)j * mPad + c;
                    var visible = Vector256.GreaterThanOrEqual(pos, Vector256.Create(maskFrom + j)).AsSingle();
                    var x = Vector256.ConditionalSelect(visible, Vector256.Load(sj), negInf);
                    x.Store(sj);
                    max = Vector256.MaxNative(max, x);
                }
            }
            else
            {
                for (int j = 0; j < count; j++) max = Vector256.MaxNative(max, Vector256.Load(s + (long)j * mPad + c));
            }
            var sum = Vector256<float>.Zero;
            for (int j = 0; j < count; j++)
            {
                float* sj = s + (long)j * mPad + c;
                var e = Vector256.Exp(Vector256.Load(sj) - max);
                e.Store(sj);
                sum += e;
            }
            var corr = Vector256.Exp(old - max);
            corr.Store(correction + c);
            Vector256.FusedMultiplyAdd(Vector256.Load(rowSum + c), corr, sum).Store(rowSum + c);
            max.Store(rowMax + c);
        }
    }

    public static void Accumulate4(float* o, int oStride, float* p, int pStride, float* correction, float* v, int vStride, int count)
    {
        float* o0 = o, o1 = o + oStride, o2 = o1 + oStride, o3 = o2 + oStride;
        var c0 = Vector256.Create(correction[0]);
        var c1 = Vector256.Create(correction[1]);
        var c2 = Vector256.Create(correction[2]);
        var c3 = Vector256.Create(correction[3]);
        Vector256<float> r00 = Vector256.Load(o0) * c0, r01 = Vector256.Load(o0 + 8) * c0;
        Vector256<float> r10 = Vector256.Load(o1) * c1, r11 = Vector256.Load(o1 + 8) * c1;
        Vector256<float> r20 = Vector256.Load(o2) * c2, r21 = Vector256.Load(o2 + 8) * c2;
        Vector256<float> r30 = Vector256.Load(o3) * c3, r31 = Vector256.Load(o3 + 8) * c3;
        float* vj = v, pj = p;
        for (int j = 0; j < count; j++, vj += vStride, pj += pStride)
        {
            var v0 = Vector256.Load(vj);
            var v1 = Vector256.Load(vj + 8);
            var x = Vector256.Create(pj[0]); r00 = Fma(v0, x, r00); r01 = Fma(v1, x, r01);
            x = Vector256.Create(pj[1]); r10 = Fma(v0, x, r10); r11 = Fma(v1, x, r11);
            x = Vector256.Create(pj[2]); r20 = Fma(v0, x, r20); r21 = Fma(v1, x, r21);
            x = Vector256.Create(pj[3]); r30 = Fma(v0, x, r30); r31 = Fma(v1, x, r31);
        }
        r00.Store(o0); r01.Store(o0 + 8);
        r10.Store(o1); r11.Store(o1 + 8);
        r20.Store(o2); r21.Store(o2 + 8);
        r30.Store(o3); r31.Store(o3 + 8);
    }

    public static void Accumulate1(float* o, float* p, int pStride, float correction, float* v, int vStride, int count)
    {
        var c = Vector256.Create(correction);
        Vector256<float> r0 = Vector256.Load(o) * c, r1 = Vector256.Load(o + 8) * c;
        float* vj = v, pj = p;
        for (int j = 0; j < count; j++, vj += vStride, pj += pStride)
        {
            var x = Vector256.Create(pj[0]);
            r0 = Fma(Vector256.Load(vj), x, r0);
            r1 = Fma(Vector256.Load(vj + 8), x, r1);
        }
        r0.Store(o); r1.Store(o + 8);
    }
}
