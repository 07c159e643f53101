using System.CommandLine;
using System.Diagnostics;
using Infer.Cli.Options;
using Infer.Engine;
using Infer.Kernels.Cpu;
using Infer.Kernels.Cpu.Diagnostics;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;

namespace Infer.Cli.Commands;

/// <summary>
/// <c>infer bench -m MODEL [-p 512] [-n 128] [-d 0] [-r 5] [-t N] [-ctk f16] [-ctv f16] [-o md|json|jsonl|csv]</c>, modelled on
/// llama-bench: prompt processing (pp: one batch of p tokens) and text generation (tg: n tokens one at a time), mean ± standard
/// deviation over r runs, with a roofline column: the bytes tg reads per token times tokens/s, against the read bandwidth
/// measured here. -p, -n, -d, -t, -ctk and -ctv take comma lists; every combination runs in turn (the model is loaded once per
/// thread count and cache type pair). Resident memory (/proc/self/status) is reported after the first load and after the tests.
/// </summary>
internal static class BenchCommand
{
    public static Command Create(CliContext io)
    {
        var options = new BenchArgs.Options();
        var command = new Command("bench", "prompt and generation speed, llama-bench style, with GB/s against the read bandwidth "
            + "and the resident memory; -p, -n, -d, -t, -ctk and -ctv take comma lists and every combination runs");
        options.AddTo(command);
        command.SetAction(r => Execute(options.Read(r), io.Out, io.Err));
        return command;
    }

    private static int Execute(BenchArgs o, TextWriter stdout, TextWriter stderr)
    {
        foreach (int threads in o.Threads) RuntimeOptions.WarnAboutThreads(threads, stderr);
        string path = o.Source.Resolve(stderr);

        using var file = GgufFile.Open(path);
        var config = ModelConfig.FromGguf(file);
        int maxPrompt = o.Prompt.Max(), maxGen = o.Gen.Max(), maxDepth = o.Depth.Max();
        // llama-bench's n_ubatch: forward passes of at most 512 tokens (longer prompts and the depth context go in several)
        int batch = Math.Min(Math.Max(Math.Max(maxPrompt, maxDepth), 1), 512);
        var report = new BenchReport(file, path, config);
        var bandwidths = new Dictionary<int, double>();
        foreach (int threads in o.Threads)
            foreach (var typeK in o.TypeK)
                foreach (var typeV in o.TypeV)
                {
                    var backends = BackendSet.Create(o.Device, o.GpuLayers, config.BlockCount, threads, batch, o.Repack, stderr.WriteLine,
                        file: file);
                    if (o.Profile && (backends.Cpu is not CpuBackend || backends.Gpu is not null))
                    {
                        backends.Dispose();
                        throw new UsageException("--profile times the CPU backend's operations; use it with --device cpu (or -ngl 0)");
                    }
                    var cpu = backends.Cpu as CpuBackend;
                    var profiler = o.Profile ? new ProfilingBackend(cpu!) : null;
                    if (profiler is not null) backends = backends with { Cpu = profiler };
                    var options = new ModelOptions(ContextLength: maxDepth + Math.Max(maxPrompt, maxGen) + 1, BatchSize: batch,
                        CacheTypeK: typeK, CacheTypeV: typeV);
                    long loadStart = Stopwatch.GetTimestamp();
                    using var model = backends.Load(file, options);
                    GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true); // as LoadedModel.Load
                    report.Loaded(model, backends.Gpu, cpu, Stopwatch.GetElapsedTime(loadStart), ProcessMemory.Read());
                    // With a split model the CPU's bandwidth is not the bound of the whole token.
                    if (!o.NoBandwidth && cpu is not null && backends.Gpu is null && !bandwidths.ContainsKey(cpu.ThreadCount))
                        bandwidths[cpu.ThreadCount] = MemoryBandwidth.Measure(cpu.Pool);
                    double bandwidth = cpu is not null && backends.Gpu is null ? bandwidths.GetValueOrDefault(cpu.ThreadCount) : 0;
                    RunTests(model, o, profiler, report, bandwidth);
                    report.TestsDone(ProcessMemory.Read());
                }
        report.Write(stdout, o.Output);
        return 0;
    }

    /// <summary>Every (depth, test) of <paramref name="o"/> on one loaded model, in llama-bench's order: each depth, pp then tg.</summary>
    private static void RunTests(LlamaModel model, BenchArgs o, ProfilingBackend? profiler, BenchReport report, double bandwidth)
    {
        var c = model.Config;
        int batch = model.BatchSize;
        var rng = new Random(42);
        int[] tokens = Enumerable.Range(0, model.ContextLength).Select(_ => rng.Next(c.VocabSize)).ToArray();
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

        void Generate(int depth, int n)
        {
            for (int i = 0; i < n; i++)
            {
                positions[0] = depth + i;
                last[0] = 0;
                model.Forward(tokens.AsSpan(depth + i, 1), positions.AsSpan(0, 1), sequences.AsSpan(0, 1), last, logits);
            }
        }

        foreach (int depth in o.Depth)
        {
            // llama-bench's -d: every test runs after a context of `depth` tokens already in the KV cache (filled once, not timed).
            Prefill(0, depth);
            foreach (int p in o.Prompt.Where(p => p > 0))
            {
                var samples = Measure(() => Prefill(depth, p), o.Repetitions, profiler);
                report.Add(p, 0, depth, samples, p, profiler);
            }
            foreach (int n in o.Gen.Where(n => n > 0))
            {
                var samples = Measure(() => Generate(depth, n), o.Repetitions, profiler);
                report.Add(0, n, depth, samples, n, profiler, bandwidth);
            }
        }
    }

    /// <summary>One warm-up run, then <paramref name="reps"/> timed runs: the time of each.</summary>
    private static TimeSpan[] Measure(Action run, int reps, ProfilingBackend? profiler)
    {
        run();
        profiler?.Reset();
        var times = new TimeSpan[reps];
        for (int i = 0; i < reps; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            run();
            times[i] = Stopwatch.GetElapsedTime(t0);
        }
        return times;
    }
}
