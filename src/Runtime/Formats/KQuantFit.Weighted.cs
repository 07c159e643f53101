namespace Infer.Runtime.Formats;

/// <summary>
/// The search routines of ggml's quantizers with an importance matrix (<c>quant_weights</c>): each sub-block fitted with weights
/// qw · sqrt(σ² + x²), the sub-block scales themselves fitted with the sums of those weights.
/// </summary>
internal static unsafe partial class KQuantFit
{
    /// <summary>
    /// ggml's <c>make_qp_quants</c>: fits the non-negative <paramref name="x"/> ≈ scale · L, L in 0..nmax, under
    /// <paramref name="weights"/>: 8 trial scales around max / nmax, then up to 5 passes moving single levels.
    /// </summary>
    public static float MakeQpQuants(int n, int nmax, float* x, byte* L, float* weights)
    {
        float max = 0;
        for (int i = 0; i < n; ++i) max = max > x[i] ? max : x[i]; // C's MAX
        if (max < GroupMaxEps) // all zero
        {
            for (int i = 0; i < n; ++i) L[i] = 0;
            return 0.0f;
        }
        float iscale = nmax / max;
        for (int i = 0; i < n; ++i) L[i] = (byte)GgmlRounding.NearestInt(iscale * x[i]);
        float scale = 1 / iscale;
        float bestMse = 0;
        for (int i = 0; i < n; ++i)
        {
            float diff = x[i] - scale * L[i];
            bestMse += weights[i] * diff * diff;
        }
        for (int step = -4; step <= 4; ++step)
        {
            if (step == 0) continue;
            float iscaleIs = (0.1f * step + nmax) / max;
            float scaleIs = 1 / iscaleIs;
            float mse = 0;
            for (int i = 0; i < n; ++i)
            {
                int l = Math.Min(nmax, GgmlRounding.NearestInt(iscaleIs * x[i]));
                float diff = x[i] - scaleIs * l;
                mse += weights[i] * diff * diff;
            }
            if (mse < bestMse)
            {
                bestMse = mse;
                iscale = iscaleIs;
            }
        }
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; ++i)
        {
            int l = Math.Min(nmax, GgmlRounding.NearestInt(iscale * x[i]));
            L[i] = (byte)l;
            float w = weights[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (int itry = 0; itry < 5; ++itry)
        {
            int changed = 0;
            for (int i = 0; i < n; ++i)
            {
                float w = weights[i];
                float slx = sumlx - w * x[i] * L[i];
                float sl2 = suml2 - w * L[i] * L[i];
                if (slx > 0 && sl2 > 0)
                {
                    int newL = Math.Min(nmax, GgmlRounding.NearestInt(x[i] * sl2 / slx));
                    if (newL != L[i])
                    {
                        slx += w * x[i] * newL;
                        sl2 += w * newL * newL;
                        if (slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            L[i] = (byte)newL;
                            sumlx = slx;
                            suml2 = sl2;
                            ++changed;
                        }
                    }
                }
            }
            if (changed == 0) break;
        }
        return sumlx / suml2;
    }

    /// <summary>σ² of the legacy quantizers with an importance matrix: Σx² / n over the whole row.</summary>
    public static float RowSigma2(float* x, int n)
    {
        float sumX2 = 0;
        for (int j = 0; j < n; ++j) sumX2 += x[j] * x[j];
        return sumX2 / n;
    }

    /// <summary>The importance weights of ggml's K-quants: qw[l] · sqrt(σ² + x[l]²) for n values; returns their sum.</summary>
    public static float ImportanceWeights(int n, float* x, float* qw, float sigma2, float* weights)
    {
        for (int l = 0; l < n; ++l) weights[l] = qw[l] * MathF.Sqrt(sigma2 + x[l] * x[l]);
        float sumw = 0;
        for (int l = 0; l < n; ++l) sumw += weights[l];
        return sumw;
    }

    /// <summary>
    /// The shared part of ggml's <c>quantize_row_q4_K_impl</c> and <c>quantize_row_q5_K_impl</c> with an importance matrix: per
    /// 32-element sub-block a make_qkx3_quants fit (rmin -0.9, rdelta 0.05, 36 steps) under qw · sqrt(σ² + x²), σ² = 2·Σx²/256;
    /// the 6-bit scales and mins by make_qp_quants under the sub-blocks' weight sums; then the final levels L (0..nmax).
    /// ggml's Q5_K clamps the 6-bit values to 63 (<paramref name="clampTo63"/>), its Q4_K does not.
    /// </summary>
    public static void QuantizeScaleMinSuperBlockWeighted(float* x, float* qw, int nmax, bool clampTo63,
        byte* L, byte* scalesOut, out ushort dOut, out ushort dminOut)
    {
        float* mins = stackalloc float[QK_K / 32];
        float* scales = stackalloc float[QK_K / 32];
        float* sw = stackalloc float[QK_K / 32];
        float* weights = stackalloc float[32];
        byte* Laux = stackalloc byte[32];
        byte* Ls = stackalloc byte[QK_K / 32];
        byte* Lm = stackalloc byte[QK_K / 32];
        float sumX2 = 0;
        for (int l = 0; l < QK_K; ++l) sumX2 += x[l] * x[l];
        float sigma2 = 2 * sumX2 / QK_K;
        for (int j = 0; j < QK_K / 32; ++j)
        {
            sw[j] = ImportanceWeights(32, x + 32 * j, qw + 32 * j, sigma2, weights);
            // make_qkx3_quants with weights is make_qkx2_quants operation for operation
            scales[j] = MakeQkx2Quants(32, nmax, x + 32 * j, weights, L + 32 * j, out mins[j], Laux, -0.9f, 0.05f, 36, false);
        }
        float dBlock = MakeQpQuants(QK_K / 32, 63, scales, Ls, sw);
        float mBlock = MakeQpQuants(QK_K / 32, 63, mins, Lm, sw);
        for (int k = 0; k < ScaleMinK4.Bytes; k++) scalesOut[k] = 0;
        for (int j = 0; j < QK_K / 32; ++j)
        {
            byte ls = Ls[j], lm = Lm[j];
            if (clampTo63)
            {
                ls = Math.Min((byte)63, ls);
                lm = Math.Min((byte)63, lm);
            }
            ScaleMinK4.Pack(scalesOut, j, ls, lm);
        }
        dOut = HalfBits.FromFloat(dBlock);
        dminOut = HalfBits.FromFloat(mBlock);
        FinalLevels(x, nmax, L, scalesOut, dOut, dminOut);
    }
}
