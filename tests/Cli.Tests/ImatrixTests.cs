using System.Text;
using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;
using Infer.Runtime.Tokenizers;
using Infer.Tests;

namespace Infer.Cli.Tests;

/// <summary>
/// <c>infer imatrix</c>: llama-imatrix's statistics (per layer weight, Σx² of each input column over every row of every chunk)
/// in llama.cpp's GGUF and legacy .dat files, checked against an independent computation of the first layer's attention input
/// (the token embeddings, RMS-normalized and scaled, in double) and for the structure every weight shares.
/// </summary>
public class ImatrixTests : IDisposable
{
    private const int Chunk = 64;
    private readonly string _dir = Directory.CreateTempSubdirectory("infer-imatrix-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A few hundred words of text, the same every run.</summary>
    private string WriteText(int words)
    {
        string[] vocabulary = "the of and to in is was for on that with as by at from his her it an are were which this be or has had not".Split(' ');
        var rng = new Random(7);
        string path = Path.Combine(_dir, "calibration.txt");
        File.WriteAllText(path, string.Join(' ', Enumerable.Range(0, words).Select(_ => vocabulary[rng.Next(vocabulary.Length)])));
        return path;
    }

    [Fact]
    public void FirstLayerInputSquaresMatchAnIndependentComputation()
    {
        string model = Fixtures.Model("llama2-spm", "bf16"), text = WriteText(400), output = Path.Combine(_dir, "m.gguf");
        var (code, stdout, stderr) = CliTests.Infer("imatrix", "-m", model, "-f", text, "-o", output, "-c", $"{Chunk}", "--chunks", "3");
        Assert.True(code == 0, stderr);
        Assert.Contains("3 chunks of 64 tokens", stdout);

        using var im = GgufFile.Open(output);
        Assert.Equal("imatrix", im.GetString("general.type"));
        var (infoCode, _, infoErr) = CliTests.Infer("info", "-m", output); // given as a model by mistake: says what it is
        Assert.Equal(1, infoCode);
        Assert.Contains("an importance matrix (general.type imatrix), not a model", infoErr);
        Assert.Equal(3, im.GetInt("imatrix.chunk_count"));
        Assert.Equal(Chunk, im.GetInt("imatrix.chunk_size"));
        Assert.Equal([text], im.TryGetStringArray("imatrix.datasets")!);
        using var f = GgufFile.Open(model);
        var config = ModelConfig.FromGguf(f);
        string[] roles = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];
        Assert.Equal(config.BlockCount * roles.Length * 3, im.Tensors.Count); // in_sum2, counts, in_sum each; no output.weight
        foreach (int layer in Enumerable.Range(0, config.BlockCount))
            foreach (string role in roles)
                Assert.Equal(3f * Chunk, Floats(im, $"blk.{layer}.{role}.weight.counts")[0]);
        // Q, K and V see one input, as do gate and up
        Assert.Equal(Floats(im, "blk.1.attn_q.weight.in_sum2"), Floats(im, "blk.1.attn_v.weight.in_sum2"));
        Assert.Equal(Floats(im, "blk.0.ffn_gate.weight.in_sum2"), Floats(im, "blk.0.ffn_up.weight.in_sum2"));

        // blk.0's attention input: norm(token_embd[t]) · attn_norm for every token of the 3 chunks (each starting with BOS)
        var tok = Tokenizer.FromGguf(f);
        int[] ids = tok.Encode(File.ReadAllText(text), addSpecial: true, parseSpecial: false);
        int dim = config.EmbeddingLength;
        float[] embd = Dequantize(f, "token_embd.weight"), norm = Dequantize(f, "blk.0.attn_norm.weight");
        var sum2 = new double[dim];
        var sum = new double[dim];
        for (int i = 0; i < 3 * Chunk; i++)
        {
            int id = i % Chunk == 0 && tok.AddBos ? tok.BosId : ids[i];
            var x = embd.AsSpan(id * dim, dim);
            double ms = 0;
            foreach (float v in x) ms += (double)v * v;
            double scale = 1 / Math.Sqrt(ms / dim + config.RmsEps);
            for (int j = 0; j < dim; j++)
            {
                double y = x[j] * scale * norm[j];
                sum2[j] += y * y;
                sum[j] += y;
            }
        }
        float[] got2 = Floats(im, "blk.0.attn_k.weight.in_sum2"), got = Floats(im, "blk.0.attn_k.weight.in_sum");
        for (int j = 0; j < dim; j++)
        {
            Assert.True(Math.Abs(got2[j] - sum2[j]) <= 1e-4 * sum2[j], $"in_sum2[{j}]: {got2[j]} vs {sum2[j]}");
            Assert.True(Math.Abs(got[j] - sum[j]) <= 1e-4 * Math.Sqrt(3 * Chunk * sum2[j]), $"in_sum[{j}]: {got[j]} vs {sum[j]}");
        }
    }

