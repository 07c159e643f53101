using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Infer.BackendOps;

/// <summary>
/// <c>backend-ops report</c>: turns the device check's step table (one tab-separated line per step: name, status, exit code,
/// seconds, the JSON file it wrote or '-', its log) into <c>gpu-check.md</c> (what passed, what failed, the speed table against
/// the issue's targets) and <c>gpu-check.json</c> (the steps with every step's JSON inside).
/// </summary>
internal static class Report
{
    /// <summary>The issue's targets on the H200 (pp512, tg128 tokens/s) and llama.cpp's CUDA numbers on an H100 (2026-11-23).</summary>
    private static readonly Dictionary<string, (double Pp, double Tg, double LlamaPp, double LlamaTg)> Targets = new()
    {
        ["1b.q4_0"] = (39000, 1200, 38964, 595),
        ["1b.q8_0"] = (39500, 940, 39549, 469),
        ["1b.q4_k_m"] = (0, 0, 33847, 553),
        ["8b.q4_0"] = (10350, 400, 10351, 223),
        ["8b.q8_0"] = (10500, 300, 10489, 176),
    };

    public static object ToJson(DeviceReport r) => new
    {
        device = r.Device,
        description = r.Description,
        passed = r.Passed,
        failed = r.Failed,
        not_run = r.NotRun,
        cases = r.Cases.Select(c => new
        {
            op = c.Op, type = c.Type, shape = c.Shape, ok = c.Ok, error = c.Error, seconds = c.Seconds,
            comparisons = c.Comparisons.Select(x => new { what = x.What, nmse = x.Nmse, bound = x.Bound.Value, bound_name = x.Bound.Name }),
        }),
    };

    private sealed record Step(string Name, string Status, int Rc, double Seconds, string? Json, string Log);

