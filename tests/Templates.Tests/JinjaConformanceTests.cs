using System.Text.Json;
using Infer.Tests;

namespace Infer.Templates.Tests;

/// <summary>
/// Small templates covering one feature each (whitespace control, slicing, loop variables, scoping, namespace,
/// macros, filters, tests, string methods, undefined values, errors), compared with the output of Jinja2 3.1
/// configured as transformers configures it. jinja-cases.json is written by make_jinja_cases.py beside this file.
/// </summary>
public class JinjaConformanceTests
{
    private static readonly Lazy<JsonElement> Data = new(() =>
    {
        var path = Path.Combine(Fixtures.RepoRoot, "tests", "Templates.Tests", "jinja-cases.json");
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.Clone();
    });

    public static IEnumerable<object[]> Cases()
    {
        int n = Data.Value.GetProperty("cases").GetArrayLength();
        for (int i = 0; i < n; i++)
        {
            var template = Data.Value.GetProperty("cases")[i].GetProperty("template").GetString()!;
            yield return [i, template.Length > 60 ? template[..60] : template];
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesJinja2(int index, string templateStart)
    {
        var c = Data.Value.GetProperty("cases")[index];
        var source = c.GetProperty("template").GetString()!;
        Assert.StartsWith(templateStart, source, StringComparison.Ordinal);
        var vars = TemplateValues.FromJson(Data.Value.GetProperty("context"));
        if (c.TryGetProperty("expected", out var expected))
        {
            Assert.Equal(expected.GetString(), ChatTemplate.Parse(source).Render(vars));
            return;
        }
        var error = c.GetProperty("error").GetString()!;
        var ex = Assert.ThrowsAny<TemplateException>(() => ChatTemplate.Parse(source).Render(vars));
        Assert.Equal(error[..error.IndexOf(':')], ex.Kind);
        if (c.TryGetProperty("error_line", out var line))
        {
            // Syntax errors: same kind and line; our wording differs from Jinja2's in places.
            Assert.Equal(line.GetInt32(), ex.Line);
        }
        else
        {
            Assert.Equal(error, ex.PythonMessage);
            Assert.True(ex.Line > 0, ex.Message);
        }
    }
}
