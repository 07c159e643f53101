using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using Infer.Runtime.Serving;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using OpenTelemetry.Metrics;

namespace Infer.Server;

/// <summary>
/// The OpenAI-compatible HTTP server (Kestrel, minimal APIs) over the continuous-batching <see cref="Scheduler"/>. It listens at
/// once and loads the model in the background: <c>/health</c> answers 503 until the model is loaded and warmed up. On a shutdown
/// signal it refuses new requests, lets running ones finish within the grace period, then cancels the rest.
/// </summary>
public sealed class InferServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ServerState _state = new();
    private readonly ServerOptions _options;
    private readonly Func<CancellationToken, ServedModel> _load;
    private readonly bool _ownsModel;
    private readonly Meter _meter;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _loading = Task.CompletedTask;
    private Task _drain = Task.CompletedTask;

    private InferServer(ServerOptions options, Func<CancellationToken, ServedModel> load, bool ownsModel)
    {
        _options = options;
        _load = load;
        _ownsModel = ownsModel;
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        options.Logging?.Invoke(builder.Logging);
        builder.Services.Configure<ConsoleLifetimeOptions>(o => o.SuppressStatusMessages = true);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = options.ShutdownGrace + TimeSpan.FromSeconds(10));
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes + 1;
            if (IPAddress.TryParse(options.Host, out var ip)) k.Listen(ip, options.Port);
            else if (options.Host == "localhost") k.ListenLocalhost(options.Port);
            else k.ListenAnyIP(options.Port);
        });
        builder.Services.AddOpenTelemetry().WithMetrics(m => m.AddMeter(ServerOptions.MeterName).AddPrometheusExporter());
        _app = builder.Build();
        _log = _app.Services.GetService<ILoggerFactory>()?.CreateLogger("Infer.Server") ?? NullLogger.Instance;
        _meter = _app.Services.GetRequiredService<IMeterFactory>().Create(ServerOptions.MeterName);
        Map(_app, new Endpoints(_state, options), new ServerMetrics(_meter));
    }

    /// <summary>A server that loads its model with <paramref name="load"/> after it starts listening; it owns what it loads.</summary>
    public static InferServer Create(ServerOptions options, Func<CancellationToken, ServedModel> load) => new(options, load, ownsModel: true);

    /// <summary>A server over a model the caller owns (and disposes after the server).</summary>
    public static InferServer Create(ServerOptions options, ServedModel model) => new(options, _ => model, ownsModel: false);

    /// <summary>The address it listens on (the real port when <see cref="ServerOptions.Port"/> is 0).</summary>
    public Uri BaseAddress { get; private set; } = new("http://127.0.0.1/");

    /// <summary>Completes when the model is loaded and warmed up; faults when loading failed.</summary>
    public Task Ready => _ready.Task;

    /// <summary>The scheduler, once ready.</summary>
    public Scheduler? Scheduler => _state.Scheduler;

    /// <summary>Starts listening and begins loading the model.</summary>
    public async Task StartAsync(CancellationToken cancel = default)
    {
        // ApplicationStopping fires before Kestrel stops (hosted services stop after it, too late): the drain starts first, and
        // Kestrel's wait for running requests then ends when they finish or the grace period cancels them.
        _app.Lifetime.ApplicationStopping.Register(() => _drain = DrainAsync());
        await _app.StartAsync(cancel);
        var address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        address = address.Replace("[::]", "localhost", StringComparison.Ordinal).Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal);
        BaseAddress = new Uri(address + "/");
        _loading = Task.Run(LoadAsync, CancellationToken.None);
    }

    /// <summary>Runs until Ctrl+C, SIGTERM or <paramref name="cancel"/>, then shuts down gracefully.</summary>
    public async Task RunUntilShutdownAsync(CancellationToken cancel = default)
    {
        await _app.WaitForShutdownAsync(cancel);
    }

    /// <summary>Graceful stop: new requests get 503, running ones finish within the grace period, then the rest are cancelled.</summary>
    public Task StopAsync() => _app.StopAsync();

    private async Task LoadAsync()
    {
        try
        {
            long t0 = Stopwatch.GetTimestamp();
            var model = _load(_stop.Token);
            var scheduler = new Scheduler(model.Model, model.Tokenizer,
                new SchedulerOptions { QueueCapacity = _options.QueueCapacity, StepTokens = _options.StepTokens }, _meter);
            try
            {
                await scheduler.WarmUpAsync(_stop.Token);
            }
            catch
            {
                scheduler.Dispose();
                if (_ownsModel) model.Dispose();
                throw;
            }
            _state.SetReady(model, scheduler);
            _log.LogInformation("model {Name} ready in {Seconds:F1} s: {Slots} slots of {Context} tokens, listening on {Address}",
                model.Name, Stopwatch.GetElapsedTime(t0).TotalSeconds, scheduler.Slots, scheduler.ContextLength, BaseAddress);
            _ready.TrySetResult();
        }
        catch (Exception e)
        {
            _state.LoadError = e.Message;
            _log.LogError(e, "loading the model failed: {Message}", e.Message);
            _ready.TrySetException(e);
        }
    }

    private void Map(WebApplication app, Endpoints endpoints, ServerMetrics metrics)
    {
        app.Use(async (ctx, next) => await Observe(ctx, next, metrics));
        app.Use(async (ctx, next) =>
        {
            if (_options.ApiKey is { } key && ctx.Request.Path.StartsWithSegments("/v1") && !Authorized(ctx.Request, key))
                throw new ApiException(401, "invalid or missing API key: send 'Authorization: Bearer KEY'", code: "invalid_api_key");
            await next(ctx);
        });
        app.MapPost("/v1/chat/completions", ctx => endpoints.Generate(ctx, Endpoint.Chat));
        app.MapPost("/v1/completions", ctx => endpoints.Generate(ctx, Endpoint.Completion));
        app.MapGet("/v1/models", endpoints.Models);
        app.MapGet("/health", endpoints.Health);
        app.MapPrometheusScrapingEndpoint("/metrics");
        app.MapFallback(ctx => throw new ApiException(404, $"no endpoint {ctx.Request.Method} {ctx.Request.Path}", code: "not_found"));
    }

    private static bool Authorized(HttpRequest request, string key)
    {
        string? header = request.Headers.Authorization;
        if (header is null || !header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return false;
        return CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header[7..].Trim()), Encoding.UTF8.GetBytes(key));
    }

    /// <summary>Errors as OpenAI error objects, one log line and the request metrics for every request.</summary>
    private async Task Observe(HttpContext ctx, RequestDelegate next, ServerMetrics metrics)
    {
        long t0 = Stopwatch.GetTimestamp();
        var stats = Endpoints.Stats(ctx);
        int status;
        try
        {
            await next(ctx);
            status = ctx.Response.StatusCode;
        }
        catch (ApiException e)
        {
            status = e.Status;
            if (!ctx.Response.HasStarted)
            {
                ctx.Response.StatusCode = e.Status;
                ctx.Response.ContentType = "application/json";
                await ctx.Response.Body.WriteAsync(e.ToJson(), CancellationToken.None);
            }
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            status = 499; // the client went away (nginx's code)
            stats.Finish ??= "disconnected";
        }
        catch (Exception e)
        {
            status = 500;
            var fault = e is StreamFaultException s ? s.InnerException! : e;
            _log.LogError(fault, "{Id} {Method} {Path}: internal error: {Message}", stats.Id, ctx.Request.Method, ctx.Request.Path, fault.Message);
            if (!ctx.Response.HasStarted)
            {
                ctx.Response.StatusCode = 500;
                ctx.Response.ContentType = "application/json";
                await ctx.Response.Body.WriteAsync(new ApiException(500, "internal error: " + fault.Message, code: "internal_error").ToJson());
            }
        }
        double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        string path = ctx.Request.Path.Value ?? "";
        if (path != "/metrics" && path != "/health")
        {
            _log.LogInformation(
                "{Id} {Method} {Path} {Status} prompt={Prompt} cached={Cached} generated={Generated} ttft={Ttft:F3}s total={Total:F3}s {Finish}",
                stats.Id ?? "-", ctx.Request.Method, path, status, stats.PromptTokens, stats.CachedTokens, stats.GeneratedTokens,
                stats.TimeToFirstToken, seconds, stats.Finish ?? "-");
        }
        metrics.Record(EndpointTag(path), status, seconds);
    }

    private static string EndpointTag(string path) => path switch
    {
        "/v1/chat/completions" or "/v1/completions" or "/v1/models" or "/health" or "/metrics" => path,
        _ => "other",
    };

    /// <summary>New requests get 503; running ones finish within the grace period, then the rest are cancelled.</summary>
    private async Task DrainAsync()
    {
        _state.Stopping = true;
        await _stop.CancelAsync();
        if (_state.Scheduler is { } s) await s.ShutdownAsync(_options.ShutdownGrace);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _app.StopAsync();
        }
        catch (ObjectDisposedException)
        {
        }
        await _loading;
        await _drain;
        await _app.DisposeAsync();
        _state.Scheduler?.Dispose();
        if (_ownsModel) _state.Model?.Dispose();
        _meter.Dispose();
        _stop.Dispose();
    }
}
