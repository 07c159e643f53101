using ILGPU;
using ILGPU.Runtime;
using Infer.Kernels.Gpu.Kernels;

namespace Infer.Kernels.Gpu.Backend;

/// <summary>The row-wise kernels: embed, RMSNorm (optionally with the residual add before it), bias, add, SwiGLU, row copies.</summary>
internal sealed class RowLaunchers
{
    private readonly DeviceState d; // short: every launch goes through it
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int> _addBias;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _add;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _swiGlu;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, float> _rmsNorm;

    public RowLaunchers(DeviceState state)
    {
        d = state;
        var acc = d.Acc;
        _addBias = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(GpuKernels.AddBias);
        _add = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(GpuKernels.Add);
        _swiGlu = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(GpuKernels.SwiGlu);
        _rmsNorm = acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, float>(
            GpuKernels.RmsNorm);
    }

    public void Embed(GpuWeight table, GpuActivation x)
    {
        if (x.Cols != table.Cols) throw new ArgumentException($"embedding '{table.Name}' has rows of {table.Cols}, activation has {x.Cols} columns");
        if (d.N == 0) return;
        table.Kernels.Embed(d.N * table.Cols, table.Words.View, (table.Scales ?? d.NoScales).View, d.Batch.View, x.View, table.Cols);
        d.Count();
    }

    /// <summary>
    /// y = norm(x) over groups of w.Cols for the first <paramref name="rows"/> rows; with <paramref name="residual"/>, first
    /// x += residual (written back). The rows start <paramref name="srcOffset"/> floats into x (one gathered row).
    /// </summary>
    public void RmsNorm(GpuActivation x, GpuWeight w, float eps, GpuActivation y, int rows, GpuActivation? residual = null, long srcOffset = 0)
    {
        if (w.Floats is null || x.Cols % w.Cols != 0 || y.Cols != x.Cols)
            throw new ArgumentException($"'{w.Name}' cannot normalize rows of {x.Cols}");
        if (residual is not null && (residual.Cols != x.Cols || residual == y))
            throw new ArgumentException("the residual must be a different activation of the same width");
        if (rows == 0) return;
        var src = x.View.SubView(srcOffset, x.View.Length - srcOffset);
        _rmsNorm(new KernelConfig(rows * (x.Cols / w.Cols), d.Group), src, (residual ?? x).View, w.Floats.View, y.View,
            x.Cols, w.Cols, residual is null ? 0 : 1, eps);
        d.Count();
    }

    public void AddBias(GpuActivation y, GpuWeight bias)
    {
        if (bias.Floats is null || bias.Cols != y.Cols)
            throw new ArgumentException($"bias '{bias.Name}' ({bias.Cols}) does not match rows of {y.Cols}");
        if (d.N == 0) return;
        _addBias(d.N * y.Cols, y.View, bias.Floats.View, y.Cols);
        d.Count();
    }

    public void Add(GpuActivation x, GpuActivation y)
    {
        if (y.Cols != x.Cols) throw new ArgumentException("added activations differ in width");
        if (d.N == 0) return;
        _add(d.N * x.Cols, x.View, y.View);
        d.Count();
    }

    public void SwiGlu(GpuActivation gate, GpuActivation up)
    {
        if (up.Cols != gate.Cols) throw new ArgumentException("gate and up differ in width");
        if (d.N == 0) return;
        _swiGlu(d.N * gate.Cols, gate.View, up.View);
        d.Count();
    }

    /// <summary>dst[i] = src[rows[i]]: a device copy per row (none for a row already in place).</summary>
    public void GatherRows(GpuActivation s, ReadOnlySpan<int> rows, GpuActivation dst)
    {
        if (s.Cols != dst.Cols || rows.Length > dst.Rows) throw new ArgumentException("gather shapes differ");
        for (int i = 0; i < rows.Length; i++)
        {
            if ((uint)rows[i] >= (uint)s.Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"row {rows[i]} is outside 0..{s.Rows - 1}");
            if (ReferenceEquals(s, dst) && rows[i] == i) continue;
            s.View.SubView((long)rows[i] * s.Cols, s.Cols).CopyTo(dst.View.SubView((long)i * dst.Cols, dst.Cols));
            d.Count();
        }
    }
}
