using System.CommandLine;
using Infer.Cli.Options;
using Infer.Server;
using Infer.Templates;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace Infer.Cli.Commands;

/// <summary>What <c>serve</c> and <c>batch</c> read besides the model options: slots, template, name and the server's limits.</summary>
internal sealed record ServeArgs(ModelArgs Model, int Slots, string? Alias, string? TemplateFile, ServerOptions Server)
{
    /// <summary>Loads the model with one KV-cache sequence per slot, its chat template (or the file's) and its name.</summary>
    public ServedModel Load(TextWriter stderr)
    {
        string? templateText = TemplateFile is null ? null
            : File.Exists(TemplateFile) ? File.ReadAllText(TemplateFile) : throw new FileNotFoundException($"{TemplateFile}: file not found");
        var m = Model.Load(stderr);
        try
        {
            if (templateText is null && m.TemplateText is null)
                stderr.WriteLine("warning: the model has no chat template; chat requests use a plain 'User:/Assistant:' fallback");
            var template = templateText is null ? m.Template : ChatTemplate.Parse(templateText);
            return ServedModel.From(m, Alias, template);
        }
        catch
        {
            m.Dispose();
            throw;
        }
    }
}

/// <summary>
/// <c>infer serve -m MODEL [--host 127.0.0.1] [--port 8080] [-np 4] [-c CTX] [-b 512] [--api-key KEY] [--alias NAME]</c>: the
/// OpenAI-compatible server. It listens at once, loads and warms up the model (/health is 503 until then), and runs until
/// Ctrl+C or SIGTERM, when it lets running requests finish within --grace seconds.
/// </summary>
internal static class ServeCommand
{
    public static Command Create(CliContext io)
    {
        var options = new ServeOptions(http: true);
        var command = new Command("serve", "an OpenAI-compatible HTTP server with continuous batching (see 'Serving' in the README)");
        options.AddTo(command);
        command.SetAction(r => Execute(options.Read(r), io.Err));
        return command;
    }

    private static int Execute(ServeArgs serve, TextWriter stderr)
    {
        var options = serve.Server with
        {
            Logging = b =>
            {
                b.AddSimpleConsole(o =>
                {
                    o.SingleLine = true;
                    o.TimestampFormat = "HH:mm:ss ";
                });
                b.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
                b.AddFilter("Microsoft", LogLevel.Warning);
            },
        };
        return Run(InferServer.Create(options, _ => serve.Load(stderr)), stderr).GetAwaiter().GetResult();
    }

    private static async Task<int> Run(InferServer server, TextWriter stderr)
    {
        await using (server)
        {
            await server.StartAsync();
            stderr.WriteLine($"infer serve: listening on {server.BaseAddress} (loading the model; /health answers 503 until it is ready)");
            await server.Ready; // a load failure ends the command with its message
            var s = server.Scheduler!;
            stderr.WriteLine($"infer serve: ready on {server.BaseAddress}: {s.Slots} slots of {s.ContextLength} tokens");
            await server.RunUntilShutdownAsync();
        }
        stderr.WriteLine("infer serve: stopped");
        return 0;
    }
}
