using System.Text.Json;
using Infer.Tests;

namespace Infer.Cli.Tests;

/// <summary><c>infer template</c>: byte-exact renders of the fixture vectors (Jinja2's output) and of a model's own template.</summary>
public class TemplateCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("infer-template-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static IEnumerable<object[]> Vectors()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.File("chat-templates", "vectors.json")));
        // One vector per template that renders without an error and does not print today's date.
        return doc.RootElement.EnumerateArray()
            .Where(v => v.TryGetProperty("expected", out _)
                && !File.ReadAllText(Fixtures.File("chat-templates", "templates", v.GetProperty("template").GetString()!)).Contains("strftime_now"))
            .GroupBy(v => v.GetProperty("template").GetString())
            .Select(g => new object[] { g.Key!, g.First().GetProperty("conversation").GetString()! })
            .ToList();
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void TemplateFileWithContextIsByteExact(string template, string conversation)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.File("chat-templates", "vectors.json")));
        var v = doc.RootElement.EnumerateArray().First(e => e.GetProperty("template").GetString() == template
            && e.GetProperty("conversation").GetString() == conversation && e.TryGetProperty("expected", out _));
        string context = Path.Combine(_dir, "context.json");
        File.WriteAllText(context, v.GetProperty("context").GetRawText());
        var (code, stdout, stderr) = CliTests.Infer("template", "--template-file", Fixtures.File("chat-templates", "templates", template),
            "--context", context);
        Assert.True(code == 0, stderr);
        Assert.Equal(v.GetProperty("expected").GetString(), stdout);
    }

    [Fact]
    public void ModelTemplateWithMessagesMatchesTheFixtureRendering()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.ModelDir("qwen3"), "reference", "reference.json")));
        var c = doc.RootElement.GetProperty("cases").EnumerateArray().First(e => e.GetProperty("id").GetString() == "chat");
        string messages = Path.Combine(_dir, "messages.json");
        File.WriteAllText(messages, c.GetProperty("messages").GetRawText());
        var (code, stdout, stderr) = CliTests.Infer("template", "-m", Fixtures.Model("qwen3", "bf16"), "--messages", messages,
            "--add-generation-prompt");
        Assert.True(code == 0, stderr);
        Assert.Equal(c.GetProperty("rendered").GetString(), stdout);
    }

    [Fact]
    public void TemplateErrorsNameTheLine()
    {
        string t = Path.Combine(_dir, "bad.jinja");
        File.WriteAllText(t, "line one\n{% if x %}\n{{ raise_exception('nope') }}\n{% endif %}");
        string context = Path.Combine(_dir, "ctx.json");
        File.WriteAllText(context, "{\"x\": true}");
        var (code, stdout, stderr) = CliTests.Infer("template", "--template-file", t, "--context", context);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains("line 3", stderr);
        Assert.Contains("nope", stderr);
    }

    [Fact]
    public void ModelWithoutTemplateWarnsAndUsesTheFallback()
    {
        string messages = Path.Combine(_dir, "m.json");
        File.WriteAllText(messages, "[{\"role\":\"user\",\"content\":\"Hi\"}]");
        var (code, stdout, stderr) = CliTests.Infer("template", "-m", Fixtures.Model("llama2-spm", "bf16"), "--messages", messages,
            "--add-generation-prompt");
        Assert.Equal(0, code);
        Assert.Contains("no chat template", stderr);
        Assert.Equal("User: Hi\nAssistant:", stdout);
    }
}
