using System.Text.Json;

namespace Infer.BackendOps;

/// <summary>
/// <c>backend-ops</c>, modelled on llama.cpp's test-backend-ops: checks every operation of the backend seam on a GPU
/// against the CPU backend (<c>test</c>), times them (<c>perf</c>), checks whole fixture models (<c>fixtures</c>,
/// <c>check-logits</c>) and writes the device check's report (<c>report</c>). <see cref="Run"/> is the entry point the
/// tests call in-process; the commands and their options are in <see cref="Commands"/>.
/// </summary>
public static class Program
{
    /// <summary>Exit code when a check ran and something failed (the value of <see cref="ExitCodes.BadInput"/>, a bad input file).</summary>
    public const int ExitFailed = ExitCodes.BadInput;

    /// <summary>Exit code when the device asked for is not present (the device check reports the step as skipped).</summary>
    public const int ExitNoDevice = 4;

    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>
    /// Runs one command: 0 passed, 1 a check failed or an input file is bad, 2 a usage error (one line on
    /// <paramref name="stderr"/>), 3 a bug, 4 no such device.
    /// </summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr) =>
        CommandLineApp.Run(Commands.Root(stdout, stderr), "backend-ops", args, stdout, stderr, ExitCodeFor);

    private static int? ExitCodeFor(Exception e) => e switch
    {
        NoDeviceException => ExitNoDevice,
        IOException or UnauthorizedAccessException or ArgumentException or InvalidDataException or JsonException
            or Infer.Runtime.ModelFormatException or NotSupportedException => ExitFailed,
        _ => null,
    };

    /// <summary><c>test</c>: every case the filters keep, on each device <paramref name="device"/> names (or the list only).</summary>
    internal static int Test(TestOptions options, string device, string? json, bool list, TextWriter stdout, TextWriter stderr)
    {
        if (list)
        {
            var cases = Cases.Grid.All(options.Quick).Where(c => options.Keeps(c.Op, c.Type, c.Shape)).ToList();
            foreach (var c in cases) stdout.WriteLine($"  {c.Op,-16} {c.Type,-10} {c.Shape}");
            stdout.WriteLine($"{cases.Count} cases");
            return 0;
        }
        var reports = new List<DeviceReport>();
        foreach (var request in DeviceChoice.Resolve(device, stderr))
            reports.Add(TestRunner.Run(request, options, stdout));
        if (json is not null) WriteJson(json, new { command = "test", devices = reports.Select(Report.ToJson) });
        int passed = reports.Sum(r => r.Passed), failed = reports.Sum(r => r.Failed), notRun = reports.Sum(r => r.NotRun);
        stdout.WriteLine($"{reports.Count} device{(reports.Count == 1 ? "" : "s")}: {passed} passed, {failed} failed"
            + (notRun > 0 ? $", {notRun} not run" : ""));
        return failed > 0 || notRun > 0 || passed == 0 ? ExitFailed : 0;
    }

    /// <summary><c>perf</c>: the timings on each device <paramref name="device"/> names, or on the CPU backend (<c>cpu</c>).</summary>
    internal static int Perf(PerfOptions options, string device, string? json, TextWriter stdout, TextWriter stderr)
    {
        var rows = device.Trim().ToLowerInvariant() == "cpu"
            ? PerfRunner.RunCpu(options, stdout)
            : DeviceChoice.Resolve(device, stderr).SelectMany(r => PerfRunner.Run(r, options, stdout)).ToList();
        if (json is not null) WriteJson(json, new { command = "perf", results = rows });
        return rows.Count > 0 ? 0 : ExitFailed;
    }

    internal static void WriteJson(string path, object value)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        File.WriteAllText(path, JsonSerializer.Serialize(value, JsonOptions));
    }

    internal static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };
}
