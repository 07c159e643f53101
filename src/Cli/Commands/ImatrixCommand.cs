using System.CommandLine;
using System.Diagnostics;
using System.Text;
using Infer.Cli.Options;
using Infer.Kernels.Gpu;
using Infer.Runtime.Imatrix;
using Infer.Runtime.Serving;

namespace Infer.Cli.Commands;

/// <summary>
/// <c>infer imatrix -m MODEL -f TEXT [-o imatrix.gguf] [-c 512] [--chunks N] [--process-output] [--output-format gguf|dat]
/// [--no-ppl]</c>: llama-imatrix's importance matrix of a model over a calibration text, for <c>convert-weights quantize
/// --imatrix</c> or llama-quantize. The text is cut into chunks of -c tokens (each starting with BOS where the model adds one);
/// every chunk is one forward pass whose layer matmuls add their inputs' squares; the perplexity of each chunk's second half
/// is printed as it goes.
/// </summary>
internal static class ImatrixCommand
{
    public static Command Create(CliContext io)
    {
        var file = new Option<string>("--file", "-f") { Description = "the calibration text (UTF-8)", HelpName = "FILE", Required = true };
        var output = new Option<string>("--output", "-o")
        {
            Description = "where to write the importance matrix", HelpName = "FILE", DefaultValueFactory = _ => "imatrix.gguf",
        };
        var chunks = new Option<int>("--chunks")
        {
            Description = "most chunks to process; -1: all the text gives", HelpName = "N", DefaultValueFactory = _ => -1,
        }.Check(v => v == -1 || v > 0 ? null : $"--chunks must be positive or -1, got {v}");
        var processOutput = new Option<bool>("--process-output") { Description = "also collect output.weight's input" };
        var format = new Option<string?>("--output-format")
        {
            Description = "gguf (llama-imatrix's current form) or dat (the legacy one) [default: dat for a .dat file, else gguf]",
            HelpName = "gguf|dat",
        }.Check(v => v is null or "gguf" or "dat" ? null : $"--output-format must be gguf or dat, got '{v}'").Suggest("gguf", "dat");
        var noPpl = new Option<bool>("--no-ppl") { Description = "skip the perplexity (no logits are computed)" };
        var source = new ModelSourceOptions();
        var runtime = new RuntimeOptions();
        var command = new Command("imatrix", "an importance matrix over a calibration text, for quantizing (as llama-imatrix)")
        {
            file, output, chunks, processOutput, format, noPpl,
        };
        source.AddTo(command);
        runtime.AddTo(command);
        command.SetAction(r =>
        {
            var args = ModelArgs.Read(r, source, runtime);
            if (args.Device.Kind is not (DeviceKind.Auto or DeviceKind.Cpu))
                throw new UsageException("imatrix runs on the CPU backend: leave out --device (or give cpu)");
            string outPath = r.GetValue(output)!;
            // before the model runs, not after every chunk: where the file goes
            string? folder = Path.GetDirectoryName(Path.GetFullPath(outPath));
            if (folder is not null && !Directory.Exists(folder)) throw new UsageException($"-o {outPath}: folder '{folder}' does not exist");
            bool dat = (r.GetValue(format) ?? (outPath.EndsWith(".dat", StringComparison.OrdinalIgnoreCase) ? "dat" : "gguf")) == "dat";
            int chunk = args.Context > 0 ? args.Context : 512; // llama-imatrix's default n_ctx
            if (chunk < ImatrixBackend.MinRows)
                throw new UsageException($"-c {chunk}: a chunk needs at least {ImatrixBackend.MinRows} tokens (smaller batches are not counted)");
            args = args with { Device = new DeviceRequest(DeviceKind.Cpu), GpuLayers = 0, Context = chunk, Batch = chunk };
            return Execute(ReadText(r.GetValue(file)!), r.GetValue(file)!, outPath, dat, r.GetValue(chunks), r.GetValue(processOutput),
                !r.GetValue(noPpl), args, io);
        });
        return command;
    }

    /// <summary>The calibration text, strictly UTF-8 (a binary file given by mistake is an error, not text with replacement characters).</summary>
    private static string ReadText(string path)
    {
        if (Directory.Exists(path)) throw new UsageException($"-f {path}: is a directory");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found");
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(File.ReadAllBytes(path));
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException($"{path}: not UTF-8 text (invalid bytes at offset {e.Index})");
        }
    }

    private static int Execute(string text, string dataset, string outPath, bool dat, int maxChunks, bool processOutput, bool ppl,
        ModelArgs modelArgs, CliContext io)
    {
        var (stdout, stderr) = (io.Out, io.Err);
        ImatrixBackend? collector = null;
        // the repacked copies before the first chunk: a background repack runs at the lowest priority, and every chunk is a prompt
        using var m = modelArgs.Load(stderr, wrapCpu: cpu => collector = new ImatrixBackend(cpu, processOutput), repackInBackground: false);
        var tok = m.Tokenizer;
        var model = m.Model;
        int n = modelArgs.Context;
        int[] tokens = tok.Encode(text, addSpecial: true, parseSpecial: false);
        int available = tokens.Length / n;
        if (available == 0)
            throw new InvalidDataException($"{dataset}: {tokens.Length} token{(tokens.Length == 1 ? "" : "s")}, fewer than one chunk of {n} (-c): "
                + "give more text or a smaller -c");
        int count = maxChunks > 0 ? Math.Min(maxChunks, available) : available;
        stderr.WriteLine($"imatrix: {tokens.Length} tokens, {count} chunks of {n}");

        // the second half of each chunk is scored (llama-imatrix's `first`): logits of its rows but the last predict the next token
        int first = n / 2, scored = ppl ? n - first : 0;
        var chunkTokens = new int[n];
        var positions = Enumerable.Range(0, n).ToArray();
        var sequences = new int[n];
        var logitRows = Enumerable.Range(first, scored).ToArray();
        var logits = new float[(long)scored * model.VocabSize];
        double nll = 0;
        long predicted = 0;
        var clock = Stopwatch.StartNew();
        for (int c = 0; c < count; c++)
        {
            tokens.AsSpan(c * n, n).CopyTo(chunkTokens);
            if (tok.AddBos) chunkTokens[0] = tok.BosId;
            model.Forward(chunkTokens, positions, sequences, logitRows, logits);
            if (ppl)
            {
                for (int i = 0; i + 1 < scored; i++)
                {
                    var row = logits.AsSpan(i * model.VocabSize, model.VocabSize);
                    nll -= row[chunkTokens[first + i + 1]] - Logprobs.LogSumExp(row);
                }
                predicted += scored - 1;
                stderr.Write($"[{c + 1}]{Math.Exp(nll / predicted):F4},");
            }
            else stderr.Write($"[{c + 1}]");
            if (c == 0) stderr.Write($" ({clock.Elapsed.TotalSeconds:F1} s per chunk) ");
        }
        stderr.WriteLine();
        var entries = collector!.Entries;
        if (dat) ImatrixFile.WriteDat(outPath, entries, dataset, count, n);
        else ImatrixFile.WriteGguf(outPath, entries, dataset, count, n);
        string perplexity = ppl ? $", perplexity {Math.Exp(nll / predicted):F4}" : "";
        stdout.WriteLine($"{outPath}: {entries.Count} tensors, {count} chunks of {n} tokens{perplexity}");
        return 0;
    }
}
