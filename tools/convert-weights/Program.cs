using System.CommandLine;
using Infer.Runtime;
using Infer.Runtime.Gguf;

namespace Infer.ConvertWeights;

public static class Program
{
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Runs one command with help on the console; errors become one line on <paramref name="stderr"/> and a non-zero exit code.</summary>
    public static int Run(string[] args, TextWriter stderr, bool showProgress = true) => Run(args, Console.Out, stderr, showProgress);

    /// <summary>
    /// Runs one command: 0 done, 1 a bad input file, 2 a usage error, 3 a write that failed, 4 a full disk (the output is
    /// deleted in both cases).
    /// </summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, bool showProgress = true)
    {
        var bar = showProgress ? ProgressBar.For(stderr) : null;
        var root = new RootCommand("convert-weights: Hugging Face checkpoints to GGUF, GGUF quantization, and random-weight models in real shapes")
        {
            ConvertCommand(stderr, bar), QuantizeCommand(stderr, bar), SynthCommand(stderr, bar),
        };
        return CommandLineApp.Run(root, "convert-weights", args, stdout, stderr, ExitCodeFor);
    }

    private static int? ExitCodeFor(Exception e) => e switch
    {
        GgufDiskFullException => 4,
        GgufWriteException => 3,
        ModelFormatException or IOException or UnauthorizedAccessException => ExitCodes.BadInput,
        _ => null,
    };

    private const string Types =
        "f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_s q3_k_m (q3_k) q3_k_l q4_k_s q4_k_m (q4_k) q5_k_s q5_k_m (q5_k) q6_k iq4_nl iq4_xs";

    /// <summary>-o/--outfile (llama.cpp's convert_hf_to_gguf.py spelling) or --output.</summary>
    private static Option<string?> OutFile() => new("--outfile", "-o", "--output") { Description = "the GGUF file to write", HelpName = "OUT.gguf" };

    private static Command ConvertCommand(TextWriter stderr, ProgressBar? bar)
    {
        var dir = new Argument<string>("HF_DIR") { Description = "a Hugging Face checkpoint: config.json, *.safetensors, tokenizer files" };
        var output = OutFile();
        var type = new Option<string>("--outtype", "--type")
        {
            Description = $"weight type: {Types}", HelpName = "TYPE", DefaultValueFactory = _ => "bf16",
        };
        var command = new Command("convert", "a Hugging Face checkpoint (Llama, Mistral, Qwen2, Qwen3) to one GGUF file") { dir, output, type };
        command.SetAction(r =>
        {
            string outPath = r.GetValue(output) ?? throw new UsageException("missing option -o OUT.gguf (or --outfile)");
            Converter.Convert(r.GetValue(dir)!, outPath, OutputType.Parse(r.GetValue(type)!), WriteBar.For(bar, outPath));
            return Wrote(outPath, stderr, bar);
        });
        return command;
    }

    private static Command QuantizeCommand(TextWriter stderr, ProgressBar? bar)
    {
        var input = new Argument<string>("IN.gguf") { Description = "the GGUF file to quantize" };
        var output = new Argument<string>("OUT.gguf") { Description = "the GGUF file to write" };
        var type = new Argument<string>("TYPE") { Description = Types };
        var imatrix = new Option<string?>("--imatrix")
        {
            Description = "an importance matrix of llama-imatrix (GGUF, or the legacy .dat) for the quantizers, as llama-quantize --imatrix",
            HelpName = "FILE",
        };
        var command = new Command("quantize", "a GGUF file to another weight type (norms and small tensors stay as they are)")
        {
            input, output, type, imatrix,
        };
        command.SetAction(r =>
        {
            string outPath = r.GetValue(output)!;
            var missing = Quantizer.Quantize(r.GetValue(input)!, outPath, OutputType.Parse(r.GetValue(type)!), WriteBar.For(bar, outPath),
                r.GetValue(imatrix));
            if (missing.Count > 0)
            {
                bar?.Finish();
                stderr.WriteLine($"no importance weights for {missing.Count} tensor(s), quantized without: {string.Join(", ", missing.Take(8))}"
                    + (missing.Count > 8 ? ", ..." : ""));
            }
            return Wrote(outPath, stderr, bar);
        });
        return command;
    }

    private static Command SynthCommand(TextWriter stderr, ProgressBar? bar)
    {
        var o = new SynthOptions();
        var command = new Command("synth", "random weights in a real model's shapes (a preset, or every shape option), for benchmarks");
        o.AddTo(command);
        command.SetAction(r =>
        {
            var (shape, name, output, type, donor, seed) = o.Read(r);
            Synth.Write(shape, type, donor, output, seed, name, WriteBar.For(bar, output));
            return Wrote(output, stderr, bar);
        });
        return command;
    }

    private static int Wrote(string output, TextWriter stderr, ProgressBar? bar)
    {
        bar?.Finish();
        stderr.WriteLine($"wrote {output}");
        return 0;
    }
}

/// <summary>A GGUF file being written, on the shared <see cref="ProgressBar"/>: bytes written and the tensor at work.</summary>
internal sealed class WriteBar(ProgressBar bar, string label) : IProgress<WriteProgress>
{
    public static WriteBar? For(ProgressBar? bar, string output) => bar is null ? null : new WriteBar(bar, Path.GetFileName(output));

    public void Report(WriteProgress p) =>
        bar.Report(new ProgressUpdate(label, p.BytesDone, p.BytesTotal) { Detail = p.Tensor, Verb = "writing" });
}
