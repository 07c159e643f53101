using System.Diagnostics.CodeAnalysis;

namespace Infer.Hub;

/// <summary>A Hugging Face model reference <c>owner/repo[:quant]</c>, for example <c>Qwen/Qwen3-0.6B-GGUF:Q8_0</c>.</summary>
public sealed record ModelReference
{
    private const int MaxNameLength = 96;
    private const int MaxQuantLength = 64;

    public string Owner { get; }
    public string Repo { get; }

    /// <summary>The requested quantization (matched case-insensitively against file names), or null for the default.</summary>
    public string? Quant { get; }

    /// <summary><c>owner/repo</c>.</summary>
    public string RepoId => $"{Owner}/{Repo}";

    public ModelReference(string owner, string repo, string? quant = null)
    {
        string? error = ValidateName(owner, "owner") ?? ValidateName(repo, "repository name") ?? (quant is null ? null : ValidateQuant(quant));
        if (error is not null)
        {
            throw new HubException(HubErrorKind.InvalidReference,
                $"invalid model reference '{owner}/{repo}{(quant is null ? "" : ":" + quant)}': {error}");
        }
        Owner = owner;
        Repo = repo;
        Quant = quant;
    }

    /// <summary>Parses <c>owner/repo[:quant]</c>; a leading <c>https://huggingface.co/</c> or <c>hf.co/</c> is accepted.</summary>
    /// <exception cref="HubException">Kind <see cref="HubErrorKind.InvalidReference"/> with the reason.</exception>
    public static ModelReference Parse(string text)
    {
        if (TryParse(text, out var reference, out var error)) return reference;
        throw new HubException(HubErrorKind.InvalidReference,
            $"invalid model reference '{text}': {error} (expected OWNER/REPO or OWNER/REPO:QUANT, for example Qwen/Qwen3-0.6B-GGUF:Q8_0)");
    }

    public static bool TryParse(string? text, [NotNullWhen(true)] out ModelReference? reference, [NotNullWhen(false)] out string? error)
    {
        reference = null;
        if (string.IsNullOrWhiteSpace(text)) { error = "it is empty"; return false; }
        string s = StripHostPrefix(text.Trim());

        string? quant = null;
        int colon = s.IndexOf(':');
        if (colon >= 0)
        {
            quant = s[(colon + 1)..];
            s = s[..colon];
            error = ValidateQuant(quant);
            if (error is not null) return false;
        }

        int slash = s.IndexOf('/');
        if (slash < 0) { error = "it has no '/' between owner and repository"; return false; }
        string owner = s[..slash], repo = s[(slash + 1)..];
        if (repo.Contains('/')) { error = "it has more than one '/'"; return false; }
        error = ValidateName(owner, "owner") ?? ValidateName(repo, "repository name");
        if (error is not null) return false;

        reference = new ModelReference(owner, repo, quant);
        return true;
    }

    public override string ToString() => Quant is null ? RepoId : $"{RepoId}:{Quant}";

    private static string StripHostPrefix(string s)
    {
        ReadOnlySpan<string> prefixes = ["https://huggingface.co/", "http://huggingface.co/", "huggingface.co/", "https://hf.co/", "hf.co/"];
        foreach (var prefix in prefixes)
        {
            if (s.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) return s[prefix.Length..];
        }
        return s;
    }

    /// <summary>
    /// The Hub's rule for owner and repository names: 1..96 of [A-Za-z0-9_.-], starting and ending with a letter, digit or
    /// '_', without "--" or "..".
    /// </summary>
    private static string? ValidateName(string name, string what)
    {
        if (name.Length == 0) return $"the {what} is empty";
        if (name.Length > MaxNameLength) return $"the {what} is longer than {MaxNameLength} characters";
        foreach (char c in name)
        {
            if (!IsNameChar(c)) return $"the {what} '{name}' contains '{c}' (allowed: letters, digits, '_', '-', '.')";
        }
        if (!IsWordChar(name[0]) || !IsWordChar(name[^1])) return $"the {what} '{name}' must start and end with a letter, digit or '_'";
        if (name.Contains("--", StringComparison.Ordinal) || name.Contains("..", StringComparison.Ordinal))
            return $"the {what} '{name}' contains '--' or '..'";
        if (name.EndsWith(".git", StringComparison.OrdinalIgnoreCase)) return $"the {what} '{name}' ends with '.git'";
        return null;
    }

    private static string? ValidateQuant(string quant)
    {
        if (quant.Length == 0) return "the quantization after ':' is empty";
        if (quant.Length > MaxQuantLength) return $"the quantization is longer than {MaxQuantLength} characters";
        foreach (char c in quant)
        {
            if (!IsNameChar(c)) return $"the quantization '{quant}' contains '{c}'";
        }
        return null;
    }

    private static bool IsWordChar(char c) => char.IsAsciiLetterOrDigit(c) || c == '_';
    private static bool IsNameChar(char c) => IsWordChar(c) || c == '-' || c == '.';
}
