using Infer.Cli.Commands;
using Infer.Hub;
using Infer.Runtime;
using Infer.Runtime.Model;
using Infer.Templates;

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
          chat      interactive chat with the model's template  infer chat -m MODEL [-sys TEXT] [-c CTX] [--ctx-overflow stop|shift]
          template  render a chat template              infer template -m MODEL --messages M.json [--add-generation-prompt]
          devices   list GPUs (CUDA, OpenCL) and the CPU  infer devices
          models    list or remove cached downloads     infer models [--rm OWNER/REPO[:QUANT]]
          bench     prompt and generation speed         infer bench -m MODEL [-p 512] [-n 128] [-d 0] [-r 5] [-t N] [-o md|json] [--profile]

        a model is -m FILE or -hf OWNER/REPO[:QUANT] (downloaded from Hugging Face and cached; --hf-file NAME, --revision REV, --offline)
        common options: -m, --model FILE   -t, --threads N   -c, --ctx-size N   --device auto|cpu|cuda|opencl[:N]   -ngl, --gpu-layers N   --no-repack   --verbose
        run 'infer <command> --help' for a command's options.
        """;

    private static string CommandHelp(string command) => command switch
    {
        "run" or "chat" => """
            model:     -m FILE | -hf OWNER/REPO[:QUANT] [--hf-file NAME] [--revision REV] [--offline]
            runtime:   -t THREADS (default: all cores)  -c CONTEXT (default: the model's, at most 4096)  -b BATCH (512)
                       --device auto|cpu|cuda[:N]|opencl[:N]  --no-repack
                       -ngl, --gpu-layers N (the first N layers on the GPU, the rest on the CPU; 0: CPU only; default: all)
            sampling:  --temp 0.8 --top-k 40 --top-p 0.95 --min-p 0.05 --repeat-penalty 1.0 --repeat-last-n 64
                       --frequency-penalty 0 --presence-penalty 0 --seed N   (--temp 0: greedy)
            run:       -p PROMPT  -n TOKENS (128; -1 until the context is full)  --ignore-eos
            chat:      -sys TEXT  -n MAX_REPLY_TOKENS  --chat-template-file FILE  --ctx-overflow stop|shift
            """,
        _ => "",
    };

    public static int Main(string[] args)
    {
        Console.OutputEncoding = new System.Text.UTF8Encoding(false);
        Console.InputEncoding = new System.Text.UTF8Encoding(false);
        return Run(args, Console.Out, Console.Error);
    }

    /// <summary>Entry point with explicit streams (used by tests). Returns the process exit code.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, TextReader? stdin = null, bool? interactive = null)
    {
        bool verbose = args.Contains("--verbose");
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            stdout.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        string command = args[0];
        var rest = args.Skip(1).Where(a => a != "--verbose").ToArray();
        if (rest.Any(a => a is "-h" or "--help"))
        {
            stdout.WriteLine(Usage);
            stdout.WriteLine(CommandHelp(command));
            return 0;
        }
        try
        {
            return command switch
            {
                "run" => RunCommand.Execute(rest, stdout, stderr),
                "logits" => LogitsCommand.Execute(rest, stdout, stderr),
                "tokenize" => TokenizeCommand.Execute(rest, stdout, stderr),
                "info" => InfoCommand.Execute(rest, stdout, stderr),
                "bench" => BenchCommand.Execute(rest, stdout, stderr),
                "chat" => ChatCommand.Execute(rest, stdout, stderr, stdin ?? Console.In, interactive ?? (!Console.IsInputRedirected && !Console.IsOutputRedirected)),
                "template" => TemplateCommand.Execute(rest, stdout, stderr),
                "models" => ModelsCommand.Execute(rest, stdout, stderr),
                "devices" => DevicesCommand.Execute(rest, stdout, stderr),
                _ => throw new UsageException($"unknown command '{command}' (run 'infer --help')"),
            };
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"infer {command}: {e.Message}");
            return 2;
        }
        catch (OperationCanceledException)
        {
            stderr.WriteLine($"infer {command}: cancelled");
            return 130;
        }
        catch (Exception e) when (e is ModelFormatException or Engine.NotEnoughMemoryException or ContextFullException or IOException or UnauthorizedAccessException or ArgumentException
                                   or InvalidDataException or NotSupportedException or TemplateException or HubException or System.Text.Json.JsonException)
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
