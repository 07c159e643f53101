using System.Runtime.InteropServices;
using System.Text.Json;
using Infer.Runtime.Sampling;

namespace Infer.Cli.Commands;

/// <summary>
/// <c>infer logits -m MODEL (--prompt TEXT | --ids 1,2,3) [--no-bos] [--out FILE] [--greedy N]</c>: writes the last
/// position's logits (float32 little-endian) to FILE and prints {"input_ids":[...],"greedy_ids":[...]}.
/// </summary>
internal static class LogitsCommand
{
    public static int Execute(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        var a = new Args(argv, ["--no-bos"]);
        string? prompt = a.String("-p", "--prompt");
        string? ids = a.String("--ids");
        bool noBos = a.Flag("--no-bos");
        string? outFile = a.String("-o", "--out");
        int greedy = a.Int(0, "--greedy");
        if ((prompt is null) == (ids is null)) throw new UsageException("give exactly one of --prompt TEXT or --ids 1,2,3");
        if (greedy < 0) throw new UsageException("--greedy must be non-negative");
        var modelArgs = ModelArgs.Read(a);
        a.EnsureAllUsed();
        using var m = modelArgs.Load(stderr);

        int[] input = ids is not null
            ? Args.ParseIds(ids, "--ids")
            : m.Tokenizer.Encode(prompt!, addSpecial: !noBos, parseSpecial: true);
        if (input.Length == 0) throw new UsageException("no input tokens");
        foreach (int id in input)
            if ((uint)id >= (uint)m.Model.VocabSize) throw new UsageException($"token id {id} is outside the vocabulary (0..{m.Model.VocabSize - 1})");

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
