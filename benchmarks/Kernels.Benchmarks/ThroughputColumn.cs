using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Infer.Benchmarks;

/// <summary>A benchmark that knows how much work one operation does: bytes read (for GB/s) or floating-point operations (for GFLOP/s).</summary>
public interface IThroughput
{
    /// <summary>Bytes one invocation reads from memory (0 when not memory-bound).</summary>
    double BytesPerOp { get; }

    /// <summary>Floating-point (or integer multiply-add) operations per invocation (0 when not reported).</summary>
    double FlopsPerOp { get; }
}

/// <summary>GB/s or GFLOP/s from the mean time of each benchmark case.</summary>
public sealed class ThroughputColumn(bool flops) : IColumn
{
    public string Id => flops ? "GFLOPs" : "GBs";
    public string ColumnName => flops ? "GFLOP/s" : "GB/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => flops ? "10^9 floating-point operations per second" : "10^9 bytes read per second";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is null) return "-";
        var instance = (IThroughput)Activator.CreateInstance(benchmarkCase.Descriptor.Type)!;
        foreach (var p in benchmarkCase.Parameters.Items)
            benchmarkCase.Descriptor.Type.GetProperty(p.Name)?.SetValue(instance, p.Value);
        double work = flops ? instance.FlopsPerOp : instance.BytesPerOp;
        if (work <= 0) return "-";
        double seconds = report.ResultStatistics.Mean * 1e-9;
        return (work / seconds / 1e9).ToString("F1");
    }

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
}

/// <summary>The suite's configuration: both throughput columns.</summary>
public sealed class ThroughputConfig : ManualConfig
{
    public ThroughputConfig()
    {
        AddColumn(new ThroughputColumn(flops: false), new ThroughputColumn(flops: true));
    }
}
