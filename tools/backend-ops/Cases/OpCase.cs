using Infer.Runtime.Gguf;

namespace Infer.BackendOps.Cases;

/// <summary>One test case: an operation of the backend seam at one shape and weight type, run on every side of a <see cref="Trio"/>.</summary>
internal abstract class OpCase
{
    /// <summary>The operation, in ggml's style (MUL_MAT, NORM_QKV_ROPE, ...): what <c>-o</c> filters on.</summary>
    public abstract string Op { get; }

    /// <summary>The weight type(s), lower case as GGUF names them ("q4_0", "q4_k+q6_k"), or "f32" for operations without weights.</summary>
    public virtual string Type => "f32";

    /// <summary>The shape and variant, as key=value pairs.</summary>
    public abstract string Shape { get; }

    /// <summary>Most tokens one batch of the case holds (the backends are sized for it).</summary>
    public virtual int Batch => 1;

    /// <summary>Runs the case and compares its outputs; the comparisons are read before the next operation runs.</summary>
    public abstract List<Comparison> Run(Trio t, Random rng);

    public static string TypeName(GgmlType t) => GgmlTypeInfo.Name(t).ToLowerInvariant();

    /// <summary>Row lengths that exercise a format: odd lengths for float types, whole blocks otherwise.</summary>
    public static int[] Cols(GgmlType t, bool quick) => GgmlTypeInfo.BlockSize(t) switch
    {
        1 => quick ? [17, 64] : [1, 17, 255, 2048],
        32 => quick ? [32, 96] : [32, 288, 2048],
        _ => quick ? [256] : [256, 768, 2048],
    };

    /// <summary>The weight types the GPU backend runs.</summary>
    public static readonly GgmlType[] WeightTypes =
        [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
            GgmlType.Q3_K,
            GgmlType.Q2_K,
            GgmlType.IQ4_XS,
            GgmlType.Q4_1,
            GgmlType.Q5_0,
            GgmlType.Q5_1,
            GgmlType.IQ4_NL];
}
