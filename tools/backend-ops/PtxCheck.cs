using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using ILGPU;
using Infer.Kernels.Gpu;

namespace Infer.BackendOps;

/// <summary><c>backend-ops ptx</c>'s options.</summary>
/// <param name="Arch">sm_XY, what ptxas assembles for.</param>
/// <param name="Isa">the PTX ISA version, MAJOR.MINOR.</param>
/// <param name="Opt">ILGPU's optimization level, 1 or 2.</param>
/// <param name="OutDir">where the files go (null: a temporary folder).</param>
/// <param name="Ptxas">the assembler named on the command line (null: $PTXAS, then PATH).</param>
/// <param name="Assemble">false: PTX only.</param>
/// <param name="Json">the JSON file to write, if any.</param>
internal sealed record PtxOptions(string Arch, string Isa, string Opt, string? OutDir, string? Ptxas, bool Assemble, string? Json);

/// <summary>What ptxas said of one kernel (-v): registers per thread, spill bytes, static shared memory.</summary>
internal sealed record PtxasInfo(string Kernel, bool Ok, int Registers, int SpillStores, int SpillLoads, int SharedBytes, int StackBytes,
    string Message);

/// <summary>
/// <c>backend-ops ptx</c>: every kernel compiled to PTX without a device (ILGPU's PTX backend), written to a folder and,
/// when NVIDIA's <c>ptxas</c> is found, assembled for the architecture: a GPU machine's first run should not be where a
/// kernel's inline PTX or shared memory is first found wrong.
/// </summary>
internal static partial class PtxCheck
{
    public static int Run(PtxOptions o, TextWriter stdout, TextWriter stderr)
    {
        var (arch, isa, opt, outDir, named, assemble, json) = o;
        // the command line checks these as it parses (Commands.PtxCommand)
        if ((ArchProblem(arch) ?? IsaProblem(isa) ?? OptProblem(opt)) is { } problem) throw new UsageException(problem);
        var (m, v) = (ArchPattern().Match(arch), IsaPattern().Match(isa));
        string sm = m.Groups[1].Value;
        int smMajor = int.Parse(sm[..^1], CultureInfo.InvariantCulture), smMinor = sm[^1] - '0';
        int isaMajor = int.Parse(v.Groups[1].Value, CultureInfo.InvariantCulture);
        int isaMinor = int.Parse(v.Groups[2].Value, CultureInfo.InvariantCulture);

        if (named is not null && !File.Exists(named)) throw new UsageException($"--ptxas: no such file '{named}'");
        string? ptxas = assemble ? named ?? FindPtxas() : null;
        string dir = outDir ?? Path.Combine(Path.GetTempPath(), $"backend-ops-ptx-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        if (ptxas is null && assemble) stderr.WriteLine("backend-ops: ptxas not found (--ptxas PATH, PTXAS or PATH): PTX is written, not assembled");
        var rows = new List<PtxasInfo>();
        var targets = new SortedSet<string>(StringComparer.Ordinal);
        var level = opt == "1" ? OptimizationLevel.O1 : OptimizationLevel.O2;
        foreach (var (name, ptx) in PtxListing.Compile(smMajor, smMinor, isaMajor, isaMinor, level))
        {
            if (TargetPattern().Match(ptx) is { Success: true } t) targets.Add(t.Groups[1].Value);
            string file = Path.Combine(dir, FileName(name) + ".ptx");
            File.WriteAllText(file, ptx);
            var info = ptxas is null ? new PtxasInfo(name, true, 0, 0, 0, 0, 0, "compiled to PTX") : Assemble(ptxas, arch, name, file);
            rows.Add(info);
            stdout.WriteLine(info.Ok && ptxas is not null
                ? $"  {name,-36} {info.Registers,3} regs  spill {info.SpillStores}/{info.SpillLoads} B  smem {info.SharedBytes,6} B  "
                  + $"stack {info.StackBytes} B  {(info.SpillStores + info.SpillLoads > 0 ? "SPILLS" : "OK")}"
                : $"  {name,-36} {(info.Ok ? "" : "FAIL  ")}{info.Message}");
        }
        int failed = rows.Count(r => !r.Ok);
        // ILGPU 1.5.3 writes `.target sm_80` when asked for sm_90: the driver (or ptxas -arch) still compiles it for the device
        stdout.WriteLine($"{rows.Count} kernels at O{opt} for {arch} (PTX ISA {isa}, .target {string.Join(",", targets)}) in {dir}: "
            + (ptxas is null ? "not assembled" : $"{rows.Count - failed} assembled, {failed} failed"));
        if (json is not null)
        {
            string target = string.Join(",", targets);
            Program.WriteJson(json, new { command = "ptx", arch, isa, optimization = $"O{opt}", target, ptxas, kernels = rows });
        }
        return failed > 0 ? Program.ExitFailed : 0;
    }

    private static PtxasInfo Assemble(string ptxas, string arch, string name, string file)
    {
        var psi = new ProcessStartInfo(ptxas) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var arg in new[] { $"-arch={arch}", "-v", "-o", file + ".cubin", file }) psi.ArgumentList.Add(arg);
        using var p = Process.Start(psi) ?? throw new IOException($"could not start {ptxas}");
        var stdoutTask = p.StandardOutput.ReadToEndAsync();
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        string text = (stdoutTask.Result + err).Trim();
        if (p.ExitCode != 0)
        {
            var lines = text.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0).Take(4);
            return new PtxasInfo(name, false, 0, 0, 0, 0, 0, string.Join(" | ", lines));
        }
        int Num(Regex r) => r.Match(text) is { Success: true } x ? int.Parse(x.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
        return new PtxasInfo(name, true, Num(RegsPattern()), Num(SpillStorePattern()), Num(SpillLoadPattern()), Num(SmemPattern()),
            Num(StackPattern()), "");
    }

