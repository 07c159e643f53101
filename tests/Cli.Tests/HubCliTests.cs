using System.Diagnostics;
using System.Text;
using Infer.Hub.Tests;
using Infer.Tests;

namespace Infer.Cli.Tests;

/// <summary><c>-hf</c> model references end to end: the infer process against a fake Hub on 127.0.0.1 (HF_ENDPOINT).</summary>
public class HubCliTests : IAsyncLifetime
{
    private readonly FakeHub _hub = new();
    private readonly string _cache = Directory.CreateTempSubdirectory("infer-hf-cache-").FullName;

    public ValueTask InitializeAsync()
    {
        var repo = _hub.AddRepo("test/tiny");
        repo.Files["tiny-Q8_0.gguf"] = new FakeFile(File.ReadAllBytes(Fixtures.Model("qwen3", "bf16")));
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await _hub.DisposeAsync();
        Directory.Delete(_cache, recursive: true);
    }

    private (int Code, string Out, string Err) Infer(string stdin, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8, StandardErrorEncoding = Encoding.UTF8,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "infer.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["HF_ENDPOINT"] = _hub.Endpoint;
        psi.Environment["INFER_CACHE"] = _cache;
        psi.Environment.Remove("HF_TOKEN");
        psi.Environment.Remove("HF_HUB_OFFLINE");
        using var p = Process.Start(psi)!;
        p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(120_000));
        return (p.ExitCode, output, err.Result);
    }

    [Fact]
    public void ChatByHfReferenceDownloadsThenRunsFromTheCache()
    {
        var (code, stdout, stderr) = Infer("Hello!\n", "chat", "-hf", "test/tiny:Q8_0", "--temp", "0", "-n", "4", "-t", "2");
        Assert.True(code == 0, stderr);
        Assert.Contains("tiny-Q8_0.gguf", stderr); // the download progress
        Assert.NotEqual("", stdout.Trim());
        int requests = _hub.RequestCount;

        var (code2, stdout2, stderr2) = Infer("Hello!\n", "chat", "-hf", "test/tiny:Q8_0", "--temp", "0", "-n", "4", "-t", "2", "--offline");
        Assert.True(code2 == 0, stderr2);
        Assert.Equal(stdout, stdout2);
        Assert.Equal(requests, _hub.RequestCount); // the second run touched no network

        var (code3, list, _) = Infer("", "models");
        Assert.Equal(0, code3);
        Assert.Contains("test/tiny", list);
        Assert.Contains("tiny-Q8_0.gguf", list);

        var (code4, removed, _) = Infer("", "models", "--rm", "test/tiny:Q8_0");
        Assert.Equal(0, code4);
        Assert.Contains("removed", removed);
        var (code5, _, err5) = Infer("", "info", "-hf", "test/tiny:Q8_0", "--offline");
        Assert.Equal(1, code5);
        Assert.Single(err5.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void UnknownQuantizationListsWhatTheRepositoryOffers()
    {
        var (code, _, stderr) = Infer("", "info", "-hf", "test/tiny:Q5_K_M");
        Assert.Equal(1, code);
        Assert.Contains("Q8_0", stderr);
    }
}
