using System.Reflection;
using ILGPU;
using ILGPU.Runtime.Cuda;

namespace Infer.Kernels.Gpu.Kernels;

/// <summary>Scalar arguments of the matmul kernel.</summary>
internal struct MatMulArgs
{
    public int Rows, Cols;          // weight [Rows, Cols]
    public int Tokens;              // activation rows to multiply
    public int XStride, YStride;    // floats per activation row of x and y
    public int SliceThreads;        // threads that share one weight row (a power of two)
    public int Int8;                // 1: a one-token tile on the GPU path dots an int8 copy of x (Dot1Q8); 2: DotBlockQ8 where it exists
}

/// <summary>
/// Scalar arguments of <see cref="GpuKernels.MatMulFused"/>: up to three weights of one format over the same input
/// (Q, K and V; or gate and up), each with its own output and optional bias.
/// </summary>
internal struct FusedMatMulArgs
{
    public int Cols;                            // weight row length (all parts)
    public int Tokens;                          // activation rows to multiply
    public int XStride;                         // floats per row of x
    public int SliceThreads;                    // threads that share one weight row (a power of two)
    public int Rows0, Rows1, Rows2;             // rows of each part; 0: absent
    public int YStride0, YStride1, YStride2;    // floats per row of each output
    public int Bias0, Bias1, Bias2;             // 1: the part adds its bias
    public int SwiGlu;                          // 1: parts 0 and 1 are gate and up of Rows0 rows: y0 = silu(W0·x) * (W1·x), y1 = W1·x
    public int Residual;                        // 1: one part; y1 is the residual stream, y1[t, r] += y0[t, r] (YStride1 its row)
    public float Eps;                           // MatMulNorm: RMSNorm epsilon
    public int XbStride;                        // MatMulNorm: floats per row of the normalized copy xb

    public int RopeRows;                        // MatMulNorm with RoPE: grid rows (pairs and unrotated rows of q and k, rows of v)
    public int Int8;                            // 1: one-token tiles dot an int8 copy of x (Dot1Q8); 2: DotBlockQ8 where it exists

    public readonly int TotalRows => RopeRows > 0 ? RopeRows : SwiGlu != 0 ? Rows0 : Rows0 + Rows1 + Rows2;
}

/// <summary>
/// RoPE and the KV store in the epilogue of <see cref="GpuKernels.MatMulNorm"/> over Q, K and V (Enabled = 1): each
/// rotated pair of q and k is one grid row that computes both dot products and writes them rotated; k and v also go
/// to the cache. Views travel inside this structure (the launch has no parameter slots left).
/// </summary>
internal struct RopeStoreViews
{
    public KvViews Cache;
    public ArrayView<float> Cos, Sin;
    public ArrayView<int> Batch;
    public int Enabled;
    public int Dims, NeoX, HeadDim, Heads, KvHeads;
    public int Layer, Layers, ContextLength, PosOffset, SeqOffset;

    /// <summary>Grid rows per head: Dims/2 pairs, then the unrotated rows Dims..HeadDim.</summary>
    public readonly int PerHead => Dims / 2 + HeadDim - Dims;
}

/// <summary>
/// The KV cache as the kernels see it, [sequence][layer][position][kvDim] for K and for V, each stored as float32, as IEEE
/// half (rounded to nearest even on the store, as the CPU backend's f16 cache; read back exactly), or as q8_0 (int8 quants
/// in K8/V8 and one f16 scale per 32 elements in K16/V16, quantized as ggml's reference and the CPU backend's q8_0 cache).
/// Views of a type not in use are one-element placeholders. Element stores skip a q8_0 part: its blocks are written
/// whole by <see cref="StoreBlock"/> (<see cref="GpuKernels.StoreKvBlocks"/>).
/// </summary>
internal struct KvViews
{
    public const int F32 = 0, F16 = 1, Q8_0 = 2, Block = 32;

    public ArrayView<float> K, V;
    public ArrayView<ushort> K16, V16;  // f16 elements, or q8_0 scales
    public ArrayView<sbyte> K8, V8;     // q8_0 quants
    public int KType, VType;            // F32, F16 or Q8_0

    public readonly bool Blocked => KType == Q8_0 || VType == Q8_0;

    public readonly float LoadK(long i) => Load(K, K16, K8, KType, i);

    public readonly float LoadV(long i) => Load(V, V16, V8, VType, i);

    public readonly void StoreK(long i, float x) => Store(K, K16, KType, i, x);

    public readonly void StoreV(long i, float x) => Store(V, V16, VType, i, x);

    private static float Load(ArrayView<float> f, ArrayView<ushort> h, ArrayView<sbyte> q, int type, long i) =>
        type == F32 ? f[i] : type == F16 ? Numeric.HalfToFloat(h[i]) : q[i] * Numeric.HalfToFloat(h[i / Block]);