    /// <summary>$PTXAS, then ptxas on PATH, then /usr/local/cuda/bin/ptxas; null when none is there.</summary>
    public static string? FindPtxas()
    {
        if (Environment.GetEnvironmentVariable("PTXAS") is { Length: > 0 } env && File.Exists(env)) return env;
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Append("/usr/local/cuda/bin");
        return dirs.Select(d => Path.Combine(d, "ptxas")).FirstOrDefault(File.Exists);
    }

    private static string FileName(string kernel) => new(kernel.Select(c => char.IsLetterOrDigit(c) || c == '_' ? c : '-').ToArray());

    /// <summary>Why <paramref name="arch"/> is not an --arch (null: it is one).</summary>
    internal static string? ArchProblem(string arch) =>
        ArchPattern().IsMatch(arch) ? null : $"--arch expects sm_XY (sm_90, sm_80, ...), got '{arch}'";

    internal static string? IsaProblem(string isa) => IsaPattern().IsMatch(isa) ? null : $"--isa expects MAJOR.MINOR (7.8, 8.0, ...), got '{isa}'";

    internal static string? OptProblem(string opt) => opt is "1" or "2" ? null : $"--opt expects 1 or 2 (ILGPU's O1 or O2), got '{opt}'";

    [GeneratedRegex(@"^sm_(\d{2,3})$")]
    private static partial Regex ArchPattern();

    [GeneratedRegex(@"^(\d+)\.(\d)$")]
    private static partial Regex IsaPattern();

    [GeneratedRegex(@"^\.target (\S+)", RegexOptions.Multiline)]
    private static partial Regex TargetPattern();

    [GeneratedRegex(@"Used (\d+) registers")]
    private static partial Regex RegsPattern();

    [GeneratedRegex(@"(\d+) bytes spill stores")]
    private static partial Regex SpillStorePattern();

    [GeneratedRegex(@"(\d+) bytes spill loads")]
    private static partial Regex SpillLoadPattern();

    [GeneratedRegex(@"(\d+) bytes smem")]
    private static partial Regex SmemPattern();

    [GeneratedRegex(@"(\d+) bytes stack frame")]
    private static partial Regex StackPattern();
}
