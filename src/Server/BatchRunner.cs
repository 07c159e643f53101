using System.Buffers;
using System.Text;
using System.Text.Json;
using Infer.Runtime.Serving;

namespace Infer.Server;

/// <summary>How far a batch job got.</summary>
/// <param name="Total">requests in the input file.</param>
/// <param name="Skipped">requests already answered in the output (a resumed job).</param>
/// <param name="Done">requests answered in this run, errors included.</param>
/// <param name="Errors">of <paramref name="Done"/>, those answered with an error line.</param>
/// <param name="GeneratedTokens">tokens generated in this run.</param>
public readonly record struct BatchProgress(int Total, int Skipped, int Done, int Errors, long GeneratedTokens);

/// <summary>
/// <c>infer batch</c>: an OpenAI batch file (one <c>{"custom_id", "method", "url", "body"}</c> per line) through the scheduler,
/// answered in the batch output format, one line per request as it finishes. Re-running skips the ids already in the output,
/// so an interrupted job resumes; a bad line becomes an error line, never a crash. Lines of the output carry the input line
/// number (<c>"line"</c>) so that even a line without a usable custom_id is answered once.
/// </summary>
public sealed class BatchRunner(Scheduler scheduler, ServedModel model, ServerOptions limits)
{
    private readonly Lock _write = new();

    public async Task<BatchProgress> RunAsync(string inputPath, string outputPath, IProgress<BatchProgress>? progress = null,
        CancellationToken cancel = default)
    {
        var lines = await File.ReadAllLinesAsync(inputPath, cancel);
        var (doneIds, doneLines) = await ReadFinishedAsync(outputPath, cancel);
        var todo = new List<(int Line, string Text)>();
        int total = 0, skipped = 0;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < lines.Length; i++)
        {
            if (string.IsNullOrWhiteSpace(lines[i])) continue;
            total++;
            string? id = TryCustomId(lines[i]);
            if (id is not null ? doneIds.Contains(id) || !seen.Add(id) : doneLines.Contains(i + 1)) skipped++;
            else todo.Add((i + 1, lines[i]));
        }

