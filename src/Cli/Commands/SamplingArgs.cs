using System.Globalization;
using Infer.Runtime.Sampling;

namespace Infer.Cli.Commands;

internal static class SamplingArgs
{
    /// <summary>--temp --top-k --top-p --min-p --repeat-penalty --repeat-last-n --frequency-penalty --presence-penalty --seed.</summary>
    public static SamplerOptions Parse(Args a)
    {
        var d = new SamplerOptions();
        var seed = a.String("-s", "--seed");
        ulong seedValue = d.Seed;
        if (seed is not null && !ulong.TryParse(seed, out seedValue)) throw new UsageException($"--seed expects a non-negative integer, got '{seed}'");
        var o = new SamplerOptions
        {
            Temperature = a.Float(d.Temperature, "--temp", "--temperature"),
            TopK = a.Int(d.TopK, "--top-k"),
            TopP = a.Float(d.TopP, "--top-p"),
            MinP = a.Float(d.MinP, "--min-p"),
            RepeatPenalty = a.Float(d.RepeatPenalty, "--repeat-penalty"),
            RepeatLastN = a.Int(d.RepeatLastN, "--repeat-last-n"),
            FrequencyPenalty = a.Float(d.FrequencyPenalty, "--frequency-penalty"),
            PresencePenalty = a.Float(d.PresencePenalty, "--presence-penalty"),
            Seed = seedValue,
        };
        // llama.cpp reads a negative temperature as greedy and a negative top-k as "off": say so instead of guessing.
        if (o.Temperature < 0) throw new UsageException($"--temp must be 0 (greedy) or positive, got {o.Temperature.ToString(CultureInfo.InvariantCulture)}");
        if (o.TopK < 0) throw new UsageException($"--top-k must be 0 (off) or positive, got {o.TopK}");
        try { o.Validate(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        return o;
    }
}
