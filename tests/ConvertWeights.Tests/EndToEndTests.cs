using Infer.Kernels.Cpu;
using Infer.Runtime.Gguf;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Runtime.Sampling;
using Infer.Runtime.Tokenizers;
using Infer.Tests;

namespace Infer.ConvertWeights.Tests;

/// <summary>
/// The Hugging Face checkpoints converted by us, then run by our runtime, reproduce transformers: last-position logits
/// within 1e-3 and identical greedy tokens (and our tokenizer, built from the converted metadata, gives transformers' ids).
/// </summary>
public class EndToEndTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("convert-e2e-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("llama2-spm", "bf16")]
    [InlineData("llama2-spm", "f32")]
    [InlineData("llama3", "bf16")]
    [InlineData("llama3", "f32")]
    public void ConvertedCheckpointMatchesTransformers(string model, string type)
    {
        string output = Path.Combine(_dir, $"{model}.{type}.gguf");
        var err = new StringWriter();
        int code = Program.Run(["convert", Path.Combine(Fixtures.ModelDir(model), "hf"), "-o", output, "--type", type], err, showProgress: false);
        Assert.True(code == 0, err.ToString());

        using var file = GgufFile.Open(output);
        var tokenizer = Tokenizer.FromGguf(file);
        using var llm = LlamaModel.Load(file, new CpuBackend(2), new ModelOptions(ContextLength: 256));
        foreach (var c in ReferenceCase.Load(model))
        {
            if (c.Prompt is not null)
                Assert.Equal(c.InputIds, tokenizer.Encode(c.Prompt));
            var session = new Session(llm);
            session.Append(c.InputIds);
            double diff = c.LoadLogits().Zip(session.Logits, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(diff <= 1e-3, $"{c} {type}: max |dlogit| {diff}");
            var expected = c.GreedyNewIds;
            var greedy = new int[expected.Length];
            for (int i = 0; i < greedy.Length; i++)
            {
                greedy[i] = Sampler.ArgMax(session.Logits);
                session.Append(greedy[i]);
            }
            Assert.Equal(expected, greedy);
        }
    }

    /// <summary>
    /// llama.cpp's own q8_0 results differ from transformers by 0.10 to 0.24 on these fixtures (llamacpp_q8_0.json); 1.25 x the
    /// largest.
    /// </summary>
    private const double Q8_0LogitBound = 0.30;

    [Theory]
    [InlineData("qwen2")]
    [InlineData("qwen3")]
    public void OurQ8_0OfQwenStaysCloseToTransformers(string model)
    {
        string output = Path.Combine(_dir, $"{model}.q8_0.gguf");
        var err = new StringWriter();
        int code = Program.Run(["quantize", Fixtures.Model(model, "bf16"), output, "q8_0"], err, showProgress: false);
        Assert.True(code == 0, err.ToString());
        using var file = GgufFile.Open(output);
        Assert.Contains(file.Tensors, t => t.Type == GgmlType.Q8_0);
        using var llm = LlamaModel.Load(file, new CpuBackend(2), new ModelOptions(ContextLength: 256));
        foreach (var c in ReferenceCase.Load(model))
        {
            var session = new Session(llm);
            session.Append(c.InputIds);
            var reference = c.LoadLogits();
            double diff = reference.Zip(session.Logits, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(diff <= Q8_0LogitBound, $"{c}: max |dlogit| {diff}");
            if (c.Top1Top2Gap > 0.05)
                Assert.Equal(Sampler.ArgMax(reference), Sampler.ArgMax(session.Logits));
        }
    }
}
