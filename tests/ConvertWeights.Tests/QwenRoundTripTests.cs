using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Infer.Runtime.Gguf;
using Infer.Tests;

namespace Infer.ConvertWeights.Tests;

/// <summary>
/// The qwen fixtures ship without their Hugging Face folder, so the test rebuilds one from llama.cpp's GGUF (config.json,
/// tokenizer.json, tokenizer_config.json, BF16 safetensors under Hugging Face names) and checks that converting it gives
/// llama.cpp's file back: tensor names, order, types, bytes and every metadata key.
/// </summary>
public class QwenRoundTripTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qwen-roundtrip-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly (string Gguf, string Hf)[] Names =
    [
        ("token_embd", "model.embed_tokens"), ("output_norm", "model.norm"), ("output", "lm_head"),
        ("attn_norm", "input_layernorm"), ("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"), ("attn_q_norm", "self_attn.q_norm"), ("attn_k_norm", "self_attn.k_norm"),
        ("ffn_norm", "post_attention_layernorm"), ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"), ("ffn_down", "mlp.down_proj"),
    ];

    private static string HfName(string gguf)
    {
        string suffix = gguf.EndsWith(".bias", StringComparison.Ordinal) ? ".bias" : ".weight";
        string stem = gguf[..^suffix.Length];
        if (stem.StartsWith("blk.", StringComparison.Ordinal))
        {
            int dot = stem.IndexOf('.', 4);
            string layer = stem[4..dot], local = stem[(dot + 1)..];
            return $"model.layers.{layer}.{Names.Single(n => n.Gguf == local).Hf}{suffix}";
        }
        return Names.Single(n => n.Gguf == stem).Hf + suffix;
    }

    private static unsafe void WriteCheckpoint(GgufFile g, string dir, string hfArch)
    {
        string arch = g.GetString("general.architecture");
        var tokens = g.TryGetStringArray("tokenizer.ggml.tokens")!;
        var types = g.TryGetInt32Array("tokenizer.ggml.token_type")!;
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(hfArch),
            ["hidden_size"] = g.GetInt($"{arch}.embedding_length"),
            ["num_hidden_layers"] = g.GetInt($"{arch}.block_count"),
            ["intermediate_size"] = g.GetInt($"{arch}.feed_forward_length"),
            ["num_attention_heads"] = g.GetInt($"{arch}.attention.head_count"),
            ["num_key_value_heads"] = g.GetInt($"{arch}.attention.head_count_kv"),
            ["max_position_embeddings"] = g.GetInt($"{arch}.context_length"),
            ["rms_norm_eps"] = g.TryGetFloat($"{arch}.attention.layer_norm_rms_epsilon"),
            ["rope_theta"] = g.TryGetFloat($"{arch}.rope.freq_base"),
            ["vocab_size"] = tokens.Length,
            ["tie_word_embeddings"] = g.FindTensor("output.weight") is null,
            ["bos_token_id"] = g.GetInt("tokenizer.ggml.bos_token_id"),
            ["eos_token_id"] = g.GetInt("tokenizer.ggml.eos_token_id"),
        };
        if (g.TryGetInt32($"{arch}.attention.key_length") is { } hd) config["head_dim"] = hd;
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());

        var vocab = new JsonObject();
        var added = new JsonArray();
        for (int i = 0; i < tokens.Length; i++)
        {
            if (types[i] == TokenType.Normal) vocab[tokens[i]] = i;
            else if (types[i] is TokenType.Control or TokenType.UserDefined)
            {
                added.Add(new JsonObject
                {
                    ["id"] = i, ["content"] = tokens[i], ["special"] = types[i] == TokenType.Control, ["normalized"] = false,
                });
            }
        }
        var merges = new JsonArray(g.TryGetStringArray("tokenizer.ggml.merges")!.Select(m => (JsonNode)m).ToArray());
        var tokenizer = new JsonObject
        {
            ["added_tokens"] = added,
            ["normalizer"] = new JsonObject { ["type"] = "NFC" },
            ["pre_tokenizer"] = JsonNode.Parse($$"""
                {"type":"Sequence","pretokenizers":[
                    {"type":"Split","pattern":{"Regex":{{JsonSerializer.Serialize(PreTokenizer.Qwen2Regex)}}},"behavior":"Isolated","invert":false},
                    {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]}
                """),
            ["post_processor"] = JsonNode.Parse("""{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}"""),
            ["decoder"] = JsonNode.Parse("""{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}"""),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["byte_fallback"] = false, ["ignore_merges"] = false, ["vocab"] = vocab, ["merges"] = merges,
            },
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), tokenizer.ToJsonString());
        var tc = new JsonObject
        {
            ["add_bos_token"] = g.TryGetBool("tokenizer.ggml.add_bos_token"),
            ["bos_token"] = null,
            ["eos_token"] = tokens[g.GetInt("tokenizer.ggml.eos_token_id")],
            ["pad_token"] = tokens[g.GetInt("tokenizer.ggml.padding_token_id")],
            ["chat_template"] = g.GetString("tokenizer.chat_template"),
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), tc.ToJsonString());

        // BF16 safetensors in the fixture's tensor order (F32 norms and biases came from BF16, so truncating them is exact)
        var header = new JsonObject();
        long offset = 0;
        foreach (var t in g.Tensors)
        {
            long bytes = t.ElementCount * 2;
            header[HfName(t.Name)] = new JsonObject
            {
                ["dtype"] = "BF16",
                ["shape"] = new JsonArray(t.Dims.Reverse().Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += bytes;
        }
        byte[] h = Encoding.UTF8.GetBytes(header.ToJsonString());
        using var f = File.Create(Path.Combine(dir, "model.safetensors"));
        f.Write(BitConverter.GetBytes((ulong)h.Length));
        f.Write(h);
        foreach (var t in g.Tensors)
        {
            if (t.Type == GgmlType.BF16) f.Write(t.Span);
            else
            {
                Assert.Equal(GgmlType.F32, t.Type);
                var floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, uint>(t.Span);
                foreach (uint u in floats)
                {
                    Assert.Equal(0u, u & 0xffff);
                    f.Write(BitConverter.GetBytes((ushort)(u >> 16)));
                }
            }
        }
    }

    [Theory]
    [InlineData("qwen2", "Qwen2ForCausalLM")]
    [InlineData("qwen3", "Qwen3ForCausalLM")]
    public void ConvertingTheRebuiltCheckpointGivesLlamaCppsFileBack(string name, string hfArch)
    {
        string hf = Path.Combine(_dir, name);
        Directory.CreateDirectory(hf);
        using var expected = GgufFile.Open(Fixtures.Model(name, "bf16"));
        WriteCheckpoint(expected, hf, hfArch);
        using (var tj = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(hf, "tokenizer.json"))))
        {
            string? byHash = PreTokenizerHash.Lookup(tj.RootElement, out string hash);
            Assert.True(byHash == "qwen2", $"check-text hash {hash} -> {byHash}");
        }

        string output = Path.Combine(_dir, name + ".gguf");
        var err = new StringWriter();
        Assert.True(Program.Run(["convert", hf, "-o", output, "--type", "bf16"], err, showProgress: false) == 0, err.ToString());
        using var actual = GgufFile.Open(output);
        GgufCompare.TensorsMatch(expected, actual);
        GgufCompare.MetadataMatches(expected, actual);
        Assert.Equal(expected.MetadataKeys.Where(k => !GgufCompare.DescriptiveKeys.Contains(k)),
            actual.MetadataKeys.Where(k => !GgufCompare.DescriptiveKeys.Contains(k)));
    }
}
