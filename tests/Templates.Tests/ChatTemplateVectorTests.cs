using System.Text.Json;
using Infer.Tests;

namespace Infer.Templates.Tests;

/// <summary>
/// Every entry of chat-templates/vectors.json, rendered by Jinja2 3.1 the way transformers does, must render
/// byte-exactly here, or fail the same way where the entry has "error".
/// </summary>
public class ChatTemplateVectorTests
{
    // The vectors were rendered on 2026-11-23 (Apertus prints "Current date: 2026-11-23"), so strftime_now reads a clock pinned to that day.
    private static readonly TemplateOptions Options = new() { Clock = () => new DateTime(2026, 11, 23, 12, 0, 0) };

    private static readonly Lazy<JsonElement[]> Vectors = new(() =>
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.File("chat-templates", "vectors.json")));
        return doc.RootElement.EnumerateArray().Select(e => e.Clone()).ToArray();
    });

    private static readonly Dictionary<string, ChatTemplate> Parsed = [];

    public static IEnumerable<object[]> Cases()
    {
        var vectors = Vectors.Value;
        for (int i = 0; i < vectors.Length; i++)
        {
            var v = vectors[i];
            var agp = v.GetProperty("context").GetProperty("add_generation_prompt").GetBoolean();
            yield return [i, v.GetProperty("template").GetString()!, v.GetProperty("conversation").GetString()!, agp];
        }
    }

    private static ChatTemplate Load(string name)
    {
        lock (Parsed)
        {
            if (!Parsed.TryGetValue(name, out var t))
            {
                t = ChatTemplate.Parse(File.ReadAllText(Fixtures.File("chat-templates", "templates", name)));
                Parsed[name] = t;
            }
            return t;
        }
    }

    [Fact]
    public void FixtureHasAllVectors()
    {
        Assert.Equal(370, Vectors.Value.Length);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RendersLikeJinja2(int index, string template, string conversation, bool addGenerationPrompt)
    {
        var v = Vectors.Value[index];
        Assert.Equal(template, v.GetProperty("template").GetString());
        Assert.Equal(conversation, v.GetProperty("conversation").GetString());
        var t = Load(template);
        var vars = TemplateValues.FromJson(v.GetProperty("context"));
        Assert.Equal(addGenerationPrompt, vars["add_generation_prompt"]);
        if (v.TryGetProperty("error", out var error))
        {
            var expected = error.GetString()!;
            var ex = Assert.ThrowsAny<TemplateException>(() => t.Render(vars, Options));
            Assert.Equal(expected, ex.PythonMessage);
            if (expected.StartsWith("TemplateError: ", StringComparison.Ordinal))
            {
                var raise = Assert.IsType<TemplateRaiseException>(ex);
                Assert.Equal(expected["TemplateError: ".Length..], raise.TemplateMessage);
            }
            Assert.True(ex.Line > 0, "error names a line: " + ex.Message);
        }
        else
        {
            Assert.Equal(v.GetProperty("expected").GetString(), t.Render(vars, Options));
        }
    }
}
