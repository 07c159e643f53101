using System.CommandLine;

namespace Infer.ConvertWeights;

/// <summary><c>convert-weights synth</c>'s options: a preset or every shape, the weight type, the tokenizer donor and the output.</summary>
internal sealed class SynthOptions
{
    private readonly Option<string?> _preset = new Option<string?>("--preset")
    {
        Description = $"a published model's shapes: {string.Join(", ", Synth.Presets.Keys)}", HelpName = "NAME",
    }.Check(p => p is null || Synth.Presets.ContainsKey(p) ? null : $"unknown preset '{p}'; presets: {string.Join(", ", Synth.Presets.Keys)}")
     .Suggest([.. Synth.Presets.Keys]);

    private readonly Option<string?> _type = new("--type", "--outtype") { Description = "weight type (as quantize's TYPE)", HelpName = "TYPE" };
    private readonly Option<string?> _donor = new("--tokenizer-from")
    {
        Description = "a GGUF whose tokenizer (and vocabulary size) to copy", HelpName = "MODEL.gguf",
    };
    private readonly Option<string?> _output = new("--outfile", "-o", "--output") { Description = "the GGUF file to write", HelpName = "OUT.gguf" };
    private readonly Option<ulong> _seed = new("--seed") { Description = "random seed", HelpName = "S", DefaultValueFactory = _ => 1234 };
    private readonly Option<string> _arch = new Option<string>("--arch")
    {
        Description = "architecture", HelpName = "llama|qwen2|qwen3", DefaultValueFactory = _ => "llama",
    }
        .Suggest("llama", "qwen2", "qwen3");
    private readonly Option<int?> _layers = Shape("--layers", "transformer blocks");
    private readonly Option<int?> _hidden = Shape("--hidden", "embedding length");
    private readonly Option<int?> _ffn = Shape("--ffn", "feed-forward length");
    private readonly Option<int?> _heads = Shape("--heads", "attention heads");
    private readonly Option<int?> _kvHeads = Shape("--kv-heads", "key/value heads [default: --heads]");
    private readonly Option<int?> _headDim = Shape("--head-dim", "size of one head [default: hidden / heads]");
    private readonly Option<int> _ctx = new("--ctx") { Description = "trained context length", HelpName = "N", DefaultValueFactory = _ => 4096 };
    private readonly Option<double> _ropeTheta = new("--rope-theta")
    {
        Description = "RoPE base frequency", HelpName = "X", DefaultValueFactory = _ => 10000.0,
    };
    private readonly Option<double> _rmsEps = new("--rms-eps") { Description = "RMSNorm epsilon", HelpName = "X", DefaultValueFactory = _ => 1e-5 };
    private readonly Option<bool> _tied = new("--tied") { Description = "the output matrix is the token embedding" };

    public void AddTo(Command command)
    {
        Option[] all =
        [
            _preset, _type, _donor, _output, _seed, _arch, _layers, _hidden, _ffn, _heads, _kvHeads, _headDim, _ctx, _ropeTheta, _rmsEps, _tied,
        ];
        foreach (var o in all) command.Options.Add(o);
    }

    public (HfConfig Shape, string Name, string Output, OutputType Type, string Donor, ulong Seed) Read(ParseResult r)
    {
        string output = r.GetValue(_output) ?? throw new UsageException("missing option -o OUT.gguf (or --outfile)");
        string donor = r.GetValue(_donor) ?? throw new UsageException("missing option --tokenizer-from MODEL.gguf");
        var type = OutputType.Parse(r.GetValue(_type) ?? throw new UsageException("missing option --type TYPE"));
        if (r.GetValue(_preset) is { } preset) return (Synth.Presets[preset], $"Synthetic {preset}", output, type, donor, r.GetValue(_seed));
        int heads = Required(r, _heads);
        var shape = Synth.Custom(r.GetValue(_arch)!, Required(r, _layers), Required(r, _hidden), Required(r, _ffn), heads,
            r.GetValue(_kvHeads) ?? heads, r.GetValue(_headDim), r.GetValue(_ctx), r.GetValue(_ropeTheta), r.GetValue(_rmsEps), r.GetValue(_tied));
        return (shape, "Synthetic", output, type, donor, r.GetValue(_seed));
    }

    private static int Required(ParseResult r, Option<int?> option) =>
        r.GetValue(option) ?? throw new UsageException($"missing option {option.Name} (or give --preset)");

    private static Option<int?> Shape(string name, string description) =>
        new Option<int?>(name) { Description = description, HelpName = "N" }
            .Check(v => v is null or > 0 ? null : $"{name} must be positive, got {v}");
}
