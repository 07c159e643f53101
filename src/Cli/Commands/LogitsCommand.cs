using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text.Json;
using Infer.Cli.Options;
using Infer.Runtime.Sampling;

namespace Infer.Cli.Commands;

/// <summary>
/// <c>infer logits -m MODEL (--prompt TEXT | --ids 1,2,3) [--no-bos] [--out FILE] [--greedy N]</c>: writes the last
/// position's logits (float32 little-endian) to FILE and prints {"input_ids":[...],"greedy_ids":[...]}.
/// </summary>
internal static class LogitsCommand
{
    public static Command Create(CliContext io)
    {
        var prompt = new Option<string?>("--prompt", "-p") { Description = "text to tokenize (with BOS unless --no-bos)", HelpName = "TEXT" };
        var ids = new Option<string?>("--ids") { Description = "token ids instead of text", HelpName = "1,2,3" };
        var noBos = new Option<bool>("--no-bos") { Description = "do not add the BOS token to --prompt" };
        var outFile = new Option<string?>("--out", "-o")
        {
            Description = "write the last position's logits (float32 little-endian) here", HelpName = "FILE",
        };
        var greedy = new Option<int>("--greedy") { Description = "also decode N greedy tokens", HelpName = "N", DefaultValueFactory = _ => 0 }
            .Check(v => v >= 0 ? null : $"--greedy must be non-negative, got {v}");
        var source = new ModelSourceOptions();
        var runtime = new RuntimeOptions();
        var command = new Command("logits", "the last position's logits of a prompt, and its greedy continuation, for parity checks")
        {
            prompt, ids, noBos, outFile, greedy,
        };
        source.AddTo(command);
        runtime.AddTo(command);
        command.SetAction(r =>
        {
            if ((r.GetValue(prompt) is null) == (r.GetValue(ids) is null))
                throw new UsageException("give exactly one of --prompt TEXT or --ids 1,2,3");
            return Execute(r.GetValue(prompt), r.GetValue(ids), r.GetValue(noBos), r.GetValue(outFile), r.GetValue(greedy),
                ModelArgs.Read(r, source, runtime), io);
        });
        return command;
    }

    private static int Execute(string? prompt, string? ids, bool noBos, string? outFile, int greedy, ModelArgs modelArgs, CliContext io)
    {
        var (stdout, stderr) = (io.Out, io.Err);
        using var m = modelArgs.Load(stderr);

        int[] input = ids is not null
            ? TokenIds.Parse(ids, "--ids")
            : m.Tokenizer.Encode(prompt!, addSpecial: !noBos, parseSpecial: true);
        if (input.Length == 0) throw new UsageException("no input tokens");
        foreach (int id in input)
            if ((uint)id >= (uint)m.Model.VocabSize)
                throw new UsageException($"token id {id} is outside the vocabulary (0..{m.Model.VocabSize - 1})");

        var session = m.CreateSession();
        session.Append(input);
        if (outFile is not null)
        {
            using var fs = new FileStream(outFile, FileMode.Create, FileAccess.Write);
            fs.Write(MemoryMarshal.AsBytes(session.Logits.AsSpan()));
        }

        var greedyIds = new List<int>();
        for (int i = 0; i < greedy && session.Count < session.ContextLength; i++)
        {
            int next = Sampler.ArgMax(session.Logits);
            greedyIds.Add(next);
            if (i + 1 < greedy) session.Append(next);
        }
        stdout.WriteLine(JsonSerializer.Serialize(new { input_ids = input, greedy_ids = greedyIds }));
        return 0;
    }
}