        int done = 0, errors = 0;
        long tokens = 0;
        progress?.Report(new BatchProgress(total, skipped, 0, 0, 0));
        await using var output = new FileStream(outputPath, FileMode.Append, FileAccess.Write, FileShare.Read);
        using var gate = new SemaphoreSlim(scheduler.Slots + Math.Max(1, scheduler.QueueCapacity / 2));
        var running = new List<Task>();
        foreach (var (line, text) in todo)
        {
            try
            {
                await gate.WaitAsync(cancel);
            }
            catch (OperationCanceledException)
            {
                break; // what runs finishes (or is cancelled) below
            }
            running.Add(Task.Run(async () =>
            {
                try
                {
                    var (entry, ok, generated) = await AnswerAsync(line, text, cancel);
                    if (entry is null) return; // cancelled: left for the next run
                    lock (_write)
                    {
                        output.Write(entry);
                        output.WriteByte((byte)'\n');
                        output.Flush();
                        done++;
                        if (!ok) errors++;
                        tokens += generated;
                        progress?.Report(new BatchProgress(total, skipped, done, errors, tokens));
                    }
                }
                finally
                {
                    gate.Release();
                }
            }, CancellationToken.None));
        }
        await Task.WhenAll(running);
        cancel.ThrowIfCancellationRequested();
        return new BatchProgress(total, skipped, done, errors, tokens);
    }

    /// <summary>The output line for one input line; null when the run was cancelled before it finished.</summary>
    private async Task<(byte[]? Entry, bool Ok, int Generated)> AnswerAsync(int line, string text, CancellationToken cancel)
    {
        string? customId = null;
        try
        {
            using var doc = JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = 64 });
            var f = new JsonFields(doc.RootElement.ValueKind == JsonValueKind.Object ? doc.RootElement
                : throw new BatchLineException("invalid_request", "the line is not a JSON object"));
            customId = Field(() => f.String("custom_id")) ?? throw new BatchLineException("missing_custom_id", "'custom_id' is required");
            string method = Field(() => f.String("method")) ?? "POST";
            string url = Field(() => f.String("url")) ?? throw new BatchLineException("missing_url", "'url' is required");
            if (method != "POST") throw new BatchLineException("invalid_method", $"'method' must be POST, got {method}");
            var kind = url switch
            {
                "/v1/chat/completions" => Endpoint.Chat,
                "/v1/completions" => Endpoint.Completion,
                _ => throw new BatchLineException("invalid_url", $"'url' must be /v1/chat/completions or /v1/completions, got {url}"),
            };
            if (f.Get("body") is not { ValueKind: JsonValueKind.Object } body)
                throw new BatchLineException("missing_body", "'body' must be an object");
            try
            {
                var req = kind == Endpoint.Chat ? RequestParser.Chat(body, model, limits) : RequestParser.Completion(body, model, limits);
                var (answer, result) = await GenerateAsync(kind, req, cancel);
                if (answer is null) return (null, false, 0);
                return (Entry(line, customId, 200, answer, null), true, result!.GeneratedTokens);
            }
            catch (ApiException e)
            {
                return (Entry(line, customId, e.Status, e.ToJson(), null), false, 0);
            }
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            return (null, false, 0);
        }
        catch (Exception e) when (e is JsonException or BatchLineException)
        {
            var (code, message) = e is BatchLineException b ? (b.Code, b.Message) : ("invalid_json", "the line is not valid JSON: " + e.Message);
            return (Entry(line, customId, null, null, (code, message)), false, 0);
        }
        catch (Exception e)
        {
            var fault = new ApiException(500, "internal error: " + e.Message, code: "internal_error");
            return (Entry(line, customId, 500, fault.ToJson(), null), false, 0);
        }
    }

    private static T Field<T>(Func<T> read)
    {
        try
        {
            return read();
        }
        catch (ApiException e)
        {
            throw new BatchLineException("invalid_request", e.Message);
        }
    }

    private async Task<(byte[]? Body, GenerationResult? Result)> GenerateAsync(Endpoint kind, ParsedRequest req, CancellationToken cancel)
    {
        while (true)
        {
            GenerationStream stream;
            try
            {
                stream = scheduler.Submit(req.Generation, cancel);
            }
            catch (QueueFullException)
            {
                await Task.Delay(50, cancel); // the gate keeps this rare: only when others share the scheduler
                continue;
            }
            var (text, tokens, result) = await stream.CollectAsync(cancel);
            if (result.Reason == FinishReason.Cancelled) return (null, null);
            var json = new OpenAiJson(model.Tokenizer, model.Name, kind);
            var buffer = new ArrayBufferWriter<byte>();
            using (var w = new Utf8JsonWriter(buffer)) json.Complete(w, text, tokens, result, req.Logprobs);
            return (buffer.WrittenSpan.ToArray(), result);
        }
    }

    /// <summary>
    /// One output line: {"id", "custom_id", "line", "response": {"status_code", "request_id", "body"} | null, "error": {...} | null}.
    /// </summary>
    private static byte[] Entry(int line, string? customId, int? status, byte[]? body, (string Code, string Message)? error)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            string id = Guid.NewGuid().ToString("N")[..24];
            w.WriteStartObject();
            w.WriteString("id", "batch_req_" + id);
            if (customId is null) w.WriteNull("custom_id");
            else w.WriteString("custom_id", customId);
            w.WriteNumber("line", line);
            if (status is { } s)
            {
                w.WriteStartObject("response");
                w.WriteNumber("status_code", s);
                w.WriteString("request_id", "req_" + id);
                w.WritePropertyName("body");
                w.WriteRawValue(body!, skipInputValidation: true);
                w.WriteEndObject();
            }
            else
            {
                w.WriteNull("response");
            }
            if (error is { } e)
            {
                w.WriteStartObject("error");
                w.WriteString("code", e.Code);
                w.WriteString("message", e.Message);
                w.WriteEndObject();
            }
            else
            {
                w.WriteNull("error");
            }
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static string? TryCustomId(string line)
    {
        try
        {
            using var doc = JsonDocument.Parse(line);
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("custom_id", out var id)
                && id.ValueKind == JsonValueKind.String ? id.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// The custom ids (and, for lines without one, the line numbers) already answered in <paramref name="path"/>. A last line cut
    /// off by an interruption is removed so that appending starts on a fresh line.
    /// </summary>
    private static async Task<(HashSet<string> Ids, HashSet<int> Lines)> ReadFinishedAsync(string path, CancellationToken cancel)
    {
        var ids = new HashSet<string>(StringComparer.Ordinal);
        var lines = new HashSet<int>();
        if (!File.Exists(path)) return (ids, lines);
        var bytes = await File.ReadAllBytesAsync(path, cancel);
        int end = bytes.AsSpan().LastIndexOf((byte)'\n') + 1;
        if (end < bytes.Length)
        {
            await using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
            f.SetLength(end);
        }
        foreach (var line in Encoding.UTF8.GetString(bytes, 0, end).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            try
            {
                using var doc = JsonDocument.Parse(line);
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object) continue;
                if (root.TryGetProperty("custom_id", out var id) && id.ValueKind == JsonValueKind.String) ids.Add(id.GetString()!);
                else if (root.TryGetProperty("line", out var n) && n.TryGetInt32(out int number)) lines.Add(number);
            }
            catch (JsonException)
            {
                // not ours: leave it
            }
        }
        return (ids, lines);
    }

    private sealed class BatchLineException(string code, string message) : Exception(message)
    {
        public string Code { get; } = code;
    }
}