    public static int Write(string stepsFile, string outDir, TextWriter output)
    {
        string baseDir = Path.GetDirectoryName(Path.GetFullPath(stepsFile))!;
        var steps = new List<Step>();
        foreach (var line in File.ReadAllLines(stepsFile).Where(l => l.Length > 0 && !l.StartsWith('#')))
        {
            var f = line.Split('\t');
            if (f.Length < 6) throw new InvalidDataException($"{stepsFile}: expected 6 tab-separated fields in '{line}'");
            steps.Add(new Step(f[0], f[1], int.TryParse(f[2], out int rc) ? rc : -1,
                double.TryParse(f[3], NumberStyles.Float, CultureInfo.InvariantCulture, out double s) ? s : 0, f[4] == "-" ? null : f[4], f[5]));
        }
        var md = new StringBuilder();
        var json = new JsonObject { ["generated"] = DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture) };
        var jsonSteps = new JsonArray();
        md.AppendLine("# GPU device check").AppendLine();
        md.AppendLine("| step | status | exit | seconds | summary |").AppendLine("| --- | --- | ---: | ---: | --- |");
        var bench = new List<(string Name, JsonNode Node)>();
        var details = new StringBuilder();
        foreach (var s in steps)
        {
            JsonNode? node = null;
            string summary = "";
            string? path = s.Json is null ? null : Path.IsPathRooted(s.Json) ? s.Json : Path.Combine(baseDir, s.Json);
            if (path is not null && File.Exists(path) && new FileInfo(path).Length > 0) // a step that timed out may leave it empty
            {
                try
                {
                    node = JsonNode.Parse(ExtractJson(File.ReadAllText(path)));
                    summary = Summarize(s.Name, node!, details);
                    if (s.Name.StartsWith("bench", StringComparison.Ordinal)) bench.Add((s.Name, node!));
                }
                catch (JsonException e)
                {
                    summary = $"unreadable JSON: {e.Message}";
                }
            }
            md.AppendLine(CultureInfo.InvariantCulture, $"| {s.Name} | {s.Status} | {s.Rc} | {s.Seconds:F0} | {summary.Replace("|", "/")} |");
            jsonSteps.Add(new JsonObject
            {
                ["name"] = s.Name, ["status"] = s.Status, ["rc"] = s.Rc, ["seconds"] = s.Seconds, ["log"] = s.Log, ["result"] = node,
            });
        }
        json["steps"] = jsonSteps;
        if (bench.Count > 0) AppendBench(md, bench);
        md.Append(details);
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "gpu-check.md"), md.ToString());
        File.WriteAllText(Path.Combine(outDir, "gpu-check.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        output.Write(md.ToString());
        return 0;
    }

    /// <summary>The JSON document in a file: the whole text, or (for a log with notices before it) from the first line starting with '{'.</summary>
    private static string ExtractJson(string text)
    {
        string t = text.TrimStart();
        if (t.StartsWith('{') || t.StartsWith('[')) return t;
        int i = text.IndexOf("\n{", StringComparison.Ordinal);
        return i >= 0 ? text[(i + 1)..] : throw new JsonException("no JSON object in the file");
    }

    /// <summary>One line for the step table; failures and long tables go to <paramref name="details"/>.</summary>
    private static string Summarize(string step, JsonNode node, StringBuilder details)
    {
        string command = node["command"]?.GetValue<string>() ?? "";
        var inv = CultureInfo.InvariantCulture;
        switch (command)
        {
            case "test":
                {
                    var parts = new List<string>();
                    foreach (var d in node["devices"]!.AsArray())
                    {
                        parts.Add($"{d!["description"]}: {d["passed"]} passed, {d["failed"]} failed"
                            + (d["not_run"]?.GetValue<int>() is > 0 ? $", {d["not_run"]} not run (time limit)" : ""));
                        var failed = d["cases"]!.AsArray().Where(c => !c!["ok"]!.GetValue<bool>()).ToList();
                        if (failed.Count == 0) continue;
                        details.AppendLine().AppendLine(inv, $"## {step}: failed cases on {d["description"]}").AppendLine();
                        foreach (var c in failed.Take(200))
                        {
                            var worst = c!["comparisons"]!.AsArray().Where(x => !(D(x!["nmse"]) <= D(x["bound"])))
                                .Select(x => $"{x!["what"]} {Num(D(x["nmse"]))} > {x["bound"]}");
                            details.AppendLine(inv, $"- {c["op"]} {c["type"]} {c["shape"]}: {c["error"] ?? string.Join("; ", worst)}");
                        }
                    }
                    return string.Join("; ", parts);
                }
            case "fixtures":
                {
                    var results = node["results"]!.AsArray();
                    int ok = results.Count(r => r!["Ok"]!.GetValue<bool>());
                    details.AppendLine().AppendLine(inv, $"## {step}").AppendLine();
                    details.AppendLine("| weights | model | case | placement | max abs dlogit | bound | greedy | launches/token | ok |");
                    details.AppendLine("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |");
                    foreach (var r in results)
                        details.AppendLine(inv, $"| {r!["Weights"]} | {r["Model"]} | {r["Case"]} | {r["Placement"]} | {Num(D(r["MaxDiff"]))} | "
                            + $"{Num(D(r["Bound"]))} | {Count(r["GreedyMatched"], r["GreedyTotal"])} | {Count(r["LaunchesPerToken"], null)} | "
                            + $"{(r["Ok"]!.GetValue<bool>() ? "yes" : "NO " + r["Error"])} |");
                    return $"{ok}/{results.Count} passed";
                }
            case "perf":
                {
                    var rows = node["results"]!.AsArray();
                    details.AppendLine().AppendLine(inv, $"## {step}").AppendLine();
                    details.AppendLine("| op | type | shape | n | us/call | GB/s | GFLOP/s | launches |");
                    details.AppendLine("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |");
                    foreach (var r in rows)
                        details.AppendLine(inv, $"| {r!["Op"]} | {r["Type"]} | {r["Shape"]} | {r["Tokens"]} | {D(r["Microseconds"]):F1} | "
                            + $"{D(r["GBs"]):F1} | {D(r["GFlops"]):F1} | {r["Launches"]} |");
                    var best = rows.Where(r => r!["Op"]!.GetValue<string>() == "MUL_MAT" && r["Tokens"]!.GetValue<int>() == 1)
                        .MaxBy(r => D(r!["GBs"]));
                    return $"{rows.Count} timings" + (best is null ? "" : string.Create(inv,
                        $"; best decode GEMV {D(best["GBs"]):F0} GB/s ({best["Type"]} {best["Shape"]})"));
                }
            default:
                if (node["results"] is JsonArray br && node["model"] is not null)
                    return string.Join(", ", br.Select(r => string.Create(inv,
                        $"{r!["test"]} {D(r["tokens_per_second"]):F1} t/s"))) + $", {node["kernel_launches_per_token"]} launches/token";
                return "";
        }
    }

    private static void AppendBench(StringBuilder md, List<(string Name, JsonNode Node)> bench)
    {
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine().AppendLine("## Speed (infer bench, tokens/s, mean ± sd)").AppendLine();
        md.AppendLine("| model | backend | prompt | generation | launches/token | target pp512 / tg128 | llama.cpp H100 pp512 / tg128 |");
        md.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (var (name, node) in bench)
        {
            string key = name.Replace("bench-", "", StringComparison.Ordinal);
            var results = node["results"]!.AsArray();
            string Rate(string prefix) =>
                results.FirstOrDefault(r => r!["test"]!.GetValue<string>().StartsWith(prefix, StringComparison.Ordinal)) is { } r
                ? string.Create(inv, $"{r["test"]} {D(r["tokens_per_second"]):F1} ± {D(r["stddev"]):F1}") : "-";
            string target = Targets.TryGetValue(key, out var t) && t.Pp > 0 ? $"{t.Pp:F0} / {t.Tg:F0}" : "-";
            string llama = Targets.TryGetValue(key, out var l) ? $"{l.LlamaPp:F0} / {l.LlamaTg:F0}" : "-";
            md.AppendLine(inv,
                $"| {key} | {node["backend"]} | {Rate("pp")} | {Rate("tg")} | {node["kernel_launches_per_token"]} | {target} | {llama} |");
        }
    }

    /// <summary>"matched/total", or the value alone without a total; "-" when it is 0 (not measured).</summary>
    private static string Count(JsonNode? value, JsonNode? total) =>
        total is null ? (value?.GetValue<int>() is > 0 ? value.ToJsonString() : "-")
        : total.GetValue<int>() > 0 ? $"{value}/{total}" : "-";

    /// <summary>A number that may have been written as a string ("NaN").</summary>
    private static double D(JsonNode? n) =>
        n is JsonValue v && v.TryGetValue<string>(out var s) ? double.Parse(s, CultureInfo.InvariantCulture) : n?.GetValue<double>() ?? double.NaN;

    private static string Num(double v) => double.IsNaN(v) ? "NaN" : v.ToString("0.00e+00", CultureInfo.InvariantCulture);
}
