namespace Infer.Runtime.Grammar;

/// <summary>
/// The fixed GBNF rules the JSON schema converter builds on, each with the rules it needs. The semantics follow
/// llama.cpp's json-schema-to-grammar (whitespace, 16-digit numbers); the differences are stricter: a <c>\u</c> escape
/// never spells a surrogate, object keys of additional properties have one spelling (so they can be told apart from
/// declared ones), and dates only use days that exist in every year.
/// </summary>
internal static class JsonGrammarRules
{
    private static readonly Dictionary<string, (string Body, string[] Needs)> Rules = new(StringComparer.Ordinal)
    {
        // a bounded run of whitespace: models like to indent; unbounded whitespace could run forever
        ["space"] = ("| \" \" | \"\\n\"{1,2} [ \\t]{0,20}", []),
        ["boolean"] = ("(\"true\" | \"false\") space", ["space"]),
        ["null"] = ("\"null\" space", ["space"]),
        ["hex"] = ("[0-9a-fA-F]", []),
        // \uXXXX other than the surrogates D800-DFFF, which only make sense in pairs
        ["unicode-escape"] = ("\"u\" ([0-9a-cA-CeEfF] hex{3} | [dD] [0-7] hex{2})", ["hex"]),
        ["char"] = ("[^\"\\\\\\x7F\\x00-\\x1F] | [\\\\] ([\"\\\\/bfnrt] | unicode-escape)", ["unicode-escape"]),
        ["string"] = ("\"\\\"\" char* \"\\\"\" space", ["char", "space"]),
        // keys of additional properties: one spelling per string (no \u, no \/), so a trie can exclude declared names
        ["key-char"] = ("[^\"\\\\\\x7F\\x00-\\x1F] | [\\\\] [\"\\\\bfnrt]", []),
        ["integral-part"] = ("[0] | [1-9] [0-9]{0,15}", []),
        ["decimal-part"] = ("[0-9]{1,16}", []),
        ["number"] = ("\"-\"? integral-part (\".\" decimal-part)? ([eE] [-+]? integral-part)? space", ["integral-part", "decimal-part", "space"]),
        ["integer"] = ("\"-\"? integral-part space", ["integral-part", "space"]),
        ["value"] = ("object | array | string | number | boolean | null", ["object", "array", "string", "number", "boolean", "null"]),
        ["object"] = ("\"{\" space ( string \":\" space value (\",\" space string \":\" space value)* )? \"}\" space", ["string", "value", "space"]),
        ["array"] = ("\"[\" space ( value (\",\" space value)* )? \"]\" space", ["value", "space"]),
        ["date"] = ("year \"-\" ( ( \"0\" [13578] | \"1\" [02] ) \"-\" day31 | ( \"0\" [469] | \"11\" ) \"-\" day30 | \"02-\" day28 )",
            ["year", "day28", "day30", "day31"]),
        // 0001-9999: year 0 exists in no calendar .NET (DateOnly, DateTime) or most JSON consumers parse
        ["year"] = ("[1-9] [0-9]{3} | \"0\" [1-9] [0-9]{2} | \"00\" [1-9] [0-9] | \"000\" [1-9]", []),
        ["day28"] = ("\"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8]", []),
        ["day30"] = ("\"0\" [1-9] | [12] [0-9] | \"30\"", []),
        ["day31"] = ("\"0\" [1-9] | [12] [0-9] | \"3\" [01]", []),
        ["time"] = ("hour \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{3} )? ( \"Z\" | [+-] hour \":\" [0-5] [0-9] )", ["hour"]),
        ["hour"] = ("[01] [0-9] | \"2\" [0-3]", []),
        ["date-time"] = ("date \"T\" time", ["date", "time"]),
        ["uuid"] = ("hex{8} \"-\" hex{4} \"-\" hex{4} \"-\" hex{4} \"-\" hex{12}", ["hex"]),
        ["date-string"] = ("\"\\\"\" date \"\\\"\" space", ["date", "space"]),
        ["time-string"] = ("\"\\\"\" time \"\\\"\" space", ["time", "space"]),
        ["date-time-string"] = ("\"\\\"\" date-time \"\\\"\" space", ["date-time", "space"]),
        ["uuid-string"] = ("\"\\\"\" uuid \"\\\"\" space", ["uuid", "space"]),
    };

    public static bool IsBuiltIn(string name) => Rules.ContainsKey(name);

    /// <summary>Adds <paramref name="name"/> and everything it needs through <paramref name="add"/> (name, body).</summary>
    public static void AddWithDependencies(string name, Action<string, string> add, HashSet<string> added)
    {
        if (!added.Add(name)) return;
        var (body, needs) = Rules[name];
        add(name, body);
        foreach (var n in needs) AddWithDependencies(n, add, added);
    }
}
