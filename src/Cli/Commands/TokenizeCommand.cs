using System.Text.Json;
using Infer.Runtime.Gguf;
using Infer.Runtime.Tokenizers;

namespace Infer.Cli.Commands;

/// <summary><c>infer tokenize -m MODEL -p TEXT [--no-special]</c> prints {"ids":[...]}; <c>--detokenize 1,2,3</c> prints the text.</summary>
internal static class TokenizeCommand
{
    public static int Execute(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        var a = new Args(argv, ["--no-special"]);
        var source = ModelSource.Read(a);
        string? text = a.String("-p", "--prompt");
        string? detok = a.String("--detokenize");
        bool noSpecial = a.Flag("--no-special");
        a.EnsureAllUsed();
        string path = source.Resolve(stderr);
        if ((text is null) == (detok is null)) throw new UsageException("give exactly one of -p TEXT or --detokenize 1,2,3");

        using var file = GgufFile.Open(path);
        var tok = Tokenizer.FromGguf(file);
        if (text is not null)
        {
            int[] ids = tok.Encode(text, addSpecial: !noSpecial, parseSpecial: true);
            stdout.WriteLine(JsonSerializer.Serialize(new { ids }));
        }
        else
        {
            int[] ids = Args.ParseIds(detok!, "--detokenize");
            foreach (int id in ids)
                if ((uint)id >= (uint)tok.VocabSize) throw new UsageException($"token id {id} is outside the vocabulary (0..{tok.VocabSize - 1})");
            stdout.WriteLine(tok.Decode(ids));
        }
        return 0;
    }
}
