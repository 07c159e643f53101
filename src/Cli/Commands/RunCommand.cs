using System.Diagnostics;
using Infer.Runtime.Sampling;

namespace Infer.Cli.Commands;

/// <summary><c>infer run -m MODEL -p PROMPT [-n N]</c>: streams the generated text; speeds on stderr.</summary>
internal static class RunCommand
{
    public static int Execute(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        var a = new Args(argv, ["--ignore-eos"]);
        string prompt = a.Required("PROMPT", "-p", "--prompt");
        int nPredict = ModelArgs.ReadPredict(a, 128);
        bool ignoreEos = a.Flag("--ignore-eos");
        var sampling = SamplingArgs.Parse(a);
        var modelArgs = ModelArgs.Read(a);
        a.EnsureAllUsed();
        using var m = modelArgs.Load(stderr);

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
            if (!ignoreEos && tok.IsEndOfGeneration(next)) break;
            sampler.Accept(next);
            stdout.Write(decoder.Append(next));
            stdout.Flush();
            if (generated + 1 < nPredict && session.Count < session.ContextLength) session.Append(next);
        }
        stdout.Write(decoder.Flush());
        stdout.WriteLine();
        double genSeconds = Stopwatch.GetElapsedTime(t1).TotalSeconds;
        stderr.WriteLine($"prompt: {input.Length} tokens, {input.Length / Math.Max(promptSeconds, 1e-9):F1} tokens/s | generation: {generated} tokens, {generated / Math.Max(genSeconds, 1e-9):F1} tokens/s");
        return 0;
    }
}
