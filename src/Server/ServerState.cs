using Infer.Runtime.Serving;

namespace Infer.Server;

/// <summary>The model and scheduler once loaded and warmed up; until then every model call answers 503.</summary>
internal sealed class ServerState
{
    private volatile ServedModel? _model;
    private volatile Scheduler? _scheduler;

    public string? LoadError { get; set; }
    public bool Ready => _scheduler is not null && !Stopping;
    public bool Stopping { get; set; }
    public Scheduler? Scheduler => _scheduler;
    public ServedModel? Model => _model;

    public void SetReady(ServedModel model, Scheduler scheduler)
    {
        _model = model;
        _scheduler = scheduler;
    }

    public (ServedModel Model, Scheduler Scheduler) Require()
    {
        if (Stopping) throw new ApiException(503, "the server is shutting down", code: "shutting_down");
        if (LoadError is not null) throw new ApiException(503, $"the model failed to load: {LoadError}", code: "load_failed");
        if (_scheduler is not { } s || _model is not { } m) throw new ApiException(503, "Loading model", code: "loading");
        return (m, s);
    }
}
