using System.Text;
using Infer.Runtime;
using Infer.Tests;

namespace Infer.ConvertWeights.Tests;

/// <summary>Every failure is one line naming the file and the problem, with a non-zero exit code, and leaves no output file.</summary>
public class ErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("convert-errors-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A writable copy of the llama2-spm checkpoint.</summary>
    private string CopyCheckpoint()
    {
        string dst = Path.Combine(_dir, "hf");
        Directory.CreateDirectory(dst);
        foreach (var f in Directory.GetFiles(Path.Combine(Fixtures.ModelDir("llama2-spm"), "hf")))
        {
            string target = Path.Combine(dst, Path.GetFileName(f));
            File.Copy(f, target);
            File.SetAttributes(target, FileAttributes.Normal);
        }
        return dst;
    }

    private (int Code, string Message) Convert(string dir, string? output = null)
    {
        output ??= Path.Combine(_dir, "out.gguf");
        var err = new StringWriter();
        int rc = Program.Run(["convert", dir, "-o", output, "--type", "bf16"], err, showProgress: false);
        string text = err.ToString().TrimEnd();
        Assert.DoesNotContain('\n', text); // one line
        Assert.False(File.Exists(output) && rc != 0, "a failed run left an output file");
        Assert.False(File.Exists(output + ".tmp"), "a temporary file was left behind");
        return (rc, text);
    }

    /// <summary>Writes a safetensors file: 8-byte little-endian header length, the JSON header, then the data bytes.</summary>
    private static void WriteSafetensors(string path, string header, int dataBytes)
    {
        byte[] h = Encoding.UTF8.GetBytes(header);
        using var f = File.Create(path);
        f.Write(BitConverter.GetBytes((ulong)h.Length));
        f.Write(h);
        f.Write(new byte[dataBytes]);
    }

    [Fact]
    public void MissingCheckpointFolder()
    {
        var (rc, msg) = Convert(Path.Combine(_dir, "nope"));
        Assert.Equal(1, rc);
        Assert.Contains("nope", msg);
        Assert.Contains("not found", msg);
    }

    [Fact]
    public void MissingConfigJson()
    {
        string dir = CopyCheckpoint();
        File.Delete(Path.Combine(dir, "config.json"));
        var (rc, msg) = Convert(dir);
        Assert.Equal(1, rc);
        Assert.Contains("config.json: file not found", msg);
    }

    [Fact]
    public void MissingWeights()
    {
        string dir = CopyCheckpoint();
        File.Delete(Path.Combine(dir, "model.safetensors"));
        var (rc, msg) = Convert(dir);
        Assert.Equal(1, rc);
        Assert.Contains("model.safetensors", msg);
        Assert.Contains("file not found", msg);
    }

    [Fact]
    public void MissingShardListedInTheIndex()
    {
        string dir = CopyCheckpoint();
        File.Move(Path.Combine(dir, "model.safetensors"), Path.Combine(dir, "model-00001-of-00002.safetensors"));
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"),
            """{"metadata": {}, "weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors", "lm_head.weight":"""
            + """ "model-00002-of-00002.safetensors"}}""");
        var (rc, msg) = Convert(dir);
        Assert.Equal(1, rc);
        Assert.Contains("model-00002-of-00002.safetensors: file not found", msg);
    }

    [Theory]
    [InlineData("not json at all", "not valid JSON")]
    [InlineData("""{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}}""", "outside the 16-byte data section")]
    [InlineData("""{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}""", "holds 16 bytes but shape [3] x F32 needs 12")]
    [InlineData("""{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": """
        + """{"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}""", "overlap")]
    [InlineData("""{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}""", "bad dimension")]
    [InlineData("""["a"]""", "not an object")]
    public void CorruptSafetensorsHeader(string header, string expected)
    {
        string dir = CopyCheckpoint();
        WriteSafetensors(Path.Combine(dir, "model.safetensors"), header, 16);
        var (rc, msg) = Convert(dir);
        Assert.Equal(1, rc);
        Assert.Contains("model.safetensors", msg);
        Assert.Contains(expected, msg);
    }

    [Fact]
    public void HeaderLengthPastTheEndOfTheFile()
    {
        string dir = CopyCheckpoint();
        string path = Path.Combine(dir, "model.safetensors");
        using (var f = File.Create(path))
        {
            f.Write(BitConverter.GetBytes(1UL << 40));
            f.Write(new byte[100]);
        }
        var (rc, msg) = Convert(dir);
        Assert.Equal(1, rc);
        Assert.Contains("corrupt header: header length 1099511627776 does not fit the 108-byte file", msg);
    }

    [Fact]
    public void UnknownDtypeNamesTensorAndDtype()
    {
        string dir = CopyCheckpoint();
        WriteSafetensors(Path.Combine(dir, "model.safetensors"),
            """{"model.norm.weight": {"dtype": "F8_E4M3", "shape": [64], "data_offsets": [0, 64]}}""", 64);
        var (rc, msg) = Convert(dir);
        Assert.Equal(1, rc);
        Assert.Contains("tensor 'model.norm.weight' has dtype 'F8_E4M3'", msg);
    }

    [Fact]
    public void TensorShapeDisagreeingWithConfig()
    {
        string dir = CopyCheckpoint();
        string cfg = Path.Combine(dir, "config.json");
        File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("\"intermediate_size\": 176", "\"intermediate_size\": 192"));
        var (rc, msg) = Convert(dir);
        Assert.Equal(1, rc);
        Assert.Contains("model.safetensors", msg);
        Assert.Contains("tensor 'model.layers.0.mlp.down_proj.weight' has shape [64, 176] but config.json implies [64, 192]", msg);
    }

    [Fact]
    public void UnsupportedArchitectureListsTheSupportedOnes()
    {
        string dir = CopyCheckpoint();
        string cfg = Path.Combine(dir, "config.json");
        File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("LlamaForCausalLM", "GPT2LMHeadModel"));
        var (rc, msg) = Convert(dir);
        Assert.Equal(1, rc);
        Assert.Contains("architecture 'GPT2LMHeadModel' is not supported; "
            + "supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM", msg);
    }

    [Fact]
    public void OutputFolderMissing()
    {
        var (rc, msg) = Convert(Path.Combine(Fixtures.ModelDir("llama2-spm"), "hf"), Path.Combine(_dir, "no-such-folder", "out.gguf"));
        Assert.Equal(3, rc);
        Assert.Contains("no-such-folder", msg);
        Assert.Contains("does not exist", msg);
    }

    [Fact]
    public void OutputPathNotWritable()
    {
        // /proc refuses new files even for root
        Assert.SkipUnless(Directory.Exists("/proc/self"), "no /proc on this OS (Linux only)");
        var (rc, msg) = Convert(Path.Combine(Fixtures.ModelDir("llama2-spm"), "hf"), "/proc/model.gguf");
        Assert.Equal(3, rc);
        Assert.Contains("/proc/model.gguf", msg);
        Assert.Contains("cannot create output file", msg);
    }

    [Fact]
    public void DiskFull()
    {
        // The temporary file is a link to /dev/full, whose every write fails with ENOSPC, as on a full disk.
        Assert.SkipUnless(File.Exists("/dev/full"), "no /dev/full on this OS (Linux only)");
        string output = Path.Combine(_dir, "full.gguf");
        File.CreateSymbolicLink(output + ".tmp", "/dev/full");
        var (rc, msg) = Convert(Path.Combine(Fixtures.ModelDir("llama2-spm"), "hf"), output);
        Assert.Equal(4, rc);
        Assert.Contains("full.gguf", msg);
        Assert.Contains("no space left on device", msg);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void UsageErrorsExitWith2()
    {
        var err = new StringWriter();
        Assert.Equal(2, Program.Run(["convert", "dir"], err, showProgress: false));
        Assert.Contains("missing option -o", err.ToString());
        err = new StringWriter();
        Assert.Equal(2, Program.Run(["quantize", "a.gguf", "b.gguf", "q3_x"], err, showProgress: false));
        Assert.Contains("unknown type 'q3_x'", err.ToString());
        err = new StringWriter();
        Assert.Equal(2, Program.Run(["frobnicate"], err, showProgress: false));
        Assert.Contains("unknown command 'frobnicate'", err.ToString());
    }

    [Fact]
    public void QuantizeOfAMissingFile()
    {
        var err = new StringWriter();
        string input = Path.Combine(_dir, "missing.gguf");
        Assert.Equal(1, Program.Run(["quantize", input, Path.Combine(_dir, "o.gguf"), "q4_0"], err, showProgress: false));
        Assert.Contains($"{input}: file not found", err.ToString());
    }

    [Fact]
    public void SafetensorsReaderThrowsTypedExceptions()
    {
        string path = Path.Combine(_dir, "x.safetensors");
        WriteSafetensors(path, """{"t": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}""", 8);
        var e = Assert.Throws<UnsupportedModelException>(() => SafetensorsFile.Open(path));
        Assert.Equal(path, e.FilePath);
    }
}