    private static void Store(ArrayView<float> f, ArrayView<ushort> h, int type, long i, float x)
    {
        if (type == F32) f[i] = x;
        else if (type == F16) h[i] = Numeric.FloatToHalf(x);
    }

    /// <summary>Elements i0..i0+31 of K (isK) or V from src[s0..]: q8_0 quantized as a block, other types element by element.</summary>
    public readonly void StoreBlock(bool isK, long i0, ArrayView<float> src, long s0)
    {
        int type = isK ? KType : VType;
        if (type != Q8_0)
        {
            for (int j = 0; j < Block; j++) Store(isK ? K : V, isK ? K16 : V16, type, i0 + j, src[s0 + j]);
            return;
        }
        // ggml's quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d) with x·(1/d), half away from zero; d stored as f16
        float d = Numeric.Q8Scale(src, s0);
        float id = d != 0 ? 1f / d : 0f;
        var quants = isK ? K8 : V8;
        for (int j = 0; j < Block; j++) quants[i0 + j] = (sbyte)Numeric.RoundHalfAway(src[s0 + j] * id);
        (isK ? K16 : V16)[i0 / Block] = Numeric.FloatToHalf(d);
    }
}

/// <summary>Scalar arguments of <see cref="GpuKernels.RopeStoreKv"/> beyond the attention arguments.</summary>
internal struct RopeStoreArgs
{
    public int Dims;                // rotated dimensions per head
    public int NeoX;                // 1: pairs (i, i + Dims/2); 0: pairs (2i, 2i+1)
    public int KStride, VStride;    // floats per row of k and v
}

/// <summary>Scalar arguments of the attention kernels.</summary>
internal struct AttentionArgs
{
    public int Layer, Layers, ContextLength;
    public int Heads, KvHeads, HeadDim;
    public int QStride, OStride;    // floats per row of q and of the output
    public int Splits;              // position ranges per (token, head)
    public float Scale;
    public int PosOffset, SeqOffset; // where positions and sequences start in the batch buffer
    public int Tokens;              // tokens in the batch
    public int Chunk;               // AttentionPrefill: cached positions per K/V chunk (GpuKernels.PrefillChunk)
}

/// <summary>
/// The ILGPU kernels of <see cref="GpuBackend"/>. Group sizes are a power of two of at most <see cref="MaxGroup"/>;
/// reductions go through shared memory with group barriers (no warp intrinsics), so the same code runs on CUDA,
/// OpenCL and ILGPU's CPU accelerator.
/// </summary>
internal static partial class GpuKernels
{
    public const int MaxGroup = 256;
    public const int TokensPerTile = 4;
    public const int MaxHeadDim = 256;

    /// <summary>Widest row the plain and fused matmuls quantize to int8 for decode (16 KiB of shared quants, 2 KiB of scales).</summary>
    public const int MaxInt8Cols = 16384;

    /// <summary>The same for MatMulNorm, whose normalized rows take up to 32 KiB of dynamic shared memory beside it.</summary>
    public const int MaxNormInt8Cols = 8192;

    /// <summary>
    /// The (Q/K format, V format) pairs of real files whose attention input still takes one <see cref="MatMulNorm{TF, TV}"/>
    /// launch: Q4_K_M keeps attn_v in Q6_K, Q4_K_S in Q5_K (its first layers), Q5_K_M in Q6_K; Q3_K_M in Q5_K then Q4_K, Q3_K_L in
    /// Q5_K; Q2_K in Q4_K (GQA of 4 or more), Q3_K (less) or Q5_K (70B); IQ4_XS and IQ4_NL in Q5_K (GQA of 4 or more); rows that
    /// K-quants cannot take (SmolLM2's 576 and 960) fall back to Q5_0 (from Q4_K) and Q5_1 (from Q5_K), beside attn_v in Q8_0 (from
    /// Q6_K) in Q4_K_M and Q5_K_M.
    /// </summary>
    public static readonly (Type Qk, Type V)[] MixedQkv =
    [
        (typeof(Q4_KWords), typeof(Q6_KWords)), (typeof(Q4_KWords), typeof(Q5_KWords)), (typeof(Q5_KWords), typeof(Q6_KWords)),
        (typeof(Q3_KWords), typeof(Q4_KWords)), (typeof(Q3_KWords), typeof(Q5_KWords)),
        (typeof(Q2_KWords), typeof(Q3_KWords)), (typeof(Q2_KWords), typeof(Q4_KWords)), (typeof(Q2_KWords), typeof(Q5_KWords)),
        (typeof(IQ4_XSWords), typeof(Q5_KWords)), (typeof(IQ4_NLWords), typeof(Q5_KWords)),
        (typeof(Q5_0Words), typeof(Q8_0Words)), (typeof(Q5_1Words), typeof(Q8_0Words)),
    ];

