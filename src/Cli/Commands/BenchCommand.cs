using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Infer.Cli.Options;
using Infer.Engine;
using Infer.Kernels.Cpu;
using Infer.Kernels.Cpu.Diagnostics;
using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;

namespace Infer.Cli.Commands;

/// <summary>
/// <c>infer bench -m MODEL [-p 512] [-n 128] [-d 0] [-r 5] [-t N] [-o md|json]</c>, modelled on llama-bench: prompt processing
/// (pp: one batch of p tokens) and text generation (tg: n tokens one at a time), mean ± standard deviation over r runs,
/// with a roofline column: the bytes tg reads per token times tokens/s, against the read bandwidth measured here.
/// </summary>
internal static class BenchCommand
{
    private sealed record Row(string Model, string Size, string Params, string Backend, int? Threads, string Test, double Mean, double Std,
        double? GBs, double? Fraction);

    public static Command Create(CliContext io)
    {
        var prompt = Count("--n-prompt", "-p", "prompt tokens of the pp test; 0 skips it", 512, 0);
        var gen = Count("--n-gen", "-n", "generated tokens of the tg test; 0 skips it", 128, 0);
        var depth = Count("--n-depth", "-d", "run the tests after this many tokens of context", 0, 0);
        var reps = Count("--repetitions", "-r", "timed runs per test", 5, 1);
        var output = new Option<string>("--output", "-o") { Description = "table format", HelpName = "md|json", DefaultValueFactory = _ => "md" }
            .Check(v => v is "md" or "json" ? null : $"-o must be md or json, got '{v}'").Suggest("md", "json");
        var noBandwidth = new Option<bool>("--no-bandwidth") { Description = "skip measuring the read bandwidth" };
        var profile = new Option<bool>("--profile") { Description = "time every operation (CPU backend)" };
        var source = new ModelSourceOptions();
        var runtime = new RuntimeOptions();
        var command = new Command("bench", "prompt and generation speed, llama-bench style, with GB/s against the read bandwidth")
        {
            prompt, gen, depth, reps, output, noBandwidth, profile,
        };
        source.AddTo(command);
        runtime.AddTo(command, contextAndBatch: false);
        command.SetAction(r => Execute(new Settings(r.GetValue(prompt), r.GetValue(gen), r.GetValue(depth), r.GetValue(reps), r.GetValue(output)!,
            r.GetValue(noBandwidth), r.GetValue(profile), r.GetValue(runtime.Threads), !r.GetValue(runtime.NoRepack)),
            source.Read(r), runtime.ReadDevice(r), runtime.ReadGpuLayers(r), io));
        return command;
    }

    private static Option<int> Count(string name, string alias, string description, int fallback, int min) =>
        new Option<int>(name, alias) { Description = description, HelpName = "N", DefaultValueFactory = _ => fallback }
            .Check(v => v >= min ? null : $"{alias} must be at least {min}, got {v}");

    private sealed record Settings(int P, int N, int Depth, int Reps, string Output, bool NoBandwidth, bool Profile, int Threads, bool Repack);

