using System.Buffers;
using System.Text.Json;
using Infer.Runtime.Model;
using Infer.Runtime.Serving;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Infer.Server;

/// <summary>The OpenAI endpoints: validate, submit to the scheduler, answer whole or as server-sent events.</summary>
internal sealed class Endpoints(ServerState state, ServerOptions options)
{
    private static readonly byte[] DataPrefix = "data: "u8.ToArray();
    private static readonly byte[] EventEnd = "\n\n"u8.ToArray();
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    public static RequestStats Stats(HttpContext ctx) => (RequestStats)(ctx.Items[typeof(RequestStats)] ??= new RequestStats());

    public async Task Generate(HttpContext ctx, Endpoint kind)
    {
        var (model, scheduler) = state.Require();
        using var doc = await ReadJsonAsync(ctx, options.MaxBodyBytes);
        var req = kind == Endpoint.Chat
            ? RequestParser.Chat(doc.RootElement, model, options)
            : RequestParser.Completion(doc.RootElement, model, options);
        var stats = Stats(ctx);
        stats.PromptTokens = req.Generation.Prompt.Length;
        var stream = Submit(ctx, scheduler, req.Generation);
        var json = new OpenAiJson(model.Tokenizer, model.Name, kind);
        stats.Id = json.Id;
        var result = req.Stream ? await StreamAsync(ctx, stream, json, req) : await WholeAsync(ctx, stream, json, req);
        if (result is null) return;
        stats.CachedTokens = result.CachedTokens;
        stats.GeneratedTokens = result.GeneratedTokens;
        stats.TimeToFirstToken = result.TimeToFirstToken;
        stats.Finish = result.Reason == FinishReason.Cancelled ? "cancelled" : result.OpenAiFinishReason;
    }

    private GenerationStream Submit(HttpContext ctx, Scheduler scheduler, GenerationRequest request)
    {
        try
        {
            return scheduler.Submit(request, ctx.RequestAborted);
        }
        catch (QueueFullException e)
        {
            ctx.Response.Headers.RetryAfter = options.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            throw new ApiException(429, e.Message, code: "rate_limit_exceeded");
        }
        catch (SchedulerStoppedException e)
        {
            throw new ApiException(503, e.Message, code: "shutting_down");
        }
        catch (ContextFullException e)
        {
            throw ApiException.BadRequest(e.Message, "messages", "context_length_exceeded");
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(e.Message, null);
        }
    }

