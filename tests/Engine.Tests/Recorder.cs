namespace Infer.Engine.Tests;

/// <summary>Records progress reports and log lines synchronously (Progress&lt;T&gt; would post them to a context).</summary>
internal sealed class Recorder : IProgress<double>
{
    public List<double> Values { get; } = [];
    public List<string> Lines { get; } = [];

    public void Report(double value) => Values.Add(value);

    public void Log(string line) => Lines.Add(line);
}
