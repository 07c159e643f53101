using System.Text.RegularExpressions;

namespace Infer.Hub;

/// <summary>
/// Picks the GGUF file(s) a reference means from a repository listing: the exact file when one is named, else the model whose
/// path contains the quantization (case-insensitive), else the defaults Q4_K_M, Q4_0, Q8_0 in that order (llama.cpp's -hf order),
/// else the only model of the repository. A model split into <c>-00001-of-0000N.gguf</c> parts yields every part, first part first.
/// Projector files (<c>mmproj*</c>) are never picked by quantization.
/// </summary>
internal static partial class GgufSelector
{
    public static readonly string[] DefaultQuants = ["Q4_K_M", "Q4_0", "Q8_0"];

    /// <summary>One model: a single file or all parts of a split file.</summary>
    private sealed record Model(string Key, List<HubFile> Parts, int ExpectedParts);

    [GeneratedRegex(@"^(?<stem>.+)-(?<index>\d{5})-of-(?<count>\d{5})\.gguf$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex SplitPattern();

    [GeneratedRegex(@"^(?:I?Q\d+(?:_[A-Z0-9]+)*|TQ\d_\d|BF16|F16|F32|F64|MXFP4(?:_MOE)?)$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex QuantToken();

    /// <summary>The files to download for <paramref name="quant"/> or <paramref name="hfFile"/>, first part first.</summary>
    /// <exception cref="HubException">NotFound, NoMatchingQuant or Ambiguous, with the choices in the message.</exception>
    public static IReadOnlyList<HubFile> Select(IReadOnlyList<HubFile> files, string repoId, string revision, string? quant, string? hfFile)
    {
        if (hfFile is not null) return SelectFile(files, repoId, revision, hfFile);

        var models = GroupModels(files.Where(f => IsGguf(f) && !IsProjector(f)));
        if (models.Count == 0)
            throw new HubException(HubErrorKind.NotFound, $"{repoId} (revision {revision}) has no GGUF model files");

        if (quant is not null)
        {
            var match = Match(models, quant, repoId);
            if (match is null)
                throw new HubException(HubErrorKind.NoMatchingQuant,
                    $"{repoId} (revision {revision}) has no GGUF file matching '{quant}'; it offers: {string.Join(", ", OfferedQuants(models))}");
            return Complete(match, repoId);
        }

        foreach (var q in DefaultQuants)
        {
            var match = Match(models, q, repoId);
            if (match is not null) return Complete(match, repoId);
        }
        if (models.Count == 1) return Complete(models[0], repoId);
        throw new HubException(HubErrorKind.NoMatchingQuant,
            $"{repoId} (revision {revision}) has no {string.Join(", ", DefaultQuants)} file to pick by default; "
            + $"it offers: {string.Join(", ", OfferedQuants(models))}; choose one with {repoId}:QUANT");
    }

    /// <summary>The quantization label in a file name ("Q4_K_M", "UD-Q4_K_XL", "BF16"), or the name without ".gguf" when it has none.</summary>
    public static string QuantLabel(string path)
    {
        string name = path[(path.LastIndexOf('/') + 1)..];
        var split = SplitPattern().Match(name);
        string stem = split.Success ? split.Groups["stem"].Value : (name.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? name[..^5] : name);
        var tokens = stem.Split('-', '.');
        for (int i = tokens.Length - 1; i >= 0; i--)
        {
            if (!QuantToken().IsMatch(tokens[i])) continue;
            string label = tokens[i].ToUpperInvariant();
            return i > 0 && tokens[i - 1].Equals("UD", StringComparison.OrdinalIgnoreCase) ? "UD-" + label : label;
        }
        return stem;
    }

    /// <summary>For a split part, the other parts' common key and the part count; for any other file, its own path and 1.</summary>
    public static (string Key, int Index, int Count) SplitInfo(string path)
    {
        var m = SplitPattern().Match(path);
        if (!m.Success) return (path, 1, 1);
        return (m.Groups["stem"].Value, int.Parse(m.Groups["index"].ValueSpan), int.Parse(m.Groups["count"].ValueSpan));
    }

    private static IReadOnlyList<HubFile> SelectFile(IReadOnlyList<HubFile> files, string repoId, string revision, string hfFile)
    {
        var exact = files.Where(f => f.Path == hfFile).ToList();
        if (exact.Count == 0) exact = files.Where(f => f.Name == hfFile).ToList();
        if (exact.Count == 0)
        {
            var ggufs = files.Where(IsGguf).Select(f => f.Path).Take(20).ToList();
            throw new HubException(HubErrorKind.NotFound,
                $"{repoId} (revision {revision}) has no file '{hfFile}'; "
                + $"its GGUF files are: {(ggufs.Count == 0 ? "(none)" : string.Join(", ", ggufs))}");
        }
        if (exact.Count > 1)
            throw new HubException(HubErrorKind.Ambiguous,
                $"{repoId} (revision {revision}) has several files named '{hfFile}': "
                + $"{string.Join(", ", exact.Select(f => f.Path))}; give the full path");

        var file = exact[0];
        var (key, _, count) = SplitInfo(file.Path);
        if (count == 1) return [file];
        var model = GroupModels(files.Where(f => IsGguf(f) && SplitInfo(f.Path).Key == key)).Single(m => m.Key == key);
        return Complete(model, repoId);
    }

    /// <summary>The model whose path contains <paramref name="quant"/>; when several do, the ones where it stands as a whole token.</summary>
    private static Model? Match(List<Model> models, string quant, string repoId)
    {
        var matches = models.Where(m => m.Key.Contains(quant, StringComparison.OrdinalIgnoreCase)).ToList();
        if (matches.Count > 1)
        {
            var whole = matches.Where(m => ContainsAsToken(m.Key, quant)).ToList();
            if (whole.Count > 0) matches = whole;
        }
        if (matches.Count > 1)
            throw new HubException(HubErrorKind.Ambiguous,
                $"{repoId}: '{quant}' matches several models: {string.Join(", ", matches.Select(m => m.Parts[0].Path))}; name one with --hf-file");
        return matches.Count == 1 ? matches[0] : null;
    }

    /// <summary>
    /// True when <paramref name="quant"/> occurs in <paramref name="text"/> not preceded by a letter or digit and not followed
    /// by a letter, digit or '_'.
    /// </summary>
    private static bool ContainsAsToken(string text, string quant)
    {
        for (int at = text.IndexOf(quant, StringComparison.OrdinalIgnoreCase); at >= 0;
             at = text.IndexOf(quant, at + 1, StringComparison.OrdinalIgnoreCase))
        {
            int end = at + quant.Length;
            bool startOk = at == 0 || !char.IsAsciiLetterOrDigit(text[at - 1]);
            bool endOk = end == text.Length || !(char.IsAsciiLetterOrDigit(text[end]) || text[end] == '_');
            if (startOk && endOk) return true;
        }
        return false;
    }

    private static List<Model> GroupModels(IEnumerable<HubFile> ggufs)
    {
        var models = new Dictionary<string, Model>(StringComparer.Ordinal);
        foreach (var file in ggufs)
        {
            var (key, _, count) = SplitInfo(file.Path);
            if (count == 1) key = file.Path;
            if (!models.TryGetValue(key, out var model)) models[key] = model = new Model(key, [], count);
            model.Parts.Add(file);
        }
        return models.Values.OrderBy(m => m.Key, StringComparer.Ordinal).ToList();
    }

    /// <summary>The parts in order; throws when the listing lacks one.</summary>
    private static IReadOnlyList<HubFile> Complete(Model model, string repoId)
    {
        if (model.ExpectedParts == 1) return [model.Parts[0]];
        var byIndex = new SortedDictionary<int, HubFile>();
        foreach (var part in model.Parts)
        {
            var (_, index, count) = SplitInfo(part.Path);
            if (count == model.ExpectedParts && index >= 1 && index <= count) byIndex[index] = part;
        }
        for (int i = 1; i <= model.ExpectedParts; i++)
        {
            if (!byIndex.ContainsKey(i))
                throw new HubException(HubErrorKind.NotFound,
                    $"{repoId}: part {i} of {model.ExpectedParts} of split model {model.Key} is missing from the repository");
        }
        return byIndex.Values.ToList();
    }

    private static IEnumerable<string> OfferedQuants(List<Model> models) =>
        models.Select(m => QuantLabel(m.Parts[0].Path)).Distinct(StringComparer.OrdinalIgnoreCase).Order(StringComparer.OrdinalIgnoreCase);

    private static bool IsGguf(HubFile f) => f.Path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase);

    private static bool IsProjector(HubFile f) => f.Name.StartsWith("mmproj", StringComparison.OrdinalIgnoreCase);
}
