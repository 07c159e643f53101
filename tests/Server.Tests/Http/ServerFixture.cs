using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Infer.Server.Tests.Serving;
using Infer.Templates;

namespace Infer.Server.Tests.Http;

/// <summary>A real server on a loopback port (port 0) over a fixture model, with an HttpClient pointed at it.</summary>
public sealed class TestServer : IAsyncDisposable
{
    private TestServer(TestModel model, InferServer server)
    {
        Model = model;
        Server = server;
        // No draining of an abandoned response: disposing it closes the connection, as a client that goes away does.
        Http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 })
        {
            BaseAddress = server.BaseAddress,
            Timeout = TimeSpan.FromSeconds(60),
        };
    }

    public TestModel Model { get; }
    public InferServer Server { get; }
    public HttpClient Http { get; }
    public Uri BaseAddress => Server.BaseAddress;

    public static async Task<TestServer> StartAsync(string model = "llama3", string type = "bf16", int slots = 4, int context = 256,
        Func<ServerOptions, ServerOptions>? configure = null)
    {
        var m = new TestModel(model, type, slots, context);
        string? template = m.File.TryGetString("tokenizer.chat_template");
        var served = new ServedModel(m.Model, m.Tokenizer, template is null ? null : ChatTemplate.Parse(template), "test-model");
        var options = new ServerOptions { Port = 0 };
        var server = InferServer.Create(configure?.Invoke(options) ?? options, served);
        await server.StartAsync();
        await server.Ready.WaitAsync(TimeSpan.FromSeconds(60));
        return new TestServer(m, server);
    }

    public async Task<(int Status, JsonDocument Body, HttpResponseMessage Response)> PostAsync(string path, string json, string? key = null)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        if (key is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var res = await Http.SendAsync(req);
        string text = await res.Content.ReadAsStringAsync();
        return ((int)res.StatusCode, JsonDocument.Parse(text), res);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        Model.Dispose();
    }
}
