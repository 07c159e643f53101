using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Infer.Kernels.Cpu;
using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Runtime.Sampling;

namespace Infer.BackendOps;

/// <summary>A case of a fixture's reference/reference.json (transformers' float32 result from the BF16 weights).</summary>
internal sealed record FixtureCase(string Model, string Dir, string Id, int[] InputIds, int[] GreedyNewIds, string LogitsFile, double Gap)
{
    public float[] Logits() => MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(Path.Combine(Dir, "reference", LogitsFile))).ToArray();

    public static List<FixtureCase> Load(string dir)
    {
        string model = Path.GetFileName(Path.TrimEndingDirectorySeparator(dir));
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "reference", "reference.json")));
        return [.. doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new FixtureCase(model, dir, c.GetProperty("id").GetString()!,
            [.. c.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32())],
            [.. c.GetProperty("greedy_new_ids").EnumerateArray().Select(e => e.GetInt32())],
            c.GetProperty("last_logits_file").GetString()!, c.GetProperty("top1_top2_gap_last").GetDouble()))];
    }

    /// <summary>llama.cpp's largest logit difference from transformers on the q8_0 GGUF, per case id (empty without the file).</summary>
    public static Dictionary<string, double> LlamaCppQ8(string dir)
    {
        string path = Path.Combine(dir, "reference", "llamacpp_q8_0.json");
        if (!File.Exists(path)) return [];
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.GetProperty("cases").EnumerateArray()
            .ToDictionary(c => c.GetProperty("id").GetString()!, c => c.GetProperty("max_abs_diff_vs_transformers_bf16").GetDouble());
    }
}

/// <summary>One whole-model check.</summary>
public sealed record FixtureResult(string Model, string Weights, string Case, string Placement, double MaxDiff, double Bound,
    int GreedyMatched, int GreedyTotal, int LaunchesPerToken, bool Ok, string? Error);

/// <summary>
/// <c>backend-ops fixtures</c>: the fixture models on the GPU, with the bounds the CPU backend's own fixture tests use: BF16
/// weights within 1e-3 of transformers' logits with its greedy tokens (decoded one at a time through the KV cache); Q8_0 within
/// max(1.25 x llama.cpp's distance, that + 0.02), and the same top token where the top two are 0.05 apart; BF16 split with
/// -ngl 1 (layer 0 on the GPU, the rest and the output on the CPU backend) as BF16. These run with an f32 KV cache; one BF16 case
/// per model runs again with the f16 cache (llama.cpp's and our default) within the CPU backend's f16-cache bound, 5e-3, and with
/// the q8_0 cache within its bound, 0.1 (the same top token where the top two are more than 0.2 apart).
/// </summary>
public static class FixtureChecks
{
    public const double Bf16Bound = 1e-3;

    /// <summary>BF16 weights with an f16 KV cache: the CPU backend's fixture bound (at most 3.1e-3 measured there).</summary>
    public const double F16CacheBound = 5e-3;

    /// <summary>BF16 weights with a q8_0 KV cache: the CPU backend's fixture bound (at most 0.069 measured there).</summary>
    public const double Q8_0CacheBound = 0.1;

    /// <summary>
    /// The fixture models under <paramref name="root"/> (those named in <paramref name="only"/>, when any), each case of theirs (or
    /// those in <paramref name="caseIds"/>).
    /// </summary>
    internal static int Run(string root, string device, IReadOnlyList<string> only, IReadOnlyList<string> caseIds, int threads, string? json,
        TextWriter output)
    {
        var request = DeviceChoice.Resolve(device, output)[0];
        // One accelerator for every check: its context keeps the compiled kernels.
        using var gpu = DeviceChoice.Open(request);
        var results = new List<FixtureResult>();
        var dirs = Directory.Exists(Path.Combine(root, "models")) ? Directory.GetDirectories(Path.Combine(root, "models")).Order().ToList() : [];
        dirs = [.. dirs.Where(d => File.Exists(Path.Combine(d, "reference", "reference.json"))
            && (only.Count == 0 || only.Contains(Path.GetFileName(d), StringComparer.OrdinalIgnoreCase)))];
        if (dirs.Count == 0) throw new UsageException($"no fixture models under {Path.Combine(root, "models")}");
        foreach (var dir in dirs)
        {
            string name = Path.GetFileName(dir);
            var cases = FixtureCase.Load(dir).Where(c => caseIds.Count == 0 || caseIds.Contains(c.Id)).ToList();
            if (cases.Count == 0) continue;
            string bf16 = Path.Combine(dir, $"{name}.bf16.gguf"), q8 = Path.Combine(dir, $"{name}.q8_0.gguf");
            if (File.Exists(bf16))
            {
                foreach (var c in cases) results.Add(Check(gpu, bf16, "bf16", c, null, Bf16Bound, true, threads, output));
                results.Add(Check(gpu, bf16, "bf16", cases[0], 1, Bf16Bound, true, threads, output));
                results.Add(Check(gpu, bf16, "bf16", cases[0], null, F16CacheBound, true, threads, output, KvCacheType.F16));
                results.Add(Check(gpu, bf16, "bf16", cases[0], null, Q8_0CacheBound, false, threads, output, KvCacheType.Q8_0));
            }
            var llamaCpp = FixtureCase.LlamaCppQ8(dir);
            if (File.Exists(q8))
                foreach (var c in cases.Where(c => llamaCpp.ContainsKey(c.Id)))
                {
                    double d = llamaCpp[c.Id];
                    results.Add(Check(gpu, q8, "q8_0", c, null, Math.Max(1.25 * d, d + 0.02), false, threads, output));
                }
        }
        int failed = results.Count(r => !r.Ok);
        output.WriteLine($"{results.Count - failed}/{results.Count} fixture checks passed{(failed > 0 ? $"; {failed} FAILED" : "")}");
        if (json is not null) Program.WriteJson(json, new { command = "fixtures", results });
        return failed > 0 ? Program.ExitFailed : 0;
    }

