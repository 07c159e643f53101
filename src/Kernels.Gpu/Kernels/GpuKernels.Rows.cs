using ILGPU;

namespace Infer.Kernels.Gpu.Kernels;

internal static partial class GpuKernels
{
    // ---- RMSNorm over groups of gc elements: y = x / sqrt(mean(x²) + eps) * w ----

    /// <summary>
    /// Grid: one group per (row, chunk of gc elements). With <paramref name="addResidual"/> set it first adds
    /// <paramref name="residual"/> into x (x += r, written back), fusing the residual add that precedes every norm.
    /// Each thread touches the same indices in both passes, so x may alias y.
    /// </summary>
    public static void RmsNorm(ArrayView<float> x, ArrayView<float> residual, ArrayView<float> w, ArrayView<float> y, int cols, int gc,
        int addResidual, float eps)
    {
        var scratch = SharedMemory.Allocate<float>(MaxGroup);
        int chunks = cols / gc;
        long baseIdx = (long)(Grid.IdxX / chunks) * cols + (long)(Grid.IdxX % chunks) * gc;
        float ss = 0;
        for (int i = Group.IdxX; i < gc; i += Group.DimX)
        {
            float v = x[baseIdx + i];
            if (addResidual != 0)
            {
                v += residual[baseIdx + i];
                x[baseIdx + i] = v;
            }
            ss += v * v;
        }
        ss = GroupSum(scratch, ss);
        float scale = 1f / MathF.Sqrt(ss / gc + eps);
        for (int i = Group.IdxX; i < gc; i += Group.DimX) y[baseIdx + i] = x[baseIdx + i] * scale * w[i];
    }

    // ---- element-wise ----

    /// <summary>Index over n * cols: y[t, j] += bias[j].</summary>
    public static void AddBias(Index1D i, ArrayView<float> y, ArrayView<float> bias, int cols) => y[i] += bias[i % cols];

    /// <summary>Index over n * cols: x += y.</summary>
    public static void Add(Index1D i, ArrayView<float> x, ArrayView<float> y) => x[i] += y[i];

    /// <summary>Index over n * cols: gate = silu(gate) * up.</summary>
    public static void SwiGlu(Index1D i, ArrayView<float> gate, ArrayView<float> up)
    {
        float g = gate[i];
        gate[i] = g / (1f + MathF.Exp(-g)) * up[i];
    }

    /// <summary>
    /// Index over n * headsInRow * (dims / 2): rotates one pair of one head by the token's position, with cos/sin from
    /// the table [position, dims / 2] built on the host.
    /// </summary>
    public static void Rope(Index1D idx, ArrayView<float> x, ArrayView<float> cos, ArrayView<float> sin, ArrayView<int> batch,
        int posOffset, int cols, int headDim, int dims, int neox)
    {
        int half = dims / 2;
        int headsInRow = cols / headDim;
        int i = idx % half;
        int h = (idx / half) % headsInRow;
        int t = idx / (half * headsInRow);
        int c = batch[posOffset + t] * half + i;
        long head = (long)t * cols + h * headDim;
        long ia = neox != 0 ? head + i : head + 2 * i;
        long ib = neox != 0 ? head + i + half : head + 2 * i + 1;
        float a = x[ia], b = x[ib];
        x[ia] = a * cos[c] - b * sin[c];
        x[ib] = a * sin[c] + b * cos[c];
    }
}