    private static int Execute(Settings s, ModelSource source, DeviceRequest device, int? gpuLayers, CliContext io)
    {
        var (stdout, stderr) = (io.Out, io.Err);
        var (p, n, depth, reps, output) = (s.P, s.N, s.Depth, s.Reps, s.Output);
        var (noBandwidth, profile, threads, repack) = (s.NoBandwidth, s.Profile, s.Threads, s.Repack);
        RuntimeOptions.WarnAboutThreads(threads, stderr);
        string path = source.Resolve(stderr);

        using var file = GgufFile.Open(path);
        int batch = Math.Max(1, Math.Min(Math.Max(Math.Max(p, depth), 1), 2048)); // the depth context is filled in batches too
        int layers = ModelConfig.FromGguf(file).BlockCount;
        var backends = BackendSet.Create(device, gpuLayers, layers, threads, batch, repack, stderr.WriteLine);
        var cpu = backends.Cpu as CpuBackend;
        var gpu = backends.Gpu;
        if (profile && (cpu is null || gpu is not null))
        {
            backends.Dispose();
            throw new UsageException("--profile times the CPU backend's operations; use it with --device cpu (or -ngl 0)");
        }
        var profiler = profile ? new ProfilingBackend(cpu!) : null;
        if (profiler is not null) backends = backends with { Cpu = profiler };
        using var model = backends.Load(file, new ModelOptions(ContextLength: depth + Math.Max(p, n) + 1, BatchSize: batch));
        var c = model.Config;
        // With a split model the CPU's bandwidth is not the bound of the whole token.
        bool cpuOnly = gpu is null;

        long modelBytes = file.Tensors.Sum(t => t.ByteSize);
        long parameters = file.Tensors.Sum(t => t.ElementCount);
        var embd = file.GetTensor("token_embd.weight");
        // Decode reads every weight once, but only one row of the embedding table (unless it doubles as the output).
        long bytesPerToken = modelBytes - (c.TiedOutput ? 0 : embd.ByteSize - embd.RowBytes);
        string modelName = $"{c.Architecture} {Units.FormatCount(parameters)} {DominantType(file)}{(cpu?.RepackedBytes > 0 ? " (repacked)" : "")}";
        double bandwidth = noBandwidth || cpu is null || !cpuOnly ? 0 : MemoryBandwidth.Measure(cpu.Pool);
        int? threadCount = cpu?.ThreadCount;
        string backendName = gpu is null ? "cpu" : cpu is null ? gpu.Name : $"{gpu.Name} {model.Placement[0].Count}/{layers} + cpu";

        var rng = new Random(42);
        int[] tokens = Enumerable.Range(0, depth + Math.Max(p, n)).Select(_ => rng.Next(c.VocabSize)).ToArray();
        var positions = new int[batch];
        var sequences = new int[batch];
        var logits = new float[c.VocabSize];
        int[] last = [0];

        // Tokens at positions first .. first + count - 1, in batches (the KV cache keeps positions below first).
        void Prefill(int first, int count)
        {
            for (int s = 0; s < count; s += batch)
            {
                int len = Math.Min(batch, count - s);
                for (int i = 0; i < len; i++) positions[i] = first + s + i;
                last[0] = len - 1;
                model.Forward(tokens.AsSpan(first + s, len), positions.AsSpan(0, len), sequences.AsSpan(0, len), last, logits);
            }
        }

        void Prompt() => Prefill(depth, p);

        void Generate()
        {
            for (int i = 0; i < n; i++)
            {
                positions[0] = depth + i;
                last[0] = 0;
                model.Forward(tokens.AsSpan(depth + i, 1), positions.AsSpan(0, 1), sequences.AsSpan(0, 1), last, logits);
            }
        }

        // llama-bench's -d: every test runs after a context of `depth` tokens already in the KV cache (filled once, not timed).
        Prefill(0, depth);
        string at = depth > 0 ? $" @ d{depth}" : "";
        var rows = new List<Row>();
        var profiles = new List<(string Test, int Tokens, IReadOnlyList<ProfilingBackend.Entry> Entries)>();
        string size = Units.FormatSize(modelBytes);
        string pars = Units.FormatCount(parameters);
        if (p > 0)
        {
            var (mean, std) = Measure(Prompt, p, reps, profiler);
            if (profiler is not null) profiles.Add(($"pp{p}{at}", p * reps, profiler.Snapshot()));
            rows.Add(new Row(modelName, size, pars, backendName, threadCount, $"pp{p}{at}", mean, std, null, null));
        }
        if (n > 0)
        {
            var (mean, std) = Measure(Generate, n, reps, profiler);
            if (profiler is not null) profiles.Add(($"tg{n}{at}", n * reps, profiler.Snapshot()));
            double gbs = bytesPerToken * mean / 1e9;
            double? fraction = bandwidth > 0 ? gbs * 1e9 / bandwidth : null;
            rows.Add(new Row(modelName, size, pars, backendName, threadCount, $"tg{n}{at}", mean, std, gbs, fraction));
        }

        if (output == "json")
        {
            stdout.WriteLine(JsonSerializer.Serialize(new
            {
                model = modelName, file = path, size_bytes = modelBytes, parameters, threads = threadCount,
                kernel_launches_per_token = gpu?.LaunchesThisBatch,
                backend = model.DescribePlacement(), bytes_per_token = bytesPerToken, read_bandwidth_gbs = bandwidth / 1e9,
                results = rows.Select(r => new
                {
                    test = r.Test, tokens_per_second = r.Mean, stddev = r.Std, gbs = r.GBs, fraction_of_bandwidth = r.Fraction,
                }),
                profile = profiles.Count == 0 ? null : profiles.Select(pr => new
                {
                    test = pr.Test,
                    operations = pr.Entries.Select(e => new
                    {
                        operation = e.Operation, calls = e.Calls, microseconds_per_token = e.Time.TotalMicroseconds / pr.Tokens,
                    }),
                }),
            }));
        }
        else
        {
            stdout.WriteLine("| model | size | params | backend | threads | test | t/s | GB/s | % of read BW |");
            stdout.WriteLine("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
            foreach (var r in rows)
            {
                string threadsText = r.Threads is { } th ? th.ToString() : "-";
                string gbsText = r.GBs is { } g ? g.ToString("F1") : "";
                string fractionText = r.Fraction is { } f ? (f * 100).ToString("F0") + "%" : "";
                stdout.WriteLine($"| {r.Model} | {r.Size} | {r.Params} | {r.Backend} | {threadsText} | {r.Test} | {r.Mean:F2} ± {r.Std:F2} "
                    + $"| {gbsText} | {fractionText} |");
            }
            if (bandwidth > 0)
                stdout.WriteLine($"\nmeasured read bandwidth: {bandwidth / 1e9:F1} GB/s with {threadCount} threads; "
                    + $"tg reads {bytesPerToken / 1e6:F0} MB per token");
            if (gpu is not null)
                stdout.WriteLine($"\n{gpu.Description}: {gpu.LaunchesThisBatch} kernel launches per decoded token"
                    + (cpu is null ? "" : $" ({model.Placement[0].Count} of {layers} layers)"));
            foreach (var (test, tokenCount, entries) in profiles) WriteProfile(stdout, test, tokenCount, entries);
        }
        return 0;
    }

    private static string DominantType(GgufFile f) =>
        GgmlTypeInfo.Name(f.Tensors.GroupBy(t => t.Type).OrderByDescending(g => g.Sum(t => t.ByteSize)).First().Key);

    /// <summary>Per-operation time of one test, slowest first, as a markdown table.</summary>
    private static void WriteProfile(TextWriter stdout, string test, int tokens, IReadOnlyList<ProfilingBackend.Entry> entries)
    {
        double total = entries.Sum(e => e.Time.TotalSeconds);
        stdout.WriteLine($"\nprofile of {test} (operation time per token, over the timed runs):\n");
        stdout.WriteLine("| operation | calls per token | µs per token | % |");
        stdout.WriteLine("| --- | ---: | ---: | ---: |");
        foreach (var e in entries)
            stdout.WriteLine($"| {e.Operation} | {(double)e.Calls / tokens:G3} | {e.Time.TotalMicroseconds / tokens:F1} "
                + $"| {e.Time.TotalSeconds / total * 100:F1} |");
    }

    /// <summary>One warm-up run, then <paramref name="reps"/> timed runs: tokens/s mean and sample standard deviation.</summary>
    private static (double Mean, double Std) Measure(Action run, int tokens, int reps, ProfilingBackend? profiler)
    {
        run();
        profiler?.Reset();
        var rates = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            run();
            rates[i] = tokens / Stopwatch.GetElapsedTime(t0).TotalSeconds;
        }
        double mean = rates.Average();
        double std = reps > 1 ? Math.Sqrt(rates.Sum(r => (r - mean) * (r - mean)) / (reps - 1)) : 0;
        return (mean, std);
    }
}
