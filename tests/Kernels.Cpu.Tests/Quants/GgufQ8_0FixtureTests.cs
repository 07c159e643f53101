using Infer.Runtime.Formats;
using Infer.Runtime.Gguf;
using Infer.Tests;

namespace Infer.Kernels.Cpu.Tests.Quants;

/// <summary>
/// Our Q8_0 quantizer against llama.cpp's converter output: the q8_0 fixture was made from the same BF16 checkpoint as the
/// bf16 one.
/// </summary>
public class GgufQ8_0FixtureTests
{
    [Fact]
    public void QuantizingBf16TensorsReproducesLlamaCppQ8_0Bytes()
    {
        using var bf16 = GgufFile.Open(Fixtures.Model("llama2-spm", "bf16"));
        using var q8 = GgufFile.Open(Fixtures.Model("llama2-spm", "q8_0"));
        int compared = 0;
        foreach (var t in q8.Tensors)
        {
            if (t.Type != GgmlType.Q8_0) continue;
            var src = bf16.GetTensor(t.Name);
            Assert.Equal(GgmlType.BF16, src.Type);
            Assert.Equal(t.ElementCount, src.ElementCount);
            var floats = new float[src.ElementCount];
            RowCodec.Dequantize(GgmlType.BF16, src.Span, floats);
            var ours = new byte[t.ByteSize];
            RowCodec.Quantize(GgmlType.Q8_0, floats, ours);
            byte[] theirs = t.Span.ToArray();
            int firstDiff = -1;
            for (int i = 0; i < ours.Length; i++)
                if (ours[i] != theirs[i]) { firstDiff = i; break; }
            Assert.True(firstDiff < 0, $"{t.Name}: first differing byte at {firstDiff} (block {firstDiff / 34})");
            compared++;
        }
        Assert.True(compared >= 10, $"only {compared} Q8_0 tensors compared");
    }
}
