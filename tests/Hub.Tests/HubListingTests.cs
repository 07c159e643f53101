using System.Text;

namespace Infer.Hub.Tests;

/// <summary>
/// The tree API's page format, as the Hub documents it (huggingface.js ListFileEntry: type, oid, size, path, lfs {oid, size,
/// pointerSize}).
/// </summary>
public sealed class HubListingTests
{
    private const string Sha = "6b9b12b1b31e8f1a2e45d7f4e96895b1ca7ce0246b01f5457597b12d16ed5b43";

    private static List<HubFile> Parse(string json)
    {
        var files = new List<HubFile>();
        HubHttp.ParseListingPage(Encoding.UTF8.GetBytes(json), files, "o/r");
        return files;
    }

    [Fact]
    public void Page_KeepsFiles_SkipsFolders_TakesSha256FromLfs()
    {
        var files = Parse($$"""
            [
              {"type":"directory","oid":"1111111111111111111111111111111111111111","size":0,"path":"Q8_0"},
              {"type":"file","oid":"a6344aac8c09253b3b630fb776ae94478aa0275b","size":1519,"path":".gitattributes"},
              {"type":"file","oid":"2222222222222222222222222222222222222222","size":639446688,
               "lfs":{"oid":"{{Sha.ToUpperInvariant()}}","size":639446688,"pointerSize":135},
               "xetHash":"abc","path":"Q8_0/M-Q8_0.gguf"}
            ]
            """);

        Assert.Equal(2, files.Count);
        Assert.Equal(new HubFile(".gitattributes", 1519, null, "a6344aac8c09253b3b630fb776ae94478aa0275b"), files[0]);
        Assert.Equal(new HubFile("Q8_0/M-Q8_0.gguf", 639446688, Sha, "2222222222222222222222222222222222222222"), files[1]);
        Assert.Equal("M-Q8_0.gguf", files[1].Name);
    }

    [Theory]
    [InlineData("../evil.gguf")]
    [InlineData("/etc/evil.gguf")]
    [InlineData("a/../../evil.gguf")]
    [InlineData("a//b.gguf")]
    [InlineData("a\\\\b.gguf")]
    [InlineData("C:evil.gguf")]
    public void Page_DropsUnsafePaths(string path)
    {
        var files = Parse($$"""[{"type":"file","size":1,"path":"{{path}}"},{"type":"file","size":2,"path":"ok.gguf"}]""");

        Assert.Equal(["ok.gguf"], files.Select(f => f.Path));
    }

    [Theory]
    [InlineData("{}", "not a JSON array")]
    [InlineData("[", "not valid JSON")]
    [InlineData("""[{"type":"file","path":"a.gguf","size":-1}]""", "no valid size")]
    [InlineData("""[{"type":"file","path":"a.gguf"}]""", "no valid size")]
    [InlineData("""[{"type":"file","path":"a.gguf","size":1,"lfs":{"oid":"xyz","size":1}}]""", "without a SHA-256")]
    public void Page_Malformed_IsAProtocolError(string json, string reason)
    {
        var e = Assert.Throws<HubException>(() => Parse(json));

        Assert.Equal(HubErrorKind.Protocol, e.Kind);
        Assert.Contains(reason, e.Message);
    }

    [Fact]
    public void Page_TooDeep_IsRejected() =>
        Assert.Equal(HubErrorKind.Protocol, Assert.Throws<HubException>(() => Parse(new string('[', 10_000) + new string(']', 10_000))).Kind);

    [Fact]
    public void NextLink_IsReadFromTheLinkHeader()
    {
        using var response = new HttpResponseMessage();
        response.Headers.TryAddWithoutValidation("Link", "<https://hf.example/api/models/o/r/tree/main?recursive=true&cursor=abc>; rel=\"next\"");
        var current = new Uri("https://hf.example/api/models/o/r/tree/main?recursive=true");

        Assert.Equal(new Uri("https://hf.example/api/models/o/r/tree/main?recursive=true&cursor=abc"), HubHttp.NextLink(response, current));

        using var last = new HttpResponseMessage();
        last.Headers.TryAddWithoutValidation("Link", "<https://hf.example/first>; rel=\"prev\"");
        Assert.Null(HubHttp.NextLink(last, current));
    }
}
