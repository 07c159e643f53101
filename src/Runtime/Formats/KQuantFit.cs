using Infer.Runtime.Gguf;

namespace Infer.Runtime.Formats;

/// <summary>
/// The search routines of ggml's reference K-quant quantizers (ggml-quants.c), transcribed operation for operation so results
/// match bit for bit.
/// </summary>
internal static unsafe partial class KQuantFit
{
    private const int QK_K = GgmlTypeInfo.QK_K;
    private const float GroupMaxEps = 1e-15f;

    /// <summary>
    /// ggml's <c>make_qkx2_quants</c>: fits x ≈ scale * L - min with L in 0..nmax, trying nstep+1 scales around the range;
    /// returns scale, writes the (positive) min.
    /// </summary>
    public static float MakeQkx2Quants(int n, int nmax, float* x, float* weights, byte* L, out float theMin, byte* Laux,
        float rmin, float rdelta, int nstep, bool useMad)
    {
        float min = x[0], max = x[0];
        float sumW = weights[0];
        float sumX = sumW * x[0];
        for (int i = 1; i < n; ++i)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            for (int i = 0; i < n; ++i) L[i] = 0;
            theMin = -min;
            return 0.0f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; ++i)
        {
            int l = GgmlRounding.NearestInt(iscale * (x[i] - min));
            L[i] = (byte)Math.Max(0, Math.Min(nmax, l));
            float diff = scale * L[i] + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }
        if (nstep < 1)
        {
            theMin = -min;
            return scale;
        }
        for (int istep = 0; istep <= nstep; ++istep)
        {
            iscale = (rmin + rdelta * istep + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; ++i)
            {
                int l = GgmlRounding.NearestInt(iscale * (x[i] - min));
                l = Math.Max(0, Math.Min(nmax, l));
                Laux[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float D = sumW * sumL2 - sumL * sumL;
            if (D > 0)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / D;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / D;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float curError = 0;
                for (int i = 0; i < n; ++i)
                {
                    float diff = thisScale * Laux[i] + thisMin - x[i];
                    diff = useMad ? MathF.Abs(diff) : diff * diff;
                    curError += weights[i] * diff;
                }
                if (curError < bestError)
                {
                    for (int i = 0; i < n; ++i) L[i] = Laux[i];
                    bestError = curError;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin = -min;
        return scale;
    }

    /// <summary>
    /// The first value of largest magnitude, as make_qx_quants and make_q3_quants find it; false, with the levels zeroed, when
    /// every |x| is below ggml's GROUP_MAX_EPS.
    /// </summary>
    private static bool LargestMagnitude(int n, float* x, sbyte* L, out float max)
    {
        float amax = 0;
        max = 0;
        for (int i = 0; i < n; ++i)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax >= GroupMaxEps) return true;
        for (int i = 0; i < n; ++i) L[i] = 0;
        return false;
    }

    /// <summary>
    /// ggml's <c>make_qx_quants</c> with rmse_type 1: symmetric fit x ≈ scale * (L - nmax), L in 0..2nmax-1, weighted by
    /// <paramref name="qw"/> (null: w = x², as the quantizers without an importance matrix run it).
    /// </summary>
    public static float MakeQxQuants(int n, int nmax, float* x, sbyte* L, float* qw = null)
    {
        if (!LargestMagnitude(n, x, L, out float max)) return 0.0f;
        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; ++i)
        {
            int l = GgmlRounding.NearestInt(iscale * x[i]);
            l = Math.Max(-nmax, Math.Min(nmax - 1, l));
            L[i] = (sbyte)(l + nmax);
            float w = qw != null ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
        float best = scale * sumlx;
        for (int istep = -9; istep <= 9; ++istep)
        {
            if (istep == 0) continue;
            iscale = -(nmax + 0.1f * istep) / max;
            sumlx = suml2 = 0;
            for (int i = 0; i < n; ++i)
            {
                int l = GgmlRounding.NearestInt(iscale * x[i]);
                l = Math.Max(-nmax, Math.Min(nmax - 1, l));
                float w = qw != null ? qw[i] : x[i] * x[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < n; ++i)
                {
                    int l = GgmlRounding.NearestInt(iscale * x[i]);
                    L[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, l)));
                }
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    /// <summary>
    /// ggml's <c>make_q3_quants</c> with do_rmse: symmetric levels L in 0..2nmax-1 (x ≈ scale * (L - nmax)), refined by up to 5
    /// passes that move single levels while the weighted fit (w = x²) improves.
    /// </summary>
    public static float MakeQ3Quants(int n, int nmax, float* x, sbyte* L)
    {
        if (!LargestMagnitude(n, x, L, out float max)) return 0.0f;
        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; ++i)
        {
            int l = GgmlRounding.NearestInt(iscale * x[i]);
            l = Math.Max(-nmax, Math.Min(nmax - 1, l));
            L[i] = (sbyte)l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (int itry = 0; itry < 5; ++itry)
        {
            int changed = 0;
            for (int i = 0; i < n; ++i)
            {
                float w = x[i] * x[i];
                float slx = sumlx - w * x[i] * L[i];
                if (slx > 0)
                {
                    float sl2 = suml2 - w * L[i] * L[i];
                    int newL = GgmlRounding.NearestInt(x[i] * sl2 / slx);
                    newL = Math.Max(-nmax, Math.Min(nmax - 1, newL));
                    if (newL != L[i])
                    {
                        slx += w * x[i] * newL;
                        sl2 += w * newL * newL;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            L[i] = (sbyte)newL;
                            sumlx = slx;
                            suml2 = sl2;
                            ++changed;
                        }
                    }
                }
            }
            if (changed == 0) break;
        }
        for (int i = 0; i < n; ++i) L[i] += (sbyte)nmax;
        return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
    }

    /// <summary>
    /// The shared part of <c>quantize_row_q4_K_ref</c> and <c>quantize_row_q5_K_ref</c>: per 32-element sub-block a make_qkx2_quants fit,
    /// 6-bit scales and mins relative to the super-block's d and dmin, then the final levels L (0..nmax) from the stored (rounded) values.
    /// </summary>
    public static void QuantizeScaleMinSuperBlock(float* x, int nmax, float rmin, float rdelta, int nstep,
        byte* L, byte* scalesOut, out ushort dOut, out ushort dminOut)
    {
        float* mins = stackalloc float[QK_K / 32];
        float* scales = stackalloc float[QK_K / 32];
        float* weights = stackalloc float[32];
        byte* Laux = stackalloc byte[32];
        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < QK_K / 32; ++j)
        {
            float sumX2 = 0;
            for (int l = 0; l < 32; ++l) sumX2 += x[32 * j + l] * x[32 * j + l];
            float avX = MathF.Sqrt(sumX2 / 32);
            for (int l = 0; l < 32; ++l) weights[l] = avX + MathF.Abs(x[32 * j + l]);
            scales[j] = MakeQkx2Quants(32, nmax, x + 32 * j, weights, L + 32 * j, out mins[j], Laux, rmin, rdelta, nstep, false);
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }

        float invScale = maxScale > 0 ? 63.0f / maxScale : 0.0f;
        float invMin = maxMin > 0 ? 63.0f / maxMin : 0.0f;
        for (int k = 0; k < ScaleMinK4.Bytes; k++) scalesOut[k] = 0;
        for (int j = 0; j < QK_K / 32; ++j)
        {
            byte ls = (byte)GgmlRounding.NearestInt(invScale * scales[j]);
            byte lm = (byte)GgmlRounding.NearestInt(invMin * mins[j]);
            ls = Math.Min((byte)63, ls);
            lm = Math.Min((byte)63, lm);
            ScaleMinK4.Pack(scalesOut, j, ls, lm);
        }
        dOut = HalfBits.FromFloat(maxScale / 63.0f);
        dminOut = HalfBits.FromFloat(maxMin / 63.0f);
        FinalLevels(x, nmax, L, scalesOut, dOut, dminOut);
    }

    /// <summary>The levels L (0..nmax) of a Q4_K / Q5_K super-block from its stored (rounded) d, dmin, scales and mins.</summary>
    private static void FinalLevels(float* x, int nmax, byte* L, byte* scales, ushort dh, ushort dminh)
    {
        for (int j = 0; j < QK_K / 32; ++j)
        {
            ScaleMinK4.Get(j, scales, out byte sc, out byte m);
            float d = HalfBits.ToFloat(dh) * sc;
            if (d == 0) continue;
            float dm = HalfBits.ToFloat(dminh) * m;
            for (int ii = 0; ii < 32; ++ii)
            {
                int l = GgmlRounding.NearestInt((x[32 * j + ii] + dm) / d);
                L[32 * j + ii] = (byte)Math.Max(0, Math.Min(nmax, l));
            }
        }
    }
}
