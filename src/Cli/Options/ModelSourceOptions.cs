using System.CommandLine;
using Infer.Hub;

namespace Infer.Cli.Options;

/// <summary>Where a command's model comes from: <c>-m FILE</c> or <c>-hf OWNER/REPO[:QUANT]</c> with the Hub's options.</summary>
internal sealed class ModelSourceOptions
{
    public Option<string?> Model { get; } = new("--model", "-m") { Description = "a GGUF model file", HelpName = "FILE" };

    public Option<string?> HfRepo { get; } = new("--hf-repo", "-hf", "-hfr")
    {
        Description = "a Hugging Face repository, downloaded once into the cache; QUANT picks the file (default Q4_K_M, Q4_0, Q8_0)",
        HelpName = "OWNER/REPO[:QUANT]",
    };

    public Option<string?> HfFile { get; } = new("--hf-file", "-hff")
    {
        Description = "the exact GGUF file of the -hf repository", HelpName = "NAME",
    };

    public Option<string> Revision { get; } = new("--revision")
    {
        Description = "branch, tag or commit of the -hf repository", HelpName = "REV", DefaultValueFactory = _ => "main",
    };

    public Option<bool> Offline { get; } = new("--offline") { Description = "never use the network: -hf models come from the cache only" };

    public Option<double?> Timeout { get; } = new Option<double?>("--timeout")
    {
        Description = $"seconds without data before a download try is abandoned ({new HubOptions().MaxAttempts} tries) [default: "
            + $"{new HubOptions().NetworkTimeout.TotalSeconds:0}]",
        HelpName = "SECONDS",
    }.Check(v => v is > 0 and <= 86400 ? null : $"--timeout must be a number of seconds above 0, got {v}");

    public Option<string?> HfToken { get; } = new("--hf-token", "-hft")
    {
        Description = "Hugging Face access token for gated or private repositories [default: $HF_TOKEN]", HelpName = "TOKEN",
    };

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { Model, HfRepo, HfFile, Revision, Offline, Timeout, HfToken }) command.Options.Add(o);
    }

    /// <summary>True when the command line names a model (for commands where one is optional).</summary>
    public bool Given(ParseResult r) => r.GetValue(Model) is not null || r.GetValue(HfRepo) is not null;

    /// <exception cref="UsageException">neither or both of -m and -hf, or a malformed reference.</exception>
    public ModelSource Read(ParseResult r)
    {
        string? path = r.GetValue(Model), hf = r.GetValue(HfRepo);
        if (path is not null && hf is not null) throw new UsageException("give either -m FILE or -hf OWNER/REPO[:QUANT], not both");
        if (path is null && hf is null) throw new UsageException("missing -m MODEL (a GGUF file) or -hf OWNER/REPO[:QUANT]");
        ModelReference? reference = null;
        if (hf is not null && !ModelReference.TryParse(hf, out reference, out string? error))
            throw new UsageException($"-hf: {error}");
        var timeout = r.GetValue(Timeout) is double seconds ? TimeSpan.FromSeconds(seconds) : (TimeSpan?)null;
        return new ModelSource(path, reference, r.GetValue(HfFile), r.GetValue(Revision)!, r.GetValue(Offline), timeout, r.GetValue(HfToken));
    }
}
