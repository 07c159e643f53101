using Infer.Runtime;
using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights;

public static class Program
{
    public const string Usage =
        """
        usage:
          convert-weights convert HF_DIR -o OUT.gguf [--type TYPE]   (default bf16)
          convert-weights quantize IN.gguf OUT.gguf TYPE
              TYPE: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k_s q4_k_m (q4_k) q5_k_s q5_k_m (q5_k) q6_k
          convert-weights synth --preset NAME --type TYPE --tokenizer-from MODEL.gguf -o OUT.gguf [--seed S]
              presets: llama-3.2-1b llama-3.2-3b llama-3.1-8b qwen2.5-0.5b qwen3-0.6b qwen3-8b
              or shapes: --layers N --hidden N --ffn N --heads N [--kv-heads N] [--head-dim N] [--arch llama|qwen2|qwen3]
                         [--ctx N] [--rope-theta X] [--rms-eps X] [--tied true|false]
        """;

    public static int Main(string[] args) => Run(args, Console.Error);

    /// <summary>Runs one command; errors become one line on <paramref name="stderr"/> and a non-zero exit code.</summary>
    public static int Run(string[] args, TextWriter stderr, bool showProgress = true)
    {
        try
        {
            if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
            {
                stderr.WriteLine(Usage);
                return args.Length == 0 ? 2 : 0;
            }
            if (args.Skip(1).Any(a => a is "-h" or "--help"))
            {
                stderr.WriteLine(Usage);
                return 0;
            }
            var bar = showProgress ? ProgressBar.For(stderr) : null;
            var opts = new Options(args.Skip(1).ToArray());
            switch (args[0])
            {
                case "convert":
                    {
                        string dir = opts.Positional(0, "HF_DIR");
                        string output = opts.Required("-o", "--output");
                        var type = OutputType.Parse(opts.Value("--type", "--outtype") ?? "bf16");
                        opts.EnsureAllUsed(1);
                        Converter.Convert(dir, output, type, WriteBar.For(bar, output));
                        bar?.Finish();
                        stderr.WriteLine($"wrote {output}");
                        return 0;
                    }
                case "quantize":
                    {
                        string input = opts.Positional(0, "IN.gguf");
                        string output = opts.Positional(1, "OUT.gguf");
                        var type = OutputType.Parse(opts.Positional(2, "TYPE"));
                        opts.EnsureAllUsed(3);
                        Quantizer.Quantize(input, output, type, WriteBar.For(bar, output));
                        bar?.Finish();
                        stderr.WriteLine($"wrote {output}");
                        return 0;
                    }
                case "synth":
                    {
                        string output = opts.Required("-o", "--output");
                        string donor = opts.Required("--tokenizer-from");
                        var type = OutputType.Parse(opts.Required("--type"));
                        ulong seed = ulong.TryParse(opts.Value("--seed") ?? "1234", out var s) ? s : throw new UsageException("--seed must be a non-negative integer");
                        string? preset = opts.Value("--preset");
                        HfConfig shape;
                        string name;
                        if (preset is not null)
                        {
                            shape = Synth.Presets.TryGetValue(preset, out var p) ? p
                                : throw new UsageException($"unknown preset '{preset}'; presets: {string.Join(", ", Synth.Presets.Keys)}");
                            name = $"Synthetic {preset}";
                        }
                        else
                        {
                            shape = Synth.Custom(opts.Value("--arch") ?? "llama", opts.Int("--layers"), opts.Int("--hidden"), opts.Int("--ffn"), opts.Int("--heads"),
                                opts.IntOrNull("--kv-heads") ?? opts.Int("--heads"), opts.IntOrNull("--head-dim"), opts.IntOrNull("--ctx") ?? 4096,
                                opts.DoubleOrNull("--rope-theta") ?? 10000.0, opts.DoubleOrNull("--rms-eps") ?? 1e-5, opts.Bool("--tied"));
                            name = "Synthetic";
                        }
                        opts.EnsureAllUsed(0);
                        Synth.Write(shape, type, donor, output, seed, name, WriteBar.For(bar, output));
                        bar?.Finish();
                        stderr.WriteLine($"wrote {output}");
                        return 0;
                    }
                default:
                    throw new UsageException($"unknown command '{args[0]}' (convert, quantize, synth; see --help)");
            }
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"convert-weights: {e.Message}");
            return 2;
        }
        catch (GgufDiskFullException e)
        {
            stderr.WriteLine($"convert-weights: error: {e.Message}");
            return 4;
        }
        catch (GgufWriteException e)
        {
            stderr.WriteLine($"convert-weights: error: {e.Message}");
            return 3;
        }
        catch (ModelFormatException e)
        {
            stderr.WriteLine($"convert-weights: error: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"convert-weights: error: {e.Message}");
            return 1;
        }
    }
}

/// <summary>A tiny option parser: positional arguments plus "--name value" pairs.</summary>
internal sealed class Options
{
    private readonly List<string> _positional = [];
    private readonly Dictionary<string, string> _named = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public Options(string[] args)
    {
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a.StartsWith('-') && a.Length > 1)
            {
                string key = a, value;
                int eq = a.IndexOf('=');
                if (eq > 0)
                {
                    key = a[..eq];
                    value = a[(eq + 1)..];
                }
                else
                {
                    if (i + 1 >= args.Length) throw new UsageException($"option {a} needs a value");
                    value = args[++i];
                }
                if (!_named.TryAdd(key, value)) throw new UsageException($"option {key} given twice");
            }
            else _positional.Add(a);
        }
    }

    public string Positional(int index, string what) =>
        index < _positional.Count ? _positional[index] : throw new UsageException($"missing {what} (see --help)");

    public string? Value(params string[] names)
    {
        foreach (var n in names)
            if (_named.TryGetValue(n, out var v))
            {
                _used.Add(n);
                return v;
            }
        return null;
    }

    public int Int(string name) => IntOrNull(name) ?? throw new UsageException($"missing option {name} (or give --preset)");

    public int? IntOrNull(string name)
    {
        string? v = Value(name);
        if (v is null) return null;
        return int.TryParse(v, out int x) ? x : throw new UsageException($"{name} must be an integer, not '{v}'");
    }

    public double? DoubleOrNull(string name)
    {
        string? v = Value(name);
        if (v is null) return null;
        return double.TryParse(v, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double x)
            ? x : throw new UsageException($"{name} must be a number, not '{v}'");
    }

    public bool Bool(string name)
    {
        string? v = Value(name);
        return v switch
        {
            null or "false" => false,
            "true" => true,
            _ => throw new UsageException($"{name} must be true or false, not '{v}'"),
        };
    }

    public string Required(params string[] names) => Value(names) ?? throw new UsageException($"missing option {names[0]} (see --help)");

    public void EnsureAllUsed(int positionalCount)
    {
        if (_positional.Count > positionalCount) throw new UsageException($"unexpected argument '{_positional[positionalCount]}'");
        var unknown = _named.Keys.FirstOrDefault(k => !_used.Contains(k));
        if (unknown is not null) throw new UsageException($"unknown option '{unknown}'");
    }
}

/// <summary>A GGUF file being written, on the shared <see cref="ProgressBar"/>: bytes written and the tensor at work.</summary>
internal sealed class WriteBar(ProgressBar bar, string label) : IProgress<WriteProgress>
{
    public static WriteBar? For(ProgressBar? bar, string output) => bar is null ? null : new WriteBar(bar, Path.GetFileName(output));

    public void Report(WriteProgress p) =>
        bar.Report(new ProgressUpdate(label, p.BytesDone, p.BytesTotal) { Detail = p.Tensor, Verb = "writing" });
}
