namespace Infer.BackendOps;

/// <summary>A named bound on the normalized mean squared error of a result.</summary>
public readonly record struct Bound(string Name, double Value)
{
    /// <summary>ggml test-backend-ops' default <c>max_nmse_err</c>: float32 arithmetic in another order.</summary>
    public static readonly Bound F32 = new("f32", 1e-7);

    /// <summary>
    /// test-backend-ops' <c>max_nmse_err</c> of <c>test_mul_mat</c>: the CPU backend quantizes activations to Q8_0 (Q8_K for
    /// k-quants) before its integer dots, so its products differ from the float ones by the activations' rounding
    /// (about 1e-5 for uniform inputs).
    /// </summary>
    public static readonly Bound MulMatQ8 = new("mul_mat_q8", 5e-4);

    public override string ToString() => $"{Value:0e0} ({Name})";
}

/// <summary>One output of a case compared with its reference.</summary>
/// <param name="What">which output and which backend ("gpu y", "cpu q").</param>
/// <param name="Nmse">Σ(ref - x)² / Σ ref² (ggml's nmse); NaN when x holds a NaN (an element never written).</param>
/// <param name="Bound">the largest <paramref name="Nmse"/> that passes.</param>
public sealed record Comparison(string What, double Nmse, Bound Bound)
{
    public bool Ok => Nmse <= Bound.Value; // false for NaN

    /// <summary>
    /// Compares <paramref name="actual"/> with <paramref name="expected"/> (equal lengths); with <paramref name="floor"/>, each
    /// reference value counts in the denominator as at least its floor (<see cref="Normalized"/>).
    /// </summary>
    public static Comparison Of(string what, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, Bound bound,
        ReadOnlySpan<float> floor = default)
    {
        if (actual.Length != expected.Length)
            throw new InvalidOperationException($"{what}: {actual.Length} values compared with {expected.Length}");
        return new Comparison(what, Normalized(expected, actual, floor), bound);
    }

    /// <summary>
    /// ggml's nmse(a, b) = mse(a, b) / mse(a, 0) with a the reference, in double; any NaN or infinity gives NaN. With a
    /// <paramref name="floor"/> (one per value), the denominator takes max(a², floor²): for a quantized dot, the typical size of
    /// a sum of its k terms (Σ|w·x| / √k), so that a case of one output whose terms happen to cancel is not judged by its
    /// activations' rounding relative to a near-zero result (the noise is the terms' size, not the result's).
    /// </summary>
    public static double Normalized(ReadOnlySpan<float> reference, ReadOnlySpan<float> actual, ReadOnlySpan<float> floor = default)
    {
        double num = 0, den = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            if (!float.IsFinite(actual[i]) || !float.IsFinite(reference[i])) return double.NaN;
            double d = (double)reference[i] - actual[i];
            num += d * d;
            double r = reference[i];
            if (!floor.IsEmpty) r = Math.Max(Math.Abs(r), floor[i]);
            den += r * r;
        }
        return den == 0 ? num : num / den;
    }
}

/// <summary>The outcome of one test case: its comparisons, or the exception that stopped it.</summary>
public sealed record CaseResult(string Op, string Type, string Shape, IReadOnlyList<Comparison> Comparisons, string? Error, double Seconds)
{
    public bool Ok => Error is null && Comparisons.Count > 0 && Comparisons.All(c => c.Ok);

    /// <summary>The comparison that decides the line: the first failing one, else the worst GPU one, else the worst.</summary>
    public Comparison? Headline =>
        Comparisons.FirstOrDefault(c => !c.Ok)
        ?? Comparisons.Where(c => c.What.StartsWith("gpu", StringComparison.Ordinal)).MaxBy(c => c.Nmse / c.Bound.Value)
        ?? Comparisons.MaxBy(c => c.Nmse / c.Bound.Value);
}
