using System.Text.Json;
using Infer.Tests;

namespace Infer.Cli.Tests;

/// <summary>
/// <c>infer run</c> / <c>chat</c> with <c>--grammar</c>, <c>--grammar-file</c>, <c>-j/--json-schema</c> on a random-weight fixture.
/// </summary>
public class GrammarCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("infer-grammar-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string Model = Fixtures.Model("llama3", "q8_0");

    private static (int Code, string Out, string Err) Infer(params string[] args) => CliTests.Infer(args);

    [Fact]
    public void RunWithAJsonSchemaPrintsValidJson()
    {
        const string schema = """
            {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
             "required": ["name", "age"], "additionalProperties": false}
            """;
        foreach (var option in new[] { "-j", "--json-schema" })
        {
            var (code, stdout, stderr) = Infer("run", "-m", Model, "-p", "Person:", "-n", "120", "--seed", "3", "-t", "1", option, schema);
            Assert.True(code == 0, stderr);
            using var doc = JsonDocument.Parse(stdout);
            using var s = JsonDocument.Parse(schema);
            Assert.Empty(JsonSchemaValidator.Validate(doc.RootElement, s.RootElement));
        }
    }

    [Fact]
    public void RunWithAGrammarAndAGrammarFile()
    {
        const string g = "root ::= (\"yes\" | \"no\") \"!\"";
        var (code, stdout, stderr) = Infer("run", "-m", Model, "-p", "Answer:", "-n", "16", "--seed", "1", "-t", "1", "--grammar", g);
        Assert.True(code == 0, stderr);
        Assert.Matches("^(yes|no)!\n$", stdout);

        string file = Path.Combine(_dir, "g.gbnf");
        File.WriteAllText(file, "# digits then a dot\nroot ::= [0-9]{2,3} \".\"\n");
        (code, stdout, stderr) = Infer("run", "-m", Model, "-p", "N:", "-n", "16", "--temp", "0", "-t", "1", "--grammar-file", file);
        Assert.True(code == 0, stderr);
        Assert.Matches("^[0-9]{2,3}\\.\n$", stdout);
    }

    [Fact]
    public void ChatRepliesFollowTheGrammar()
    {
        var o = new StringWriter();
        var e = new StringWriter();
        string[] args = ["chat", "-m", Model, "-t", "1", "--seed", "5", "--grammar", "root ::= [a-c]{1,4}"];
        int code = Program.Run(args, o, e, new StringReader("hi\nagain\n"), interactive: false);
        Assert.True(code == 0, e.ToString());
        var lines = o.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.All(lines, l => Assert.Matches("^[a-c]{1,4}$", l));
    }

    [Fact]
    public void AGrammarErrorIsOneUsageLineWithLineAndColumn()
    {
        string file = Path.Combine(_dir, "bad.gbnf");
        File.WriteAllText(file, "root ::= item+\nitem ::= \"a\" | [b-\n");
        var (code, stdout, stderr) = Infer("run", "-m", Model, "-p", "x", "--grammar-file", file);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Equal($"infer run: --grammar-file {file}: line 2, column 16: unterminated character class (no closing ']' on this line)",
            stderr.TrimEnd());
        Assert.Single(stderr.TrimEnd().Split('\n'));
    }

    [Theory]
    [InlineData(new[] { "--grammar", "root ::= foo" }, "infer run: --grammar: line 1, column 10: undefined rule 'foo'")]
    [InlineData(new[] { "-j", "{\"type\": \"string\", \"format\": \"email\"}" },
        "infer run: --json-schema: #: 'format': 'email' is not supported (supported: date, time, date-time, uuid)")]
    [InlineData(new[] { "-j", "{\"type\": " }, "infer run: --json-schema: the JSON schema is not valid JSON")]
    [InlineData(new[] { "--grammar", "root ::= \"a\"", "-j", "{}" }, "infer run: --grammar and --json-schema cannot be used together")]
    public void BadGrammarOptionsAreUsageErrors(string[] options, string message)
    {
        var (code, _, stderr) = Infer(["run", "-m", Model, "-p", "x", .. options]);
        Assert.Equal(2, code);
        Assert.StartsWith(message, stderr);
        Assert.Single(stderr.TrimEnd().Split('\n'));
    }

    [Fact]
    public void AMissingGrammarFileIsAnInputError()
    {
        var (code, _, stderr) = Infer("run", "-m", Model, "-p", "x", "--json-schema-file", Path.Combine(_dir, "none.json"));
        Assert.Equal(1, code);
        Assert.Contains("none.json: file not found", stderr);
    }
}
