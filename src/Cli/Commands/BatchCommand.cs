using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Infer.Cli.Options;
using Infer.Runtime.Serving;
using Infer.Server;

namespace Infer.Cli.Commands;

/// <summary>
/// <c>infer batch -m MODEL -i requests.jsonl -o results.jsonl [-np 4]</c>: an OpenAI batch file through the continuous-batching
/// scheduler, with a progress bar. Re-running skips ids already in the output; Ctrl+C stops it, ready to resume.
/// </summary>
internal static class BatchCommand
{
    public static Command Create(CliContext io)
    {
        var input = new Option<string?>("--input", "-i")
        {
            Description = "requests in OpenAI's batch format, one per line", HelpName = "REQUESTS.jsonl",
        };
        var output = new Option<string?>("--output", "-o")
        {
            Description = "answers, appended; ids already there are skipped, so a re-run resumes", HelpName = "RESULTS.jsonl",
        };
        var options = new ServeOptions(http: false);
        var command = new Command("batch", "answer an OpenAI batch file through the continuous-batching scheduler") { input, output };
        options.AddTo(command);
        command.SetAction(r => Execute(
            r.GetValue(input) ?? throw new UsageException("missing -i REQUESTS.jsonl"),
            r.GetValue(output) ?? throw new UsageException("missing -o RESULTS.jsonl"),
            options.Read(r), io.Out, io.Err));
        return command;
    }

    private static int Execute(string input, string output, ServeArgs serve, TextWriter stdout, TextWriter stderr)
    {
        if (!File.Exists(input)) throw new FileNotFoundException($"{input}: file not found");

        using var model = serve.Load(stderr);
        using var scheduler = new Scheduler(model.Model, model.Tokenizer, new SchedulerOptions { StepTokens = serve.Server.StepTokens });
        using var cts = new CancellationTokenSource();
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx =>
        {
            ctx.Cancel = true;
            cts.Cancel();
        });
        var bar = new BatchBar(ProgressBar.For(stderr));
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

    /// <summary>Requests answered of the file, with errors and tokens/s, on the shared <see cref="ProgressBar"/>.</summary>
    private sealed class BatchBar(ProgressBar bar) : IProgress<BatchProgress>
    {
        private readonly long _start = Stopwatch.GetTimestamp();

        public void Report(BatchProgress p)
        {
            double tps = p.GeneratedTokens / Math.Max(Stopwatch.GetElapsedTime(_start).TotalSeconds, 1e-9);
            bar.Report(new ProgressUpdate("requests", p.Skipped + p.Done, Math.Max(p.Total, 1))
            {
                Bytes = false,
                Detail = $"{p.Skipped + p.Done}/{p.Total}, {p.Errors} error{(p.Errors == 1 ? "" : "s")}, {tps:F1} tokens/s",
            });
        }

        public void Done() => bar.Finish();
    }
}