    /// <summary>
    /// The legacy .dat form (chosen by the extension): llama-imatrix's layout, values Σx²/rows·ncall with ncall the chunks; the
    /// same statistics as the GGUF form of the same run; --process-output adds output.weight (the scored half of each chunk).
    /// </summary>
    [Fact]
    public void DatFileHoldsTheSameStatisticsAndProcessOutputAddsTheOutputWeight()
    {
        string model = Fixtures.Model("llama2-spm", "bf16"), text = WriteText(400);
        string gguf = Path.Combine(_dir, "m.gguf"), dat = Path.Combine(_dir, "m.dat");
        foreach (string o in new[] { gguf, dat })
        {
            var (code, _, stderr) = CliTests.Infer("imatrix", "-m", model, "-f", text, "-o", o, "-c", $"{Chunk}", "--chunks", "3",
                "--process-output");
            Assert.True(code == 0, stderr);
        }
        using var im = GgufFile.Open(gguf);
        Assert.Equal(Chunk / 2f * 3, Floats(im, "output.weight.counts")[0]);

        using var r = new BinaryReader(File.OpenRead(dat), Encoding.UTF8);
        int entries = r.ReadInt32();
        Assert.Equal(im.Tensors.Count / 3, entries);
        var names = new List<string>();
        for (int e = 0; e < entries; e++)
        {
            string name = Encoding.UTF8.GetString(r.ReadBytes(r.ReadInt32()));
            names.Add(name);
            int ncall = r.ReadInt32(), nval = r.ReadInt32();
            float[] expected = Floats(im, name + ".in_sum2");
            float count = Floats(im, name + ".counts")[0];
            Assert.Equal(name == "output.weight" ? 2 : 3, ncall); // rows / chunk size, rounded up: output.weight saw half of each
            Assert.Equal(expected.Length, nval);
            for (int j = 0; j < nval; j++) Assert.Equal(expected[j] / count * ncall, r.ReadSingle());
        }
        Assert.Equal(names.Order(StringComparer.Ordinal), names);
        Assert.Equal(3, r.ReadInt32());
        Assert.Equal(text, Encoding.UTF8.GetString(r.ReadBytes(r.ReadInt32())));
        Assert.Equal(r.BaseStream.Length, r.BaseStream.Position);
    }

    [Fact]
    public void TooLittleTextAndInvalidUtf8AreOneLineErrors()
    {
        string model = Fixtures.Model("llama2-spm", "bf16"), text = WriteText(10);
        var (code, _, stderr) = CliTests.Infer("imatrix", "-m", model, "-f", text, "-o", Path.Combine(_dir, "x.gguf"), "-c", $"{Chunk}");
        Assert.Equal(1, code);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.Contains("fewer than one chunk of 64", stderr);

        string binary = Path.Combine(_dir, "binary.txt");
        File.WriteAllBytes(binary, [0x68, 0x69, 0xC3, 0x28, 0x20]);
        (code, _, stderr) = CliTests.Infer("imatrix", "-m", model, "-f", binary, "-c", $"{Chunk}");
        Assert.Equal(1, code);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.Contains("not UTF-8 text (invalid bytes at offset 2)", stderr);
        Assert.False(File.Exists(Path.Combine(_dir, "x.gguf")));

        (code, _, stderr) = CliTests.Infer("imatrix", "-m", model, "-f", WriteText(400), "-o", Path.Combine(_dir, "no", "x.gguf"));
        Assert.Equal(2, code); // said before the model loads, not after the last chunk
        Assert.Contains("does not exist", stderr);
    }

    private static float[] Floats(GgufFile f, string tensor)
    {
        Assert.True(f.TryGetTensor(tensor, out var t), $"no tensor {tensor}");
        Assert.Equal(GgmlType.F32, t.Type);
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.Span).ToArray();
    }

    private static float[] Dequantize(GgufFile f, string tensor)
    {
        Assert.True(f.TryGetTensor(tensor, out var t));
        var values = new float[t.ElementCount];
        RowCodec.Dequantize(t.Type, t.Span, values);
        return values;
    }
}
