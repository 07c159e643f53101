using Infer.Kernels.Cpu;
using Infer.Runtime.Gguf;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Runtime.Sampling;
using Infer.Runtime.Tokenizers;
using Infer.Tests;

namespace Infer.Server.Tests.Serving;

/// <summary>A fixture model loaded with several sequences (slots), and the single-sequence greedy reference `infer run` computes.</summary>
public sealed class TestModel : IDisposable
{
    /// <summary>
    /// A context the tiny fixture model (thousands of tokens/s) cannot fill while a test acts on a running request: a cancel,
    /// a queue probe, a shutdown grace period. 256 tokens take a few milliseconds.
    /// </summary>
    public const int LongContext = 16384;

    public TestModel(string name, string type, int sequences, int context = 256, int batch = 512)
    {
        Name = name;
        Path = Fixtures.Model(name, type);
        File = GgufFile.Open(Path);
        Tokenizer = Tokenizer.FromGguf(File);
        Model = LlamaModel.Load(File, new CpuBackend(2, batch), new ModelOptions(context, batch, sequences));
    }

    public string Name { get; }
    public string Path { get; }
    public GgufFile File { get; }
    public Tokenizer Tokenizer { get; }
    public LlamaModel Model { get; }

    /// <summary>
    /// Greedy tokens of <paramref name="prompt"/> as `infer run` computes them (one sequence: the prompt in one batch, then one
    /// token per forward call) on a separate single-sequence model of the same file, end-of-generation tokens included.
    /// </summary>
    public int[] GreedyAlone(int[] prompt, int count)
    {
        using var file = GgufFile.Open(Path);
        using var model = LlamaModel.Load(file, new CpuBackend(2, Model.BatchSize), new ModelOptions(Model.ContextLength, Model.BatchSize));
        var session = new Session(model);
        session.Append(prompt);
        var ids = new int[count];
        for (int i = 0; i < count; i++)
        {
            ids[i] = Sampler.ArgMax(session.Logits);
            if (i + 1 < count) session.Append(ids[i]);
        }
        return ids;
    }

    public void Dispose()
    {
        Model.Dispose();
        File.Dispose();
    }
}
