using System.CommandLine;
using Infer.Cli.Options;
using Infer.Kernels.Cpu.Quants;
using Infer.Kernels.Gpu;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;
using Infer.Runtime.Tokenizers;

namespace Infer.Cli.Commands;

/// <summary>
/// <c>infer info -m MODEL [--device D] [-ngl N] [-c CTX]</c>: architecture, parameters, tensor types, context, vocabulary, tokenizer,
/// template, size, and where each layer would run (<see cref="InfoPlacement"/>).
/// </summary>
internal static class InfoCommand
{
    public static Command Create(CliContext io)
    {
        var source = new ModelSourceOptions();
        var runtime = new RuntimeOptions();
        var command = new Command("info", "summarize a model file: architecture, shapes, types, tokenizer, template, and where it would run")
        {
            runtime.Device, runtime.GpuLayers, runtime.Context,
        };
        source.AddTo(command);
        command.SetAction(r => Execute(source.Read(r), runtime.ReadDevice(r), runtime.ReadGpuLayers(r), r.GetValue(runtime.Context), io));
        return command;
    }

    private static int Execute(ModelSource source, DeviceRequest device, int? gpuLayers, int ctx, CliContext io)
    {
        var stdout = io.Out;
        string path = source.Resolve(io.Err);
        using var f = GgufFile.Open(path);
        var c = ModelConfig.FromGguf(f);
        var tok = Tokenizer.FromGguf(f);
        long parameters = f.Tensors.Sum(t => t.ElementCount);
        var types = f.Tensors.GroupBy(t => t.Type).OrderByDescending(g => g.Sum(t => t.ByteSize))
            .Select(g => $"{GgmlTypeInfo.Name(g.Key)} x{g.Count()}");
        string name = f.TryGetString("general.name") ?? Path.GetFileNameWithoutExtension(path);

        stdout.WriteLine($"file:            {path}");
        stdout.WriteLine($"name:            {name}");
        stdout.WriteLine($"format:          GGUF v{f.Version}, {f.Tensors.Count} tensors, {f.Metadata.Count} metadata keys");
        stdout.WriteLine($"file size:       {Units.FormatSize(f.Length)}");
        stdout.WriteLine($"architecture:    {c.Architecture}");
        stdout.WriteLine($"parameters:      {Units.FormatCount(parameters)}");
        stdout.WriteLine($"tensor types:    {string.Join(", ", types)}");
        stdout.WriteLine($"layers:          {c.BlockCount}");
        stdout.WriteLine($"embedding:       {c.EmbeddingLength}");
        stdout.WriteLine($"feed forward:    {c.FeedForwardLength}");
        stdout.WriteLine($"heads:           {c.HeadCount} (kv {c.HeadCountKv}, head dim {c.HeadDim})");
        stdout.WriteLine($"context length:  {c.ContextLength}");
        string ropeFactors = c.Rope.FreqFactors is null ? "" : ", rope_freqs";
        string ropeScale = c.Rope.FreqScale != 1 ? $", linear x{1 / c.Rope.FreqScale}" : "";
        stdout.WriteLine($"rope:            {(c.Rope.NeoX ? "neox" : "normal")}, base {c.Rope.FreqBase}{ropeFactors}{ropeScale}");
        stdout.WriteLine($"rms epsilon:     {c.RmsEps:G}");
        stdout.WriteLine($"features:        {string.Join(", ", Features(c))}");
        stdout.WriteLine($"vocabulary:      {tok.VocabSize} tokens, {tok.Kind} tokenizer{(tok.Pre is { Length: > 0 } pre ? $" (pre: {pre})" : "")}");
        stdout.WriteLine($"chat template:   {(f.ContainsKey("tokenizer.chat_template") ? "present" : "none")}");
        var repacked = f.Tensors.Where(t => t.RowCount >= 8 && QuantKernels.IsSupported(t.Type) && QuantKernels.Get(t.Type).RepackRows > 0)
            .GroupBy(t => t.Type).Select(g => $"{GgmlTypeInfo.Name(g.Key)} x{g.Count()} ({QuantKernels.Get(g.Key).Isa})").ToList();
        string repack = repacked.Count == 0 ? "none"
            : "at load into 8-row interleaved blocks: " + string.Join(", ", repacked) + "; --no-repack keeps the file layout";
        stdout.WriteLine($"cpu repack:      {repack}");
        foreach (var line in InfoPlacement.Lines(f, c, device, gpuLayers, ctx, GpuContextFactory.ListDevices)) stdout.WriteLine(line);
        return 0;
    }

    private static IEnumerable<string> Features(ModelConfig c)
    {
        yield return c.HeadCountKv < c.HeadCount ? "grouped-query attention" : "multi-head attention";
        if (c.QkvBias) yield return "QKV bias";
        if (c.QkNorm) yield return "Q/K norm";
        yield return c.TiedOutput ? "tied output" : "separate output";
    }
}
