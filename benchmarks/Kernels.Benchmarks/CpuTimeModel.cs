using Infer.Kernels.Cpu;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;

namespace Infer.Benchmarks;

/// <summary>
/// Whole-model prompt processing and generation on one thread, timed by that thread's CPU time (so the figures hold on a machine
/// shared with other work): <c>Kernels.Benchmarks cputime model FILE [-p 512] [-n 32] [-r 3] [-t 1] [-b KIB]</c>. Tokens per CPU-second is a core's
/// throughput; with two cores and a parallel split, a quiet machine's wall-clock rate approaches twice it.
/// </summary>
public static unsafe partial class CpuTimeProbe
{
    private static void Model(string[] args)
    {
        string path = args[2];
        int p = Option(args, "-p", 512), n = Option(args, "-n", 32), reps = Option(args, "-r", 3), threads = Option(args, "-t", 1);
        using var file = GgufFile.Open(path);
        var backend = new CpuBackend(threads, maxBatch: p);
        if (Option(args, "-b", 0) is > 0 and var blockKiB) backend.MatMulTokenBlockBytes = blockKiB * 1024L; // activation KiB per token block
        using var model = LlamaModel.Load(file, backend, new ModelOptions(ContextLength: p + n + 1, BatchSize: p));
        var c = model.Config;
        var rng = new Random(42);
        int[] tokens = Enumerable.Range(0, p + n).Select(_ => rng.Next(c.VocabSize)).ToArray();
        var positions = Enumerable.Range(0, p + n).ToArray();
        var sequences = new int[p + n];
        var logits = new float[c.VocabSize];
        int[] last = [p - 1], first = [0];
        void Prompt() => model.Forward(tokens.AsSpan(0, p), positions.AsSpan(0, p), sequences.AsSpan(0, p), last, logits);
        void Generate()
        {
            for (int i = 0; i < n; i++)
                model.Forward(tokens.AsSpan(p + i, 1), positions.AsSpan(p + i, 1), sequences.AsSpan(0, 1), first, logits);
        }
        Prompt(); // warm-up: JIT, first touch of every weight
        Generate();
        var pp = new double[reps];
        var tg = new double[reps];
        var process = System.Diagnostics.Process.GetCurrentProcess();
        // one thread: the thread's CPU time; more: the process's (the workers' too, spinning at barriers included), per thread
        double Now()
        {
            if (threads == 1) return ThreadSeconds();
            process.Refresh();
            return process.TotalProcessorTime.TotalSeconds / threads;
        }
        for (int r = 0; r < reps; r++)
        {
            double t0 = Now();
            Prompt();
            double t1 = Now();
            Generate();
            double t2 = Now();
            pp[r] = p / (t1 - t0);
            tg[r] = n / (t2 - t1);
        }
        Array.Sort(pp);
        Array.Sort(tg);
        Console.WriteLine($"{Path.GetFileName(path)}: pp{p} {pp[reps / 2],6:F1} t/s per CPU-second (best {pp[^1]:F1}), " +
            $"tg{n} {tg[reps / 2],6:F1} (best {tg[^1]:F1}), {threads} thread{(threads > 1 ? "s: process CPU time / threads" : "")}");
    }

    private static int Option(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1]) : fallback;
    }
}