    /// <summary>Every kernel entry point with its instantiations, and whether it is implicitly grouped (takes an Index1D).</summary>
    public static IEnumerable<(string Name, MethodInfo Method, bool Implicit)> EntryPoints()
    {
        var t = typeof(GpuKernels);
        Type[] formats =
            [typeof(F32Words), typeof(F16Words), typeof(BF16Words), typeof(Q8_0Words), typeof(Q4_0Words), typeof(Q4_KWords), typeof(Q5_KWords),
                typeof(Q6_KWords),
                typeof(Q3_KWords),
                typeof(Q2_KWords),
                typeof(IQ4_XSWords),
                typeof(Q4_1Words),
                typeof(Q5_0Words),
                typeof(Q5_1Words),
                typeof(IQ4_NLWords)];
        foreach (var f in formats)
        {
            yield return ($"Embed<{f.Name}>", t.GetMethod(nameof(Embed))!.MakeGenericMethod(f), true);
            yield return ($"MatMul<{f.Name}>", t.GetMethod(nameof(MatMul))!.MakeGenericMethod(f), false);
        }
        foreach (var f in formats)
            yield return ($"MatMulFused<{f.Name}>", t.GetMethod(nameof(MatMulFused))!.MakeGenericMethod(f), false);
        foreach (var f in formats)
            yield return ($"MatMulNorm<{f.Name}>", t.GetMethod(nameof(MatMulNorm))!.MakeGenericMethod(f, f), false);
        foreach (var (qk, v) in MixedQkv)
            yield return ($"MatMulNorm<{qk.Name}, {v.Name}>", t.GetMethod(nameof(MatMulNorm))!.MakeGenericMethod(qk, v), false);
        Type[] gemms =
            [typeof(Q8_0Words), typeof(Q4_0Words), typeof(Q4_KWords), typeof(Q5_KWords), typeof(Q6_KWords),
                typeof(Q3_KWords),
                typeof(IQ4_XSWords),
                typeof(Q4_1Words),
                typeof(Q5_0Words),
                typeof(Q5_1Words),
                typeof(IQ4_NLWords)];
        foreach (var f in gemms)
            yield return ($"GemmQ8<{f.Name}>", t.GetMethod(nameof(GemmQ8))!.MakeGenericMethod(f), false);
        foreach (var f in gemms)
            yield return ($"GemmQ8Wide<{f.Name}>", t.GetMethod(nameof(GemmQ8Wide))!.MakeGenericMethod(f), false);
        foreach (var name in new[] { nameof(AddBias), nameof(Add), nameof(SwiGlu), nameof(Rope), nameof(StoreKv), nameof(StoreKvBlocks),
            nameof(RopeStoreKv) })
            yield return (name, t.GetMethod(name)!, true);
        foreach (var name in new[] { nameof(QuantizeQ8), nameof(RmsNorm), nameof(Attention), nameof(AttentionPrefill) })
            yield return (name, t.GetMethod(name)!, false);
    }

    // ---- reductions over the group (every thread must call them) ----

    private static float GroupSum(ArrayView<float> scratch, float v) => GroupReduce(scratch, v, false);

    private static float GroupMax(ArrayView<float> scratch, float v) => GroupReduce(scratch, v, true);

    /// <summary>
    /// The sum (or the largest, <paramref name="max"/>) of <paramref name="v"/> over the group, in every thread. On CUDA each warp
    /// reduces by butterfly shuffles and the warps' results meet in <paramref name="scratch"/> (two barriers, groups of whole warps);
    /// elsewhere (and for groups under a warp) a tree through <paramref name="scratch"/> with a barrier per level.
    /// </summary>
    private static float GroupReduce(ArrayView<float> scratch, float v, bool max)
    {
        int tid = Group.IdxX;
        if (CudaAsm.IsSupported && Group.DimX >= 32)
        {
            v = WarpReduce(v, max);
            if ((tid & 31) == 0) scratch[tid >> 5] = v;
            Group.Barrier();
            float r = scratch[0];
            for (int w = 1; w < Group.DimX >> 5; w++) r = max ? XMax(r, scratch[w]) : r + scratch[w];
            Group.Barrier();
            return r;
        }
        scratch[tid] = v;
        Group.Barrier();
        for (int s = Group.DimX / 2; s > 0; s >>= 1)
        {
            if (tid < s) scratch[tid] = max ? XMax(scratch[tid], scratch[tid + s]) : scratch[tid] + scratch[tid + s];
            Group.Barrier();
        }
        float result = scratch[0];
        Group.Barrier();
        return result;
    }

    /// <summary>The sum or the largest of <paramref name="v"/> over the warp, in every lane (CUDA only; every lane must call it).</summary>
    private static float WarpReduce(float v, bool max)
    {
        for (int s = 16; s > 0; s >>= 1)
        {
            float o = Numeric.ShuffleXor(v, s);
            v = max ? XMax(v, o) : v + o;
        }
        return v;
    }

    private static float XMax(float a, float b) => a > b ? a : b;
}
