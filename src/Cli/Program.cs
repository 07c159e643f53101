using System.CommandLine;
using System.CommandLine.Invocation;
using System.Text.Json;
using Infer.Cli.Commands;
using Infer.Engine;
using Infer.Hub;
using Infer.Runtime;
using Infer.Runtime.Grammar;
using Infer.Runtime.Model;
using Infer.Runtime.Sampling;
using Infer.Templates;

namespace Infer.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        Console.OutputEncoding = new System.Text.UTF8Encoding(false);
        Console.InputEncoding = new System.Text.UTF8Encoding(false);
        return Run(args, Console.Out, Console.Error);
    }

    /// <summary>Entry point with explicit streams (used by tests). Returns the process exit code.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, TextReader? stdin = null, bool? interactive = null)
    {
        var io = new CliContext(stdout, stderr, stdin ?? Console.In, interactive ?? (!Console.IsInputRedirected && !Console.IsOutputRedirected));
        var verbose = VerboseOption();
        var root = BuildRoot(io, verbose);
        return CommandLineApp.Run(root, "infer", args, stdout, stderr, IsBadInput, verbose);
    }

    /// <summary>-v/--verbose (as llama.cpp), on every command: an error's stack trace after its one line.</summary>
    internal static Option<bool> VerboseOption() =>
        new("--verbose", "-v") { Description = "print the stack trace of an error", Recursive = true };

    /// <summary>The command tree of <c>infer</c>: every command with its options, defaults and help.</summary>
    internal static RootCommand BuildRoot(CliContext io, Option<bool> verbose)
    {
        var root = new RootCommand("infer: run Llama-family GGUF models (Llama 2/3, Mistral, Qwen2/2.5, Qwen3) on our own CPU and GPU kernels.\n"
            + "A model is -m FILE or -hf OWNER/REPO[:QUANT] (downloaded from Hugging Face once and cached).");
        root.Options.Add(verbose);
        var listDevices = new Option<bool>("--list-devices") { Description = "list the devices and exit (as 'infer devices')" };
        listDevices.Action = new ListDevicesAction(io);
        root.Options.Add(listDevices);
        foreach (var command in new[]
        {
            RunCommand.Create(io), ChatCommand.Create(io), InfoCommand.Create(io), BenchCommand.Create(io), LogitsCommand.Create(io),
            TokenizeCommand.Create(io), TemplateCommand.Create(io), ModelsCommand.Create(io), DevicesCommand.Create(io),
            ServeCommand.Create(io), BatchCommand.Create(io), BenchServeCommand.Create(io), ImatrixCommand.Create(io),
        })
        {
            root.Subcommands.Add(command);
        }
        return root;
    }

    /// <summary>Errors in what the user gave us (a file, a model, a download), as opposed to bugs.</summary>
    private static bool IsBadInput(Exception e) => e is ModelFormatException or ContextFullException or IOException or UnauthorizedAccessException
        or ArgumentException or InvalidDataException or NotSupportedException or TemplateException or HubException or JsonException
        or NotEnoughMemoryException or GrammarException or NonFiniteLogitsException;

    private sealed class ListDevicesAction(CliContext io) : SynchronousCommandLineAction
    {
        public override bool Terminating => true;

        public override int Invoke(ParseResult parseResult) => DevicesCommand.List(io.Out, io.Err);
    }
}