    private static FixtureResult Check(GpuDevice device, string path, string weights, FixtureCase c, int? gpuLayers, double bound,
        bool greedy, int threads, TextWriter output, KvCacheType cache = KvCacheType.F32)
    {
        string placement = (gpuLayers is { } l ? $"-ngl {l}" : "gpu") + (cache == KvCacheType.F32 ? "" : " " + KvCacheTypes.Name(cache));
        FixtureResult result;
        try
        {
            using var file = GgufFile.Open(path);
            var gpu = new GpuBackend(device, GpuBackendOptions.ForRun(64), ownsDevice: false);
            var options = new ModelOptions(ContextLength: 128, BatchSize: 64, CacheTypeK: cache, CacheTypeV: cache);
            using var model = gpuLayers is { } n
                ? LlamaModel.LoadSplit(file, gpu, n, new CpuBackend(threads, 64), options)
                : LlamaModel.Load(file, gpu, options);
            var session = new Session(model);
            session.Append(c.InputIds);
            var expected = c.Logits();
            double diff = MaxAbsDiff(session.Logits, expected);
            double closeCall = cache == KvCacheType.Q8_0 ? 2 * bound : 0.05; // a top-two gap the bound may flip
            bool topOk = greedy || c.Gap <= closeCall || Sampler.ArgMax(session.Logits) == Sampler.ArgMax(expected);
            int matched = 0, launches = 0;
            int total = greedy ? c.GreedyNewIds.Length : 0;
            for (int i = 0; i < total; i++)
            {
                int next = Sampler.ArgMax(session.Logits);
                if (next != c.GreedyNewIds[i]) break;
                matched++;
                if (i + 1 < total)
                {
                    session.Append(next);
                    launches = gpu.LaunchesThisBatch;
                }
            }
            result = new FixtureResult(c.Model, weights, c.Id, placement, diff, bound, matched, total, launches,
                diff <= bound && matched == total && topOk, topOk ? null : "top token differs");
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            result = new FixtureResult(c.Model, weights, c.Id, placement, double.NaN, bound, 0, 0, 0, false, $"{e.GetType().Name}: {e.Message}");
        }
        output.WriteLine(Format(result));
        output.Flush();
        return result;
    }

    public static string Format(FixtureResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        string line = string.Create(inv,
            $"  {r.Weights,-5} {r.Model,-11} {r.Case,-8} {r.Placement,-7} max|dlogit| {r.MaxDiff:0.00e+00} <= {r.Bound:0.00e+00}");
        if (r.GreedyTotal > 0) line += $"  greedy {r.GreedyMatched}/{r.GreedyTotal}";
        if (r.LaunchesPerToken > 0) line += string.Create(inv, $"  launches/token {r.LaunchesPerToken}");
        if (r.Error is not null) line += $"  {r.Error}";
        return line + (r.Ok ? "  OK" : "  FAIL");
    }

    /// <summary>
    /// <c>check-logits</c>: the logits <c>infer logits --out</c> wrote against a fixture case (max |difference| within the bound),
    /// and, given the JSON it printed, its greedy ids against the reference's.
    /// </summary>
    internal static int CheckLogits(string dir, string id, string logitsFile, string? idsJson, double bound, TextWriter output)
    {
        var c = FixtureCase.Load(dir).SingleOrDefault(x => x.Id == id) ?? throw new UsageException($"no case '{id}' in {dir}");
        var actual = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(logitsFile)).ToArray();
        double diff = MaxAbsDiff(actual, c.Logits());
        int matched = 0, total = 0;
        if (idsJson is not null)
        {
            using var doc = JsonDocument.Parse(ExtractJson(File.ReadAllText(idsJson)));
            var ids = doc.RootElement.GetProperty("greedy_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            total = Math.Min(ids.Length, c.GreedyNewIds.Length);
            while (matched < total && ids[matched] == c.GreedyNewIds[matched]) matched++;
            if (total == 0) total = -1; // asked for greedy ids, got none
        }
        bool ok = diff <= bound && matched == total;
        var r = new FixtureResult(c.Model, "file", id, "cli", diff, bound, matched, Math.Max(total, 0), 0, ok, total < 0 ? "no greedy ids" : null);
        output.WriteLine(Format(r));
        return ok ? 0 : Program.ExitFailed;
    }

    internal static int CaseIds(string dir, string id, TextWriter output)
    {
        var c = FixtureCase.Load(dir).SingleOrDefault(x => x.Id == id) ?? throw new UsageException($"no case '{id}' in {dir}");
        output.WriteLine(string.Join(',', c.InputIds));
        return 0;
    }

    /// <summary>The last line that starts with '{' (infer prints its JSON after any notices).</summary>
    private static string ExtractJson(string text) =>
        text.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.StartsWith('{')) ?? throw new InvalidDataException("no JSON line");

    private static double MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new InvalidDataException($"{a.Length} logits, the reference has {b.Length}");
        double m = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = Math.Abs((double)a[i] - b[i]);
            if (double.IsNaN(d)) return double.NaN;
            m = Math.Max(m, d);
        }
        return m;
    }
}
