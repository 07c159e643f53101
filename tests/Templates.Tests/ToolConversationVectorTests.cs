using System.Text.Json;
using Infer.Tests;

namespace Infer.Templates.Tests;

/// <summary>
/// The fixture templates with tools, tool calls and results, reasoning content and multi-part content, compared
/// with Jinja2 3.1 set up as transformers sets it up (tool-vectors.json, written by make_tool_vectors.py).
/// Many of these make the template itself fail (a TypeError or UndefinedError in the template); the failure must match.
/// </summary>
public class ToolConversationVectorTests
{
    private static readonly TemplateOptions Options = new() { Clock = () => new DateTime(2026, 11, 23, 12, 0, 0) };

    private static readonly Lazy<JsonElement> Data = new(() =>
    {
        var path = Path.Combine(Fixtures.RepoRoot, "tests", "Templates.Tests", "tool-vectors.json");
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.GetProperty("vectors").Clone();
    });

    public static IEnumerable<object[]> Cases()
    {
        int i = 0;
        foreach (var v in Data.Value.EnumerateArray())
        {
            yield return [i++, v.GetProperty("template").GetString()!, v.GetProperty("conversation").GetString()!];
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RendersLikeJinja2(int index, string template, string conversation)
    {
        var v = Data.Value[index];
        Assert.Equal(conversation, v.GetProperty("conversation").GetString());
        var t = ChatTemplate.Parse(File.ReadAllText(Fixtures.File("chat-templates", "templates", template)));
        var vars = TemplateValues.FromJson(v.GetProperty("context"));
        if (v.TryGetProperty("expected", out var expected))
        {
            Assert.Equal(expected.GetString(), t.Render(vars, Options));
            return;
        }
        var error = v.GetProperty("error").GetString()!;
        var ex = Assert.ThrowsAny<TemplateException>(() => t.Render(vars, Options));
        if (error.StartsWith("RecursionError:", StringComparison.Ordinal))
        {
            // Python runs out of stack; we stop at a fixed macro depth. Same kind, our own wording.
            Assert.Equal("RecursionError", ex.Kind);
        }
        else
        {
            Assert.Equal(error, ex.PythonMessage);
        }
    }
}