    private static async Task<GenerationResult?> WholeAsync(HttpContext ctx, GenerationStream stream, OpenAiJson json, ParsedRequest req)
    {
        var (text, tokens, result) = await stream.CollectAsync(ctx.RequestAborted);
        if (result.Reason == FinishReason.Cancelled)
            throw new ApiException(503, "the request was cancelled: the server is shutting down", code: "shutting_down");
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer)) json.Complete(w, text, tokens, result, req.Logprobs);
        ctx.Response.ContentType = "application/json";
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted);
        return result;
    }

    /// <summary>Server-sent events: the role, one chunk per token that carries text or log probabilities, the finish, usage, [DONE].</summary>
    private static async Task<GenerationResult?> StreamAsync(HttpContext ctx, GenerationStream stream, OpenAiJson json, ParsedRequest req)
    {
        var res = ctx.Response;
        res.ContentType = "text/event-stream";
        res.Headers.CacheControl = "no-cache";
        res.Headers["X-Accel-Buffering"] = "no";
        ctx.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var cancel = ctx.RequestAborted;
        var buffer = new ArrayBufferWriter<byte>();
        using var w = new Utf8JsonWriter(buffer);

        async Task Send()
        {
            w.Flush();
            await res.Body.WriteAsync(DataPrefix, cancel);
            await res.Body.WriteAsync(buffer.WrittenMemory, cancel);
            await res.Body.WriteAsync(EventEnd, cancel);
            await res.Body.FlushAsync(cancel);
            buffer.ResetWrittenCount();
            w.Reset();
        }

        if (req.Kind == Endpoint.Chat)
        {
            json.Chunk(w, "", null, -1, null, role: true);
            await Send();
        }
        GenerationResult result;
        try
        {
            await foreach (var t in stream.Tokens.ReadAllAsync(cancel))
            {
                if (t.Text.Length == 0 && (t.Token < 0 || req.Logprobs < 0)) continue;
                json.Chunk(w, t.Text, t.Token >= 0 ? t : null, req.Logprobs, null);
                await Send();
            }
            result = await stream.Completion;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Headers are gone: the fault travels as an error event, then the stream ends.
            w.Reset();
            ApiException.WriteError(w, "internal error while generating: " + e.Message, "server_error", null, null);
            await Send();
            Stats(ctx).Finish = "error";
            throw new StreamFaultException(e);
        }
        if (result.Reason == FinishReason.Cancelled)
        {
            // Cancelled while the client is still there: the grace period of a shutdown ran out.
            ApiException.WriteError(w, "the request was cancelled: the server is shutting down", "unavailable_error", null, "shutting_down");
            await Send();
            return result;
        }
        json.Chunk(w, req.Kind == Endpoint.Chat ? null : "", null, -1, result.OpenAiFinishReason);
        await Send();
        if (req.IncludeUsage)
        {
            json.UsageChunk(w, result);
            await Send();
        }
        await res.Body.WriteAsync(Done, cancel);
        return result;
    }

    public async Task Models(HttpContext ctx)
    {
        var (model, scheduler) = state.Require();
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            w.WriteStartObject();
            w.WriteString("id", model.Name);
            w.WriteString("object", "model");
            w.WriteNumber("created", DateTimeOffset.UtcNow.ToUnixTimeSeconds());
            w.WriteString("owned_by", "infer");
            w.WriteStartObject("meta");
            w.WriteNumber("n_vocab", model.Model.VocabSize);
            w.WriteNumber("n_ctx_train", model.Model.Config.ContextLength);
            w.WriteNumber("n_ctx_slot", scheduler.ContextLength);
            w.WriteNumber("slots", scheduler.Slots);
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
        }
        ctx.Response.ContentType = "application/json";
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted);
    }

    public async Task Health(HttpContext ctx)
    {
        if (!state.Ready)
        {
            string message = state.Stopping ? "shutting down" : state.LoadError is { } err ? "the model failed to load: " + err : "Loading model";
            throw new ApiException(503, message, code: state.Stopping ? "shutting_down" : "loading");
        }
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync("{\"status\":\"ok\"}", ctx.RequestAborted);
    }

    /// <summary>Reads at most <paramref name="cap"/> bytes of body and parses them; 413 beyond, 400 for anything that is not JSON.</summary>
    public static async Task<JsonDocument> ReadJsonAsync(HttpContext ctx, long cap)
    {
        if (ctx.Request.ContentLength is long declared && declared > cap) throw TooLarge(declared, cap);
        using var ms = new MemoryStream();
        var chunk = ArrayPool<byte>.Shared.Rent(16384);
        try
        {
            int n;
            while ((n = await ctx.Request.Body.ReadAsync(chunk, ctx.RequestAborted)) > 0)
            {
                ms.Write(chunk, 0, n);
                if (ms.Length > cap) throw TooLarge(null, cap);
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw TooLarge(null, cap);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
        if (ms.Length == 0) throw ApiException.BadRequest("the request body is empty; expected a JSON object", null, "invalid_json");
        try
        {
            return JsonDocument.Parse(ms.GetBuffer().AsMemory(0, (int)ms.Length), new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest("the request body is not valid JSON: " + e.Message, null, "invalid_json");
        }
    }

    private static ApiException TooLarge(long? size, long cap) =>
        new(413, $"the request body{(size is null ? "" : $" ({size} bytes)")} is larger than the limit of {cap} bytes", code: "body_too_large");
}

/// <summary>A generation failed after the stream's headers were sent (the client got an error event).</summary>
internal sealed class StreamFaultException(Exception inner) : Exception("generation failed mid-stream", inner);
