using System.CommandLine;
using System.Globalization;
using Infer.Runtime.Sampling;

namespace Infer.Cli.Options;

/// <summary>The sampling options of <c>run</c> and <c>chat</c>, with llama.cpp's names and defaults.</summary>
internal sealed class SamplingOptions
{
    private static readonly SamplerOptions Defaults = new();

    public Option<float> Temperature { get; } = new Option<float>("--temp", "--temperature")
    {
        Description = "temperature; 0 is greedy", HelpName = "T", DefaultValueFactory = _ => Defaults.Temperature,
    }.Check(v => v >= 0 && float.IsFinite(v) ? null : $"--temp must be 0 (greedy) or positive, got {Show(v)}");

    public Option<int> TopK { get; } = new Option<int>("--top-k")
    {
        Description = "keep the K most likely tokens; 0 keeps all", HelpName = "K", DefaultValueFactory = _ => Defaults.TopK,
    }.Check(v => v >= 0 ? null : $"--top-k must be 0 (off) or positive, got {v}");

    public Option<float> TopP { get; } =
        Probability("--top-p", "nucleus sampling: the smallest set of tokens with this much probability", Defaults.TopP);

    public Option<float> MinP { get; } = Probability("--min-p", "drop tokens less likely than this times the most likely one", Defaults.MinP);

    public Option<float> RepeatPenalty { get; } = new Option<float>("--repeat-penalty")
    {
        Description = "divide the logits of recent tokens by this; 1 is off", HelpName = "R", DefaultValueFactory = _ => Defaults.RepeatPenalty,
    }.Check(v => v > 0 && float.IsFinite(v) ? null : $"--repeat-penalty must be positive, got {Show(v)}");

    public Option<int> RepeatLastN { get; } = new Option<int>("--repeat-last-n")
    {
        Description = "how many recent tokens the penalties look at; -1 the whole context, 0 off", HelpName = "N",
        DefaultValueFactory = _ => Defaults.RepeatLastN,
    }.Check(v => v >= -1 ? null : $"--repeat-last-n must be -1 (the context), 0 (off) or positive, got {v}");

    public Option<float> FrequencyPenalty { get; } =
        Penalty("--frequency-penalty", "subtract this times a token's count so far", Defaults.FrequencyPenalty);

    public Option<float> PresencePenalty { get; } =
        Penalty("--presence-penalty", "subtract this from every token seen so far", Defaults.PresencePenalty);

    public Option<ulong> Seed { get; } = new("--seed", "-s")
    {
        Description = "random seed; the default draws a new one every run", HelpName = "N", DefaultValueFactory = _ => Defaults.Seed,
    };

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { Temperature, TopK, TopP, MinP, RepeatPenalty, RepeatLastN, FrequencyPenalty, PresencePenalty, Seed })
            command.Options.Add(o);
    }

    public SamplerOptions Read(ParseResult r)
    {
        var o = new SamplerOptions
        {
            Temperature = r.GetValue(Temperature),
            TopK = r.GetValue(TopK),
            TopP = r.GetValue(TopP),
            MinP = r.GetValue(MinP),
            RepeatPenalty = r.GetValue(RepeatPenalty),
            RepeatLastN = r.GetValue(RepeatLastN),
            FrequencyPenalty = r.GetValue(FrequencyPenalty),
            PresencePenalty = r.GetValue(PresencePenalty),
            Seed = r.GetValue(Seed),
        };
        try { o.Validate(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        return o;
    }

    private static Option<float> Probability(string name, string description, float fallback) =>
        new Option<float>(name) { Description = description, HelpName = "P", DefaultValueFactory = _ => fallback }
            .Check(v => v is >= 0 and <= 1 ? null : $"{name} must be between 0 and 1, got {Show(v)}");

    private static Option<float> Penalty(string name, string description, float fallback) =>
        new Option<float>(name) { Description = description, HelpName = "X", DefaultValueFactory = _ => fallback }
            .Check(v => float.IsFinite(v) ? null : $"{name} must be a finite number, got {Show(v)}");

    private static string Show(float v) => v.ToString(CultureInfo.InvariantCulture);
}
