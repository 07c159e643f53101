using System.Diagnostics;
using System.Runtime.InteropServices;
using Infer.Runtime.Serving;
using Infer.Server;

namespace Infer.Cli.Commands;

/// <summary>
/// <c>infer batch -m MODEL -i requests.jsonl -o results.jsonl [-np 4]</c>: an OpenAI batch file through the continuous-batching
/// scheduler, with a progress bar. Re-running skips ids already in the output; Ctrl+C stops it, ready to resume.
/// </summary>
internal static class BatchCommand
{
    public static int Execute(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        var a = new Args(argv, []);
        string input = a.Required("REQUESTS.jsonl", "-i", "--input");
        string output = a.Required("RESULTS.jsonl", "-o", "--output");
        var serve = ServeArgs.Read(a, http: false);
        a.EnsureAllUsed();
        if (!File.Exists(input)) throw new FileNotFoundException($"{input}: file not found");

        using var model = serve.Load(stderr);
        using var scheduler = new Scheduler(model.Model, model.Tokenizer, new SchedulerOptions { StepTokens = serve.Server.StepTokens });
        using var cts = new CancellationTokenSource();
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx =>
        {
            ctx.Cancel = true;
            cts.Cancel();
        });
        var bar = new BatchBar(stderr, ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected);
        long t0 = Stopwatch.GetTimestamp();
        try
        {
            var summary = new BatchRunner(scheduler, model, serve.Server).RunAsync(input, output, bar, cts.Token).GetAwaiter().GetResult();
            bar.Done();
            double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            stdout.WriteLine($"{summary.Total} requests: {summary.Done} answered ({summary.Errors} errors), {summary.Skipped} already in {output}; " +
                $"{summary.GeneratedTokens} tokens in {seconds:F1} s ({summary.GeneratedTokens / Math.Max(seconds, 1e-9):F1} tokens/s)");
            return 0;
        }
        catch (OperationCanceledException)
        {
            bar.Done();
            stderr.WriteLine($"infer batch: interrupted; run the same command again to answer the rest (answered ids in {output} are skipped)");
            return 130;
        }
    }

    /// <summary>"[#####.....] 12/40 requests, 1 error, 45.2 tokens/s" redrawn in place on a terminal; a line per 10% otherwise.</summary>
    private sealed class BatchBar(TextWriter w, bool interactive) : IProgress<BatchProgress>
    {
        private readonly long _start = Stopwatch.GetTimestamp();
        private readonly Lock _lock = new();
        private int _lastDecile = -1;
        private bool _drawn;

        public void Report(BatchProgress p)
        {
            lock (_lock)
            {
                int todo = Math.Max(1, p.Total - p.Skipped);
                double tps = p.GeneratedTokens / Math.Max(Stopwatch.GetElapsedTime(_start).TotalSeconds, 1e-9);
                string text = $"{p.Skipped + p.Done}/{p.Total} requests, {p.Errors} error{(p.Errors == 1 ? "" : "s")}, {tps:F1} tokens/s";
                if (interactive)
                {
                    int filled = 30 * p.Done / todo;
                    w.Write($"\r[{new string('#', filled)}{new string('.', 30 - filled)}] {text}   ");
                    _drawn = true;
                }
                else if (10 * p.Done / todo is var decile && decile != _lastDecile)
                {
                    _lastDecile = decile;
                    w.WriteLine(text);
                }
            }
        }

        public void Done()
        {
            lock (_lock)
                if (_drawn) w.WriteLine();
        }
    }
}
