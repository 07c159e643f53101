using Infer.Templates;
using Infer.Server;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace Infer.Cli.Commands;

/// <summary>What <c>serve</c> and <c>batch</c> read besides the model options: slots, template, name and the server's limits.</summary>
internal sealed record ServeArgs(ModelArgs Model, int Slots, string? Alias, string? TemplateFile, ServerOptions Server)
{
    /// <summary>-np, --alias, --chat-template-file, and for serve --host --port --api-key (or INFER_API_KEY) --queue --max-tokens --grace.</summary>
    public static ServeArgs Read(Args a, bool http)
    {
        int slots = a.Int(4, "-np", "--parallel");
        if (slots < 1) throw new UsageException($"-np must be at least 1, got {slots}");
        var model = ModelArgs.Read(a) with { Sequences = slots };
        if (model.Batch < slots) throw new UsageException($"-b ({model.Batch}) must be at least -np ({slots}): each step holds one token per slot");
        var d = new ServerOptions();
        var server = new ServerOptions
        {
            Host = http ? a.String("--host") ?? d.Host : d.Host,
            Port = http ? a.Int(d.Port, "--port") : 0,
            ApiKey = http ? a.String("--api-key") ?? NullIfEmpty(Environment.GetEnvironmentVariable("INFER_API_KEY")) : null,
            QueueCapacity = http ? a.Int(d.QueueCapacity, "--queue") : d.QueueCapacity,
            MaxTokensCap = a.Int(d.MaxTokensCap, "--max-tokens"),
            ShutdownGrace = http ? TimeSpan.FromSeconds(a.Int((int)d.ShutdownGrace.TotalSeconds, "--grace")) : d.ShutdownGrace,
            StepTokens = model.Batch,
        };
        if (server.Port is < 0 or > 65535) throw new UsageException($"--port must be 0..65535, got {server.Port}");
        if (server.QueueCapacity < 0) throw new UsageException("--queue must not be negative");
        if (server.MaxTokensCap < 1) throw new UsageException("--max-tokens must be positive");
        return new ServeArgs(model, slots, a.String("--alias"), a.String("--chat-template-file"), server);
    }

    private static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

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
    public static int Execute(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        var a = new Args(argv, []);
        var serve = ServeArgs.Read(a, http: true);
        a.EnsureAllUsed();
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
