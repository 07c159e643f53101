using Infer.Cli.Commands;
using Infer.Runtime;
using Infer.Runtime.Model;

namespace Infer.Cli;

public static class Program
{
    private const string Usage = """
        usage: infer <command> [options]

        commands:
          run       generate text from a prompt         infer run -m MODEL -p PROMPT [-n N]
          logits    dump the last position's logits     infer logits -m MODEL (--prompt TEXT | --ids 1,2,3) [--out FILE] [--greedy N]
          tokenize  text to token ids and back          infer tokenize -m MODEL -p TEXT | --detokenize 1,2,3
          info      summarize a model file              infer info -m MODEL
          bench     prompt and generation speed         infer bench -m MODEL [-p 512] [-n 128] [-r 5] [-t N] [-o md|json]

        common options: -m, --model FILE   -t, --threads N   -c, --ctx-size N   --verbose
        run 'infer <command> --help' for a command's options.
        """;

    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Entry point with explicit streams (used by tests). Returns the process exit code.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        bool verbose = args.Contains("--verbose");
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            stdout.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        string command = args[0];
        var rest = args.Skip(1).Where(a => a != "--verbose").ToArray();
        try
        {
            return command switch
            {
                "run" => RunCommand.Execute(rest, stdout, stderr),
                "logits" => LogitsCommand.Execute(rest, stdout, stderr),
                "tokenize" => TokenizeCommand.Execute(rest, stdout, stderr),
                "info" => InfoCommand.Execute(rest, stdout, stderr),
                "bench" => BenchCommand.Execute(rest, stdout, stderr),
                _ => throw new UsageException($"unknown command '{command}' (run 'infer --help')"),
            };
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"infer {command}: {e.Message}");
            return 2;
        }
        catch (Exception e) when (e is ModelFormatException or ContextFullException or IOException or UnauthorizedAccessException or ArgumentException or InvalidDataException or NotSupportedException)
        {
            stderr.WriteLine($"infer {command}: error: {e.Message}");
            if (verbose) stderr.WriteLine(e);
            return 1;
        }
        catch (Exception e)
        {
            stderr.WriteLine($"infer {command}: internal error: {e.GetType().Name}: {e.Message}");
            if (verbose) stderr.WriteLine(e);
            return 3;
        }
    }
}
