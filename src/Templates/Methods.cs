using System.Globalization;
using System.Text;

namespace Infer.Templates;

/// <summary>The Python str, dict and list methods templates call (<c>s.split('x')</c>, <c>d.get('k')</c>, ...).</summary>
internal static class Methods
{
    public static object? Call(object target, string name, CallArgs a) => target switch
    {
        string s => CallString(s, name, a),
        PyDict d => CallDict(d, name, a),
        List<object?> l => CallList(l, name, a),
        _ => throw TemplateRuntimeError.Type($"'{Py.TypeName(target)}' object has no method '{name}'"),
    };

    private static string Str(CallArgs a, int i, string name, string method)
    {
        var v = a.Get(i, name);
        if (v is Markup m) return m.Value;
        return v as string ?? throw TemplateRuntimeError.Type($"{method}() argument must be str, not {Py.TypeName(v)}");
    }

    private static string? OptChars(CallArgs a, string method)
    {
        var v = a.Get(0, "chars");
        return v switch
        {
            null or Undefined => null,
            string s => s,
            Markup m => m.Value,
            _ => throw TemplateRuntimeError.Type($"{method} arg must be None or str"),
        };
    }

    private static object? CallString(string s, string name, CallArgs a)
    {
        switch (name)
        {
            case "strip": return Strip(s, OptChars(a, name), true, true);
            case "lstrip": return Strip(s, OptChars(a, name), true, false);
            case "rstrip": return Strip(s, OptChars(a, name), false, true);
            case "upper": return s.ToUpperInvariant();
            case "lower": return s.ToLowerInvariant();
            case "casefold": return s.ToLowerInvariant();
            case "title": return Title(s);
            case "capitalize": return Capitalize(s);
            case "swapcase":
                return string.Concat(s.Select(c => char.IsUpper(c) ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)));
            case "split": return Split(s, a.Get(0, "sep"), a.Get(1, "maxsplit", -1L), fromRight: false);
            case "rsplit": return Split(s, a.Get(0, "sep"), a.Get(1, "maxsplit", -1L), fromRight: true);
            case "splitlines": return FilterLibrary.SplitLines(s, Py.Truthy(a.Get(0, "keepends", false))).Cast<object?>().ToList();
            case "startswith": return StartsOrEnds(s, a, start: true);
            case "endswith": return StartsOrEnds(s, a, start: false);
            case "replace":
                {
                    var oldS = Str(a, 0, "old", name);
                    var newS = Str(a, 1, "new", name);
                    long count = Py.ToLong(a.Get(2, "count", -1L));
                    return Replace(s, oldS, newS, count);
                }
            case "find": return (long)Find(s, Str(a, 0, "sub", name), a, reverse: false);
            case "rfind": return (long)Find(s, Str(a, 0, "sub", name), a, reverse: true);
            case "index":
            case "rindex":
                {
                    int i = Find(s, Str(a, 0, "sub", name), a, reverse: name == "rindex");
                    if (i < 0) throw TemplateRuntimeError.Value("substring not found");
                    return (long)i;
                }
            case "count":
                {
                    var sub = Str(a, 0, "sub", name);
                    if (sub.Length == 0) return (long)(s.Length + 1);
                    long n = 0;
                    for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
                    return n;
                }
            case "join":
                {
                    var items = Py.Iterate(a.Get(0, "iterable"));
                    var sb = new StringBuilder();
                    for (int i = 0; i < items.Count; i++)
                    {
                        if (i > 0) sb.Append(s);
                        sb.Append(items[i] is Markup m ? m.Value : items[i] as string
                            ?? throw TemplateRuntimeError.Type($"sequence item {i}: expected str instance, {Py.TypeName(items[i])} found"));
                    }
                    return sb.ToString();
                }
            case "isdigit" or "isnumeric" or "isdecimal": return s.Length > 0 && s.All(char.IsDigit);
            case "isalpha": return s.Length > 0 && s.All(char.IsLetter);
            case "isalnum": return s.Length > 0 && s.All(char.IsLetterOrDigit);
            case "isspace": return s.Length > 0 && s.All(char.IsWhiteSpace);
            case "isupper": return s.Any(char.IsLetter) && !s.Any(char.IsLower);
            case "islower": return s.Any(char.IsLetter) && !s.Any(char.IsUpper);
            case "istitle": return s.Length > 0 && Title(s) == s && s.Any(char.IsLetter);
            case "center":
                {
                    int width = (int)Math.Min(Py.ToLong(a.Get(0, "width")), 1 << 20);
                    var fill = a.Get(1, "fillchar", " ") as string ?? " ";
                    if (width <= s.Length) return s;
                    int total = width - s.Length;
                    int left = total / 2 + (total & width & 1);
                    return new string(fill[0], left) + s + new string(fill[0], total - left);
                }
            case "ljust": return s.PadRight((int)Math.Min(Py.ToLong(a.Get(0, "width")), 1 << 20), (a.Get(1, "fillchar", " ") as string ?? " ")[0]);
            case "rjust": return s.PadLeft((int)Math.Min(Py.ToLong(a.Get(0, "width")), 1 << 20), (a.Get(1, "fillchar", " ") as string ?? " ")[0]);
            case "zfill":
                {
                    int width = (int)Math.Min(Py.ToLong(a.Get(0, "width")), 1 << 20);
                    if (s.Length >= width) return s;
                    bool sign = s.Length > 0 && s[0] is '+' or '-';
                    return sign ? s[0] + s[1..].PadLeft(width - 1, '0') : s.PadLeft(width, '0');
                }
            case "partition":
            case "rpartition":
                {
                    var sep = Str(a, 0, "sep", name);
                    int i = name == "partition" ? s.IndexOf(sep, StringComparison.Ordinal) : s.LastIndexOf(sep, StringComparison.Ordinal);
                    if (i < 0) return name == "partition" ? new PyTuple([s, "", ""]) : new PyTuple(["", "", s]);
                    return new PyTuple([s[..i], sep, s[(i + sep.Length)..]]);
                }
            case "removeprefix": { var p = Str(a, 0, "prefix", name); return s.StartsWith(p, StringComparison.Ordinal) ? s[p.Length..] : s; }
            case "removesuffix":
                {
                    var p = Str(a, 0, "suffix", name);
                    return p.Length > 0 && s.EndsWith(p, StringComparison.Ordinal) ? s[..^p.Length] : s;
                }
            case "expandtabs": return s.Replace("\t", new string(' ', (int)Py.ToLong(a.Get(0, "tabsize", 8L))));
            case "format": return StrFormat(s, a);
        }
        throw TemplateRuntimeError.Type($"'str' object has no method '{name}'");
    }

    public static bool IsPyWhiteSpace(char c) => char.IsWhiteSpace(c) || c is '\x1c' or '\x1d' or '\x1e' or '\x1f';

    public static string Strip(string s, string? chars, bool left, bool right)
    {
        int start = 0, end = s.Length;
        Func<char, bool> strip = chars is null ? IsPyWhiteSpace : c => chars.Contains(c);
        if (left) while (start < end && strip(s[start])) start++;
        if (right) while (end > start && strip(s[end - 1])) end--;
        return s[start..end];
    }

    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool prevCased = false;
        foreach (char c in s)
        {
            if (char.IsLetter(c))
            {
                sb.Append(prevCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
                prevCased = true;
            }
            else
            {
                sb.Append(c);
                prevCased = false;
            }
        }
        return sb.ToString();
    }

    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    private static List<object?> Split(string s, object? sepV, object? maxV, bool fromRight)
    {
        long max = maxV is null ? -1 : Py.ToLong(maxV);
        var result = new List<object?>();
        if (sepV is null or Undefined)
        {
            // Whitespace split: runs of whitespace separate, no empty strings.
            var parts = new List<string>();
            if (!fromRight)
            {
                int i = 0;
                while (i < s.Length)
                {
                    while (i < s.Length && IsPyWhiteSpace(s[i])) i++;
                    if (i >= s.Length) break;
                    if (max >= 0 && parts.Count == max)
                    {
                        parts.Add(Strip(s[i..], null, false, true));
                        break;
                    }
                    int j = i;
                    while (j < s.Length && !IsPyWhiteSpace(s[j])) j++;
                    parts.Add(s[i..j]);
                    i = j;
                }
            }
            else
            {
                int i = s.Length;
                while (i > 0)
                {
                    while (i > 0 && IsPyWhiteSpace(s[i - 1])) i--;
                    if (i <= 0) break;
                    if (max >= 0 && parts.Count == max)
                    {
                        parts.Add(Strip(s[..i], null, true, false));
                        break;
                    }
                    int j = i;
                    while (j > 0 && !IsPyWhiteSpace(s[j - 1])) j--;
                    parts.Add(s[j..i]);
                    i = j;
                }
                parts.Reverse();
            }
            result.AddRange(parts);
            return result;
        }
        if (sepV is not string sep) throw TemplateRuntimeError.Type($"must be str or None, not {Py.TypeName(sepV)}");
        if (sep.Length == 0) throw TemplateRuntimeError.Value("empty separator");
        if (!fromRight)
        {
            int start = 0;
            while (max < 0 || result.Count < max)
            {
                int i = s.IndexOf(sep, start, StringComparison.Ordinal);
                if (i < 0) break;
                result.Add(s[start..i]);
                start = i + sep.Length;
            }
            result.Add(s[start..]);
        }
        else
        {
            int end = s.Length;
            var parts = new List<object?>();
            while (max < 0 || parts.Count < max)
            {
                int i = end - sep.Length < 0 ? -1 : s.LastIndexOf(sep, end - 1, end, StringComparison.Ordinal);
                if (i < 0) break;
                parts.Add(s[(i + sep.Length)..end]);
                end = i;
            }
            parts.Add(s[..end]);
            parts.Reverse();
            result.AddRange(parts);
        }
        return result;
    }

    private static bool StartsOrEnds(string s, CallArgs a, bool start)
    {
        var arg = a.Get(0, "prefix");
        string target = s;
        if (a.Count > 1)
        {
            var idx = SliceBounds(s.Length, a.Get(1, "start"), a.Get(2, "end"));
            target = s[idx.Start..Math.Max(idx.Start, idx.End)];
        }
        IEnumerable<object?> options = arg is PyTuple t ? t.Items : [arg];
        foreach (var o in options)
        {
            if (o is not string p)
            {
                throw TemplateRuntimeError.Type(
                    $"{(start ? "startswith" : "endswith")} first arg must be str or a tuple of str, not {Py.TypeName(o)}");
            }
            if (start ? target.StartsWith(p, StringComparison.Ordinal) : target.EndsWith(p, StringComparison.Ordinal)) return true;
        }
        return false;
    }

    private static (int Start, int End) SliceBounds(int length, object? startV, object? endV)
    {
        int Norm(object? v, int fallback)
        {
            if (v is null or Undefined) return fallback;
            long x = Py.ToLong(v);
            if (x < 0) x += length;
            return (int)Math.Clamp(x, 0, length);
        }
        return (Norm(startV, 0), Norm(endV, length));
    }

    private static int Find(string s, string sub, CallArgs a, bool reverse)
    {
        var (start, end) = SliceBounds(s.Length, a.Get(1, "start"), a.Get(2, "end"));
        if (end < start) return -1;
        var window = s[start..end];
        int i = reverse ? window.LastIndexOf(sub, StringComparison.Ordinal) : window.IndexOf(sub, StringComparison.Ordinal);
        return i < 0 ? -1 : i + start;
    }

    public static string Replace(string s, string oldS, string newS, long count)
    {
        if (count < 0) return oldS.Length == 0 ? InsertEverywhere(s, newS, -1) : s.Replace(oldS, newS, StringComparison.Ordinal);
        if (oldS.Length == 0) return InsertEverywhere(s, newS, count);
        var sb = new StringBuilder();
        int pos = 0;
        for (long n = 0; n < count; n++)
        {
            int i = s.IndexOf(oldS, pos, StringComparison.Ordinal);
            if (i < 0) break;
            sb.Append(s, pos, i - pos).Append(newS);
            pos = i + oldS.Length;
        }
        sb.Append(s, pos, s.Length - pos);
        return sb.ToString();
    }

    private static string InsertEverywhere(string s, string ins, long count)
    {
        var sb = new StringBuilder();
        long n = 0;
        for (int i = 0; i <= s.Length; i++)
        {
            if (count < 0 || n < count)
            {
                sb.Append(ins);
                n++;
            }
            if (i < s.Length) sb.Append(s[i]);
        }
        return sb.ToString();
    }

    /// <summary>str.format with positional and named fields ({}, {0}, {name}); format specs are not supported.</summary>
    private static string StrFormat(string s, CallArgs a)
    {
        var sb = new StringBuilder();
        int auto = 0;
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c == '{')
            {
                if (i + 1 < s.Length && s[i + 1] == '{')
                {
                    sb.Append('{');
                    i++;
                    continue;
                }
                int close = s.IndexOf('}', i);
                if (close < 0) throw TemplateRuntimeError.Value("Single '{' encountered in format string");
                var field = s[(i + 1)..close];
                if (field.Contains(':') || field.Contains('!')) throw TemplateRuntimeError.Value($"format spec in '{{{field}}}' is not supported");
                object? v;
                if (field.Length == 0) v = a.Get(auto++, "\0");
                else if (int.TryParse(field, NumberStyles.None, CultureInfo.InvariantCulture, out int idx)) v = a.Get(idx, "\0");
                else if (a.Keywords is not null && a.Keywords.TryGetValue(field, out var kv)) v = kv;
                else throw new TemplateRuntimeError("KeyError", $"'{field}'");
                Py.AppendStr(sb, v);
                i = close;
            }
            else if (c == '}')
            {
                if (i + 1 < s.Length && s[i + 1] == '}') i++;
                sb.Append('}');
            }
            else
            {
                sb.Append(c);
            }
        }
        return sb.ToString();
    }

    private static object? CallDict(PyDict d, string name, CallArgs a)
    {
        switch (name)
        {
            case "get":
                {
                    var key = a.Get(0, "key");
                    bool hashable = key is not null and not Undefined and not List<object?> and not PyDict;
                    return hashable && d.TryGetValue(key!, out var v) ? v : a.Get(1, "default");
                }
            case "items": return new PyDictView(d, PyDictView.ViewKind.Items);
            case "keys": return new PyDictView(d, PyDictView.ViewKind.Keys);
            case "values": return new PyDictView(d, PyDictView.ViewKind.Values);
            case "copy":
                {
                    var c = new PyDict(d.Count);
                    foreach (var (k, v) in d) c[k] = v;
                    return c;
                }
        }
        throw TemplateRuntimeError.Type($"'dict' object has no method '{name}'");
    }

    private static object? CallList(List<object?> l, string name, CallArgs a)
    {
        switch (name)
        {
            case "index":
                {
                    var x = a.Get(0, "value");
                    for (int i = 0; i < l.Count; i++) if (Py.Equal(l[i], x)) return (long)i;
                    throw TemplateRuntimeError.Value($"{Py.Repr(x)} is not in list");
                }
            case "count": return (long)l.Count(x => Py.Equal(x, a.Get(0, "value")));
            case "copy": return new List<object?>(l);
        }
        throw TemplateRuntimeError.Type($"'list' object has no method '{name}'");
    }
}
