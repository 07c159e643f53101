using System.CommandLine;
using System.Text.Json;
using Infer.Cli.Options;
using Infer.Runtime.Gguf;
using Infer.Runtime.Tokenizers;

namespace Infer.Cli.Commands;

/// <summary><c>infer tokenize -m MODEL -p TEXT [--no-special]</c> prints {"ids":[...]}; <c>--detokenize 1,2,3</c> prints the text.</summary>
internal static class TokenizeCommand
{
    public static Command Create(CliContext io)
    {
        var text = new Option<string?>("--prompt", "-p") { Description = "text to tokenize", HelpName = "TEXT" };
        var detok = new Option<string?>("--detokenize") { Description = "token ids to turn back into text", HelpName = "1,2,3" };
        var noSpecial = new Option<bool>("--no-special") { Description = "do not add BOS/EOS" };
        var source = new ModelSourceOptions();
        var command = new Command("tokenize", "text to token ids (JSON) and back") { text, detok, noSpecial };
        source.AddTo(command);
        command.SetAction(r =>
        {
            if ((r.GetValue(text) is null) == (r.GetValue(detok) is null))
                throw new UsageException("give exactly one of -p TEXT or --detokenize 1,2,3");
            return Execute(r.GetValue(text), r.GetValue(detok), r.GetValue(noSpecial), source.Read(r), io);
        });
        return command;
    }

    private static int Execute(string? text, string? detok, bool noSpecial, ModelSource source, CliContext io)
    {
        var (stdout, stderr) = (io.Out, io.Err);
        string path = source.Resolve(stderr);
        using var file = GgufFile.Open(path);
        var tok = Tokenizer.FromGguf(file);
        if (text is not null)
        {
            int[] ids = tok.Encode(text, addSpecial: !noSpecial, parseSpecial: true);
            stdout.WriteLine(JsonSerializer.Serialize(new { ids }));
        }
        else
        {
            int[] ids = TokenIds.Parse(detok!, "--detokenize");
            foreach (int id in ids)
                if ((uint)id >= (uint)tok.VocabSize) throw new UsageException($"token id {id} is outside the vocabulary (0..{tok.VocabSize - 1})");
            stdout.WriteLine(tok.Decode(ids));
        }
        return 0;
    }
}
