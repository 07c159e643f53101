namespace Infer.Runtime;

/// <summary>
/// A model file is malformed, truncated, hostile or uses something we do not support. The message names the file and the key
/// or tensor.
/// </summary>
public class ModelFormatException : Exception
{
    public string? FilePath { get; }

    public ModelFormatException(string? filePath, string message, Exception? inner = null)
        : base(filePath is null ? message : $"{filePath}: {message}", inner)
    {
        FilePath = filePath;
    }
}

/// <summary>The model's architecture, a tensor type or a feature is valid GGUF but not supported by this runtime.</summary>
public sealed class UnsupportedModelException : ModelFormatException
{
    public UnsupportedModelException(string? filePath, string message) : base(filePath, message) { }
}
