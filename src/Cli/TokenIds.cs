using System.Globalization;

namespace Infer.Cli;

internal static class TokenIds
{
    /// <summary>"1,2,3" as token ids; anything else is a usage error naming <paramref name="option"/>.</summary>
    public static int[] Parse(string s, string option)
    {
        var parts = s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out ids[i]) || ids[i] < 0)
                throw new UsageException($"{option} expects comma-separated token ids, got '{parts[i]}'");
        return ids;
    }
}
