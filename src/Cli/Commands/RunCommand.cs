using System.CommandLine;
using System.Diagnostics;
using Infer.Cli.Options;
using Infer.Runtime.Grammar;
using Infer.Runtime.Sampling;

namespace Infer.Cli.Commands;

/// <summary><c>infer run -m MODEL -p PROMPT [-n N]</c>: streams the generated text; speeds on stderr.</summary>
internal static class RunCommand
{
    public static Command Create(CliContext io)
    {
        var prompt = new Option<string?>("--prompt", "-p") { Description = "the prompt", HelpName = "TEXT" };
        var file = new Option<string?>("--file", "-f") { Description = "read the prompt from a file", HelpName = "FILE" };
        var predict = PredictOption(128, "tokens to generate; -1 until the context is full or the model stops");
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "keep generating past the end-of-text token" };
        var source = new ModelSourceOptions();
        var runtime = new RuntimeOptions();
        var sampling = new SamplingOptions();
        var grammar = new GrammarOptions();
        var command = new Command("run", "generate text from a prompt, streamed to stdout (speeds on stderr)") { prompt, file, predict, ignoreEos };
        sampling.AddTo(command);
        grammar.AddTo(command);
        source.AddTo(command);
        runtime.AddTo(command);
        command.SetAction(r =>
        {
            string text = ReadPrompt(r.GetValue(prompt), r.GetValue(file));
            return Execute(text, r.GetValue(predict), r.GetValue(ignoreEos), sampling.Read(r), grammar.Read(r),
                ModelArgs.Read(r, source, runtime), io);
        });
        return command;
    }

    /// <summary>-n/--n-predict: a count of tokens, or -1 for no limit.</summary>
    public static Option<int> PredictOption(int fallback, string description) => new Option<int>("--n-predict", "-n")
    {
        Description = description, HelpName = "N", DefaultValueFactory = _ => fallback,
    }.Check(n => n >= -1 ? null : $"-n must be a number of tokens, or -1 for no limit; got {n}");

    /// <summary>-p TEXT or -f FILE (as llama.cpp), exactly one.</summary>
    private static string ReadPrompt(string? prompt, string? file)
    {
        if (prompt is not null && file is not null) throw new UsageException("give -p TEXT or -f FILE, not both");
        if (file is null) return prompt ?? throw new UsageException("missing -p PROMPT (or -f FILE)");
        if (Directory.Exists(file)) throw new UsageException($"-f {file}: is a directory");
        return File.Exists(file) ? File.ReadAllText(file) : throw new FileNotFoundException($"{file}: file not found");
    }

    private static int Execute(string prompt, int nPredict, bool ignoreEos, SamplerOptions sampling, GbnfGrammar? grammar, ModelArgs modelArgs,
        CliContext io)
    {
        var (stdout, stderr) = (io.Out, io.Err);
        long loadStart = Stopwatch.GetTimestamp();
        using var m = modelArgs.Load(stderr);
        double loadSeconds = Stopwatch.GetElapsedTime(loadStart).TotalSeconds;
        sampling = GrammarOptions.Bind(sampling, grammar, m.Tokenizer);
        var tok = m.Tokenizer;
        int[] input = tok.Encode(prompt, addSpecial: true, parseSpecial: true);
        if (input.Length == 0) throw new UsageException("the prompt is empty after tokenization");
        if (nPredict < 0) nPredict = m.Model.ContextLength - input.Length;
        if (input.Length >= m.Model.ContextLength)
            throw new Runtime.Model.ContextFullException(m.Model.ContextLength);

        var session = m.CreateSession();
        var sampler = new Sampler(m.Model.VocabSize, sampling);
        foreach (int t in input) sampler.Accept(t);

        long t0 = Stopwatch.GetTimestamp();
        session.Append(input);
        double promptSeconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;

        var decoder = tok.CreateStreamingDecoder();
        long t1 = Stopwatch.GetTimestamp();
        int generated = 0;
        for (; generated < nPredict && session.Count < session.ContextLength; generated++)
        {
            int next = sampler.Sample(session.Logits);
            if ((!ignoreEos || sampling.Grammar is not null) && tok.IsEndOfGeneration(next)) break; // a grammar's sentence is complete
            sampler.Accept(next);
            stdout.Write(decoder.Append(next));
            stdout.Flush();
            if (generated + 1 < nPredict && session.Count < session.ContextLength) session.Append(next);
        }
        stdout.Write(decoder.Flush());
        stdout.WriteLine();
        double genSeconds = Stopwatch.GetElapsedTime(t1).TotalSeconds;
        stderr.WriteLine($"load: {loadSeconds:F2} s | "
            + $"prompt: {input.Length} tokens, {input.Length / Math.Max(promptSeconds, 1e-9):F1} tokens/s | "
            + $"generation: {generated} tokens, {generated / Math.Max(genSeconds, 1e-9):F1} tokens/s");
        return 0;
    }
}
