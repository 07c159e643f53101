using System.CommandLine;
using Infer.Cli.Commands;
using Infer.Server;

namespace Infer.Cli.Options;

/// <summary>
/// The options of <c>serve</c> and <c>batch</c>: the model and runtime groups, -np, --alias, --chat-template-file,
/// --max-tokens, and for serve --host --port --api-key (or INFER_API_KEY) --queue --grace.
/// </summary>
internal sealed class ServeOptions(bool http)
{
    private static readonly ServerOptions Defaults = new();

    public ModelSourceOptions Source { get; } = new();
    public RuntimeOptions Runtime { get; } = new();

    public Option<int> Slots { get; } = new Option<int>("--parallel", "-np")
    {
        Description = "requests served at once, each with its own KV cache of -c tokens", HelpName = "N", DefaultValueFactory = _ => 4,
    }.Check(v => v >= 1 ? null : $"-np must be at least 1, got {v}");

    public Option<string?> Alias { get; } = new("--alias") { Description = "the model id clients see [default: the file name]", HelpName = "NAME" };

    public Option<string?> TemplateFile { get; } = new("--chat-template-file")
    {
        Description = "a Jinja chat template instead of the model's", HelpName = "FILE",
    };

    public Option<int> MaxTokens { get; } = new Option<int>("--max-tokens")
    {
        Description = "the largest max_tokens a request may ask for", HelpName = "N", DefaultValueFactory = _ => Defaults.MaxTokensCap,
    }.Check(v => v >= 1 ? null : $"--max-tokens must be positive, got {v}");

    public Option<string> Host { get; } = new("--host")
    {
        Description = "address to listen on", HelpName = "ADDRESS", DefaultValueFactory = _ => Defaults.Host,
    };

    public Option<int> Port { get; } = new Option<int>("--port")
    {
        Description = "port to listen on (0: any free one)", HelpName = "N", DefaultValueFactory = _ => Defaults.Port,
    }.Check(v => v is >= 0 and <= 65535 ? null : $"--port must be 0..65535, got {v}");

    public Option<string?> ApiKey { get; } = new("--api-key")
    {
        Description = "require 'Authorization: Bearer KEY' on /v1 [default: $INFER_API_KEY]", HelpName = "KEY",
    };

    public Option<int> Queue { get; } = new Option<int>("--queue")
    {
        Description = "requests that may wait for a slot; more are answered 429", HelpName = "N", DefaultValueFactory = _ => Defaults.QueueCapacity,
    }.Check(v => v >= 0 ? null : $"--queue must not be negative, got {v}");

    public Option<int> Grace { get; } = new Option<int>("--grace")
    {
        Description = "seconds running requests get to finish at shutdown", HelpName = "SECONDS",
        DefaultValueFactory = _ => (int)Defaults.ShutdownGrace.TotalSeconds,
    }.Check(v => v >= 0 ? null : $"--grace must not be negative, got {v}");

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { Slots, Alias, TemplateFile, MaxTokens }) command.Options.Add(o);
        if (http)
            foreach (var o in new Option[] { Host, Port, ApiKey, Queue, Grace }) command.Options.Add(o);
        Source.AddTo(command);
        Runtime.AddTo(command);
    }

    /// <exception cref="UsageException">-b below -np, or the model options' own errors.</exception>
    public ServeArgs Read(ParseResult r)
    {
        int slots = r.GetValue(Slots);
        var model = ModelArgs.Read(r, Source, Runtime) with { Sequences = slots };
        if (model.Batch < slots) throw new UsageException($"-b ({model.Batch}) must be at least -np ({slots}): each step holds one token per slot");
        var server = new ServerOptions
        {
            Host = http ? r.GetValue(Host)! : Defaults.Host,
            Port = http ? r.GetValue(Port) : 0,
            ApiKey = http ? r.GetValue(ApiKey) ?? NullIfEmpty(Environment.GetEnvironmentVariable("INFER_API_KEY")) : null,
            QueueCapacity = http ? r.GetValue(Queue) : Defaults.QueueCapacity,
            MaxTokensCap = r.GetValue(MaxTokens),
            ShutdownGrace = http ? TimeSpan.FromSeconds(r.GetValue(Grace)) : Defaults.ShutdownGrace,
            StepTokens = model.Batch,
        };
        return new ServeArgs(model, slots, r.GetValue(Alias), r.GetValue(TemplateFile), server);
    }

    private static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;
}
