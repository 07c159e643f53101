namespace Infer.Runtime.Gguf;

/// <summary>What a model path names on disk, checked before it is mapped.</summary>
internal static class GgufPath
{
    /// <summary>
    /// The size of the file <paramref name="path"/> names, following symbolic links (a link's own length is the length of
    /// its target's name; Hugging Face's cache is made of links). Missing files, folders and link loops get their own message.
    /// </summary>
    public static long ResolveLength(string path)
    {
        try
        {
            FileSystemInfo info = new FileInfo(path);
            if (info.LinkTarget is not null)
                info = info.ResolveLinkTarget(returnFinalTarget: true) ?? info;
            if (Directory.Exists(info.FullName)) throw new ModelFormatException(path, "is a directory, not a GGUF file");
            if (!info.Exists) throw new ModelFormatException(path, info.FullName == Path.GetFullPath(path)
                ? "file not found" : $"file not found (a symbolic link to {info.FullName}, which does not exist)");
            return ((FileInfo)info).Length;
        }
        catch (IOException e) when (e.HResult == 40 || e.Message.Contains("symbolic links", StringComparison.OrdinalIgnoreCase))
        {
            throw new ModelFormatException(path, "too many levels of symbolic links (a loop of links?)", e);
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException or ArgumentException or NotSupportedException)
        {
            throw new ModelFormatException(path, $"cannot open: {e.Message}", e);
        }
    }
}
