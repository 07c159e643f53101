using System.Text.Json;

namespace Infer.Server;

/// <summary>A request the server refuses, answered with OpenAI's error object: <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
public sealed class ApiException(int status, string message, string? param = null, string? code = null, string? type = null) : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    /// <summary>OpenAI's error type for the status: invalid_request_error, authentication_error, ...</summary>
    public string Type { get; } = type ?? status switch
    {
        401 => "authentication_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        503 => "unavailable_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };

    public static ApiException BadRequest(string message, string? param, string? code = null) => new(400, message, param, code);

    public void Write(Utf8JsonWriter w) => WriteError(w, Message, Type, Param, Code);

    public static void WriteError(Utf8JsonWriter w, string message, string type, string? param, string? code)
    {
        w.WriteStartObject();
        w.WriteStartObject("error");
        w.WriteString("message", message);
        w.WriteString("type", type);
        if (param is null) w.WriteNull("param");
        else w.WriteString("param", param);
        if (code is null) w.WriteNull("code");
        else w.WriteString("code", code);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    public byte[] ToJson()
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer)) Write(w);
        return buffer.WrittenSpan.ToArray();
    }
}
