using System.Text.Json;
using System.Text.RegularExpressions;
using Infer.Runtime.Grammar;
using Infer.Tests;

namespace Infer.Runtime.Tests.Grammar;

/// <summary>
/// JSON schema to GBNF, checked on text: hand-picked valid and invalid instances, with the test validator (written from
/// the specification, not from the converter) agreeing on every one; exhaustive integer ranges; patterns against .NET's
/// regex engine; and one error per keyword the grammar cannot express.
/// </summary>
public class JsonSchemaGrammarTests
{
    /// <param name="schema">the schema (JSON text).</param>
    /// <param name="valid">instances both the grammar and the validator accept.</param>
    /// <param name="invalid">strings the grammar rejects; those that are JSON the validator rejects too.</param>
    /// <param name="excluded">valid by the specification, but left out by the grammar on purpose.</param>
    private static void Check(string schema, string[] valid, string[] invalid, string[]? excluded = null)
    {
        var g = GbnfGrammar.Parse(JsonSchemaGrammar.Convert(schema));
        using var s = JsonDocument.Parse(schema);
        foreach (var text in valid)
        {
            Assert.True(g.IsMatch(text), $"grammar should accept {text}\n{g.Text}");
            using var doc = JsonDocument.Parse(text);
            Assert.Empty(JsonSchemaValidator.Validate(doc.RootElement, s.RootElement));
        }
        foreach (var text in invalid)
        {
            Assert.False(g.IsMatch(text), $"grammar should reject {text}\n{g.Text}");
            if (!IsJson(text)) continue;
            using var doc = JsonDocument.Parse(text);
            // either invalid for the schema, or valid JSON the grammar leaves out on purpose (noted in the case)
            Assert.NotEmpty(JsonSchemaValidator.Validate(doc.RootElement, s.RootElement));
        }
        foreach (var text in excluded ?? []) Assert.False(g.IsMatch(text), $"grammar should leave out {text}");
    }

    /// <summary>
    /// A JSON string in the spelling pattern grammars produce: only the escapes JSON requires, short forms where they
    /// exist (the serializer's encoders escape more, e.g. surrogate pairs of an emoji).
    /// </summary>
    private static string JsonText(string s)
    {
        var sb = new System.Text.StringBuilder("\"");
        foreach (char c in s)
        {
            if (c is '"' or '\\') sb.Append('\\').Append(c);
            else if (c is '\b' or '\f' or '\n' or '\r' or '\t')
                sb.Append(c switch { '\b' => "\\b", '\f' => "\\f", '\n' => "\\n", '\r' => "\\r", _ => "\\t" });
            else if (c < 0x20) sb.Append($"\\u{(int)c:x4}");
            else sb.Append(c);
        }
        return sb.Append('"').ToString();
    }

    private static bool IsJson(string text)
    {
        try { JsonDocument.Parse(text).Dispose(); return true; }
        catch (JsonException) { return false; }
    }

    [Fact]
    public void ObjectsKeepDeclaredOrderAndMayLeaveOutOptionalProperties()
    {
        const string schema = """
            {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}},
             "required": ["b"], "additionalProperties": false}
            """;
        Check(schema, ["{\"b\":\"x\"}", "{\"a\": 1, \"b\": \"\", \"c\": true}", "{ \"a\":-5,\"b\":\"é\\n\" }", "{\"b\":\"\",\"c\":false}\n  "],
            ["{}", "{\"a\": 1}", "{\"b\": 1}", "{\"b\":\"x\",\"d\":1}", "{\"a\":1.5,\"b\":\"x\"}", "{\"b\":\"x\",}", "{,\"b\":\"x\"}"]);
    }

    [Fact]
    public void AdditionalPropertiesTrueSchemaAndDefault()
    {
        const string typed = """{"properties": {"a": {"const": 1}}, "additionalProperties": {"type": "integer"}}""";
        Check(typed, ["{}", "{\"a\":1}", "{\"a\":1,\"x\":2,\"ab\":3}", "{\"x\":2}", "{\"\":0}"],
            ["{\"x\":\"s\"}", "{\"a\":2}"], excluded: ["{\"a\":1,\"a\":1}"]); // an extra key may not be a declared one
        Check("""{"type": "object", "additionalProperties": true}""", ["{}", "{\"x\": [1, {\"y\": null}]}"], ["[]"]);
        Check("""{"properties": {"a": {"type": "null"}}}""", ["{\"a\":null,\"b\":{}}", "{\"b\":1}"], ["{\"a\":1}"]);
    }

    [Fact]
    public void RequiredPropertiesNotDeclaredTakeTheAdditionalSchema()
    {
        Check("""{"required": ["id"], "additionalProperties": {"type": "integer"}}""",
            ["{\"id\":1}", "{\"id\":1,\"x\":2}"], ["{}", "{\"id\":\"x\"}"]);
    }

    [Fact]
    public void Arrays()
    {
        Check("""{"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3}""",
            ["[1]", "[1, 2, 3]", "[ 1,2 ]"], ["[]", "[1,2,3,4]", "[\"a\"]", "[1,]"]);
        Check("""{"items": {"enum": ["a", "b"]}}""", ["[]", "[\"a\",\"b\",\"a\"]"], ["[\"c\"]"]);
        Check("""{"type": "array", "minItems": 2}""", ["[1, \"x\"]", "[[], {}, null]"], ["[1]"]);
        Check("""{"type": "array", "maxItems": 0}""", ["[]"], ["[1]"]);
        Check("""{"type": "array", "items": false}""", ["[]"], ["[1]"]);
    }

    [Fact]
    public void StringLengthsCountCharactersNotBytesOrEscapes()
    {
        Check("""{"type": "string", "minLength": 2, "maxLength": 3}""",
            ["\"ab\"", "\"éé\"", "\"😀😀😀\"", "\"\\n\\\"x\"", "\"a\\u00e9\""], ["\"a\"", "\"abcd\"", "\"\\ud83d\\ude00\""]);
    }

    [Fact]
    public void StringFormats()
    {
        Check("""{"format": "date"}""", ["\"2024-02-28\"", "\"1999-12-31\"", "\"0001-01-01\"", "\"0999-12-31\"", "\"0010-05-05\""],
            ["\"2024-02-30\"", "\"2024-13-01\"", "\"2024-1-01\"", "\"x\""],
            excluded: ["\"0000-01-01\""]); // RFC 3339 allows year 0; .NET's DateOnly and DateTime do not
        Check("""{"type": "string", "format": "time"}""", ["\"23:59:59Z\"", "\"00:00:00.123+05:30\""], ["\"24:00:00Z\"", "\"12:00:00\""]);
        Check("""{"type": "string", "format": "date-time"}""", ["\"2024-06-30T12:34:56-01:00\""], ["\"2024-06-30 12:34:56Z\""]);
        Check("""{"type": "string", "format": "uuid"}""", ["\"123e4567-e89b-12d3-a456-426614174000\""], ["\"123e4567e89b12d3a456426614174000\""]);
    }

    [Fact]
    public void UnknownFormatsArePlainStringsWhenAsked()
    {
        Assert.Throws<JsonSchemaException>(() => JsonSchemaGrammar.Convert("""{"type": "string", "format": "email"}"""));
        static bool Matches(string schema, string text) => GbnfGrammar.Parse(JsonSchemaGrammar.Convert(schema, true)).IsMatch(text);
        // no type: format still makes it a string; lengths and patterns still apply; known formats are still enforced
        Assert.True(Matches("""{"format": "email"}""", "\"not an address\""));
        Assert.False(Matches("""{"format": "email"}""", "3"));
        Assert.True(Matches("""{"type": "string", "format": "uri", "maxLength": 3}""", "\"abc\""));
        Assert.False(Matches("""{"type": "string", "format": "uri", "maxLength": 3}""", "\"abcd\""));
        Assert.True(Matches("""{"type": "string", "format": "hostname", "pattern": "^h"}""", "\"host\""));
        Assert.False(Matches("""{"type": "string", "format": "hostname", "pattern": "^h"}""", "\"x\""));
        Assert.False(Matches("""{"type": "string", "format": "date"}""", "\"x\""));
        Assert.True(Matches("""{"type": ["string", "null"], "format": "uri"}""", "null"));
    }

    [Fact]
    public void EnumConstAndTypeLists()
    {
        Check("""{"enum": ["red", 1, null, {"a": [true]}]}""", ["\"red\"", "1", "null", "{\"a\":[true]}"], ["\"blue\"", "2", "{\"a\":[false]}"]);
        Check("""{"type": "string", "enum": ["x", 3]}""", ["\"x\""], ["3"]); // values of another type are left out
        Check("""{"const": "tab\there"}""", ["\"tab\\there\""], ["\"tab\there\""]);
        Check("""{"type": ["integer", "null"], "minimum": 0}""", ["0", "7", "null"], ["-1", "\"7\"", "1.5"]);
        Check("""{"type": "boolean"}""", ["true", "false "], ["1", "\"true\""]);
    }

    [Fact]
    public void AnyOfOneOfAndRefs()
    {
        const string schema = """
            {"$defs": {"leaf": {"type": "integer", "minimum": 1, "maximum": 9},
                       "node": {"type": "object", "properties": {"v": {"$ref": "#/$defs/leaf"},
                                "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
                                "required": ["v"], "additionalProperties": false}},
             "oneOf": [{"$ref": "#/$defs/node"}, {"type": "string", "maxLength": 1}]}
            """;
        Check(schema, ["{\"v\":1}", "{\"v\":2,\"kids\":[{\"v\":3},{\"v\":4,\"kids\":[]}]}", "\"\"", "\"z\""],
            ["{\"v\":0}", "{\"kids\":[]}", "\"zz\"", "{\"v\":1,\"kids\":[{\"v\":1},{\"v\":1},{\"v\":1}]}"]);
        Check("""{"definitions": {"a": {"type": "null"}}, "anyOf": [{"$ref": "#/definitions/a"}, {"type": "boolean"}]}""",
            ["null", "true"], ["0"]);
        // recursion through the root
        Check("""{"type": "array", "items": {"$ref": "#"}, "maxItems": 2}""", ["[]", "[[],[[]]]"], ["[1]"]);
    }

    [Fact]
    public void AnyValue()
    {
        foreach (var schema in new[] { "{}", "true", """{"description": "anything"}""" })
            Check(schema, ["1", "\"s\"", "[1,{\"a\":null}]", "{\"x\":{\"y\":[]}}", "false"], ["", "[1,", "{a:1}"]);
        var obj = GbnfGrammar.Parse(JsonSchemaGrammar.AnyObject);
        Assert.True(obj.IsMatch("{\"a\": [1, 2.5e-3, \"x\"]}"));
        Assert.False(obj.IsMatch("[1]"));
        Assert.True(GbnfGrammar.Parse(JsonSchemaGrammar.AnyValue).IsMatch("[1]"));
    }

    public static TheoryData<long?, long?> IntegerRanges => new()
    {
        { 0, 150 }, { -7, 12 }, { 5, 5 }, { -1000, -999 }, { 99, 1001 }, { null, 40 }, { 37, null }, { -250, null }, { 0, 0 }, { 1, 9 },
    };

    [Theory]
    [MemberData(nameof(IntegerRanges))]
    public void IntegerRangesAreExact(long? min, long? max)
    {
        string schema = "{\"type\": \"integer\"" + (min is null ? "" : $", \"minimum\": {min}") + (max is null ? "" : $", \"maximum\": {max}") + "}";
        var g = GbnfGrammar.Parse(JsonSchemaGrammar.Convert(schema));
        long from = (min ?? max!.Value - 100) - 60, to = (max ?? min!.Value + 100) + 60;
        for (long n = from; n <= to; n++)
            Assert.True(g.IsMatch(n.ToString()) == (n >= (min ?? long.MinValue) && n <= (max ?? long.MaxValue)), $"{n} in {schema}");
        Assert.False(g.IsMatch("-0" + (max ?? 1)));
        Assert.False(g.IsMatch("0" + Math.Abs(min ?? 1)));
        Assert.False(g.IsMatch("1.0"));
    }

    [Fact]
    public void ExclusiveAndFractionalIntegerBounds()
    {
        var g = GbnfGrammar.Parse(JsonSchemaGrammar.Convert("""{"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 2.5}"""));
        for (int n = -10; n <= 10; n++) Assert.Equal(n > -3 && n < 2.5, g.IsMatch(n.ToString()));
        g = GbnfGrammar.Parse(JsonSchemaGrammar.Convert("""{"type": "integer", "minimum": 0.5, "maximum": 3, "exclusiveMaximum": true}"""));
        for (int n = -5; n <= 5; n++) Assert.Equal(n >= 1 && n < 3, g.IsMatch(n.ToString())); // draft 4's boolean form
    }

    [Theory]
    [InlineData("""{"type": "number", "minimum": 0, "maximum": 10}""", 0, false, 10, false)]
    [InlineData("""{"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}""", 0, true, 1, true)]
    [InlineData("""{"type": "number", "minimum": -2, "exclusiveMaximum": 3}""", -2, false, 3, true)]
    [InlineData("""{"type": "number", "exclusiveMinimum": -5, "maximum": -1}""", -5, true, -1, false)]
    [InlineData("""{"type": "number", "minimum": 3}""", 3, false, null, false)]
    [InlineData("""{"type": "number", "exclusiveMaximum": 0}""", null, false, 0, true)]
    public void NumberBoundsAreExact(string schema, int? min, bool minEx, int? max, bool maxEx)
    {
        var g = GbnfGrammar.Parse(JsonSchemaGrammar.Convert(schema));
        foreach (var text in new[] { "0", "-0.5", "0.0", "0.001", "1", "1.0", "0.999", "-1", "-1.0", "-1.5", "-2", "-2.0001", "2.9999",
                                     "3", "3.0", "3.00001", "-5", "-4.99", "-5.0", "9.5", "10", "10.0", "10.01", "11", "-6", "250.25", "-0.0" })
        {
            decimal v = decimal.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
            bool inside = (min is null || (minEx ? v > min : v >= min)) && (max is null || (maxEx ? v < max : v <= max));
            if (text == "-0.0" || text == "-0") inside = false; // negative zero is left out (it is also 0)
            Assert.True(inside == g.IsMatch(text), $"{text} for {schema}");
        }
    }

    public static TheoryData<string, string[]> Patterns => new()
    {
        { "^[a-z]{2,4}-\\d{3}$", ["ab-123", "abcd-000", "a-123", "abcde-123", "ab-12", "AB-123", "ab_123"] },
        { "^(foo|ba[rz])+\\.?$", ["foo", "barbaz.", "foofoo", "fo", "bar..", ".", "bax"] },
        { "^\\(\\d+\\)\\s?[^\"x]*$", ["(1) ab", "(12)", "(1)  \"", "(1)x", "()", "(1)\té"] },
        { "^a.c$", ["abc", "a\"c", "a\\c", "a\nc", "a😀c", "ac"] },
        { "abc", ["abc", "xxabcxx", "ab", "a\"bc"] },
        { "^x|y$", ["x", "xyz", "zzy", "y", "z"] },
        { "^(?:ab)*(?<tail>c)?$", ["", "abab", "abc", "c", "ba", "cc"] },
        { "^\\w+@[\\w.-]+\\.[a-z]{2,}$", ["a@b.co", "x_y@mail.example.org", "a@b", "@b.co", "a@b.c"] },
        { "^[\\u0041-\\u0043\\x61]{2}\\/\\x2e$", ["AB/.", "aC/.", "AD/.", "AB/x"] },
        { "^\\{\\d{1,}\\}$", ["{1}", "{123}", "{}", "1"] },
    };

    [Theory]
    [MemberData(nameof(Patterns))]
    public void PatternsMatchWhatTheRegexMatches(string pattern, string[] samples)
    {
        string schema = JsonSerializer.Serialize(new { type = "string", pattern });
        var g = GbnfGrammar.Parse(JsonSchemaGrammar.Convert(schema));
        foreach (var s in samples)
        {
            string json = JsonText(s);
            bool expected = Regex.IsMatch(s, pattern);
            if (pattern == "^a.c$") expected = s.EnumerateRunes().Count() == 3 && s[0] == 'a' && s[^1] == 'c' && s[1] != '\n';
            Assert.True(expected == g.IsMatch(json), $"/{pattern}/ on {json}: expected {expected}\n{g.Text}");
        }
    }

    [Theory]
    [InlineData("""{"type": "string", "format": "email"}""", "format", "#")]
    [InlineData("""{"type": "array", "uniqueItems": true}""", "uniqueItems", "#")]
    [InlineData("""{"properties": {"a": {"type": "number", "multipleOf": 0.5}}}""", "multipleOf", "#/properties/a")]
    [InlineData("""{"properties": {"a": {"type": "number", "minimum": 0.5}}}""", "minimum", "#/properties/a")]
    [InlineData("""{"type": "object", "patternProperties": {"^x": {}}}""", "patternProperties", "#")]
    [InlineData("""{"type": "object", "maxProperties": 2}""", "maxProperties", "#")]
    [InlineData("""{"not": {"type": "null"}}""", "not", "#")]
    [InlineData("""{"if": {}, "then": {}}""", "if", "#")]
    [InlineData("""{"type": "strng"}""", "type", "#")]
    [InlineData("""{"type": "string", "x-vendor": 1}""", "x-vendor", "#")]
    [InlineData("""{"$ref": "https://example.com/s.json"}""", "$ref", "#")]
    [InlineData("""{"$ref": "#/$defs/missing"}""", "$ref", "#")]
    [InlineData("""{"$ref": "#/$defs/a", "type": "object", "$defs": {"a": {}}}""", "type", "#")]
    [InlineData("""{"anyOf": [{"type": "integer"}], "minimum": 3}""", "minimum", "#")]
    [InlineData("""{"allOf": [{"type": "integer"}, {"minimum": 3}]}""", "allOf", "#")]
    [InlineData("""{"type": "string", "pattern": "^(a)\\1$"}""", "pattern", "#")]
    [InlineData("""{"type": "string", "pattern": "^(?=a)a$"}""", "pattern", "#")]
    [InlineData("""{"type": "string", "pattern": "\\bword"}""", "pattern", "#")]
    [InlineData("""{"type": "string", "pattern": "^a", "maxLength": 3}""", "maxLength", "#")]
    [InlineData("""{"items": [{"type": "integer"}]}""", "items", "#")]
    [InlineData("""{"type": "array", "prefixItems": [{}]}""", "prefixItems", "#")]
    [InlineData("""{"type": "array", "minItems": 3, "maxItems": 2}""", "minItems", "#")]
    [InlineData("""{"type": "integer", "minimum": 5, "maximum": 4}""", "minimum", "#")]
    [InlineData("""{"required": ["x"], "additionalProperties": false}""", "required", "#")]
    [InlineData("""{"properties": {"a/b": {"enum": []}}}""", "enum", "#/properties/a~1b")]
    [InlineData("false", "false", "#")]
    public void WhatCannotBeExpressedIsAnErrorNamingTheKeyword(string schema, string keyword, string path)
    {
        var e = Assert.Throws<JsonSchemaException>(() => JsonSchemaGrammar.Convert(schema));
        Assert.Equal(keyword, e.Keyword);
        Assert.Equal(path, e.SchemaPath);
        Assert.Contains($"'{keyword}'", e.Message);
    }

    [Fact]
    public void InvalidJsonIsAGrammarError()
    {
        var e = Assert.Throws<GrammarException>(() => JsonSchemaGrammar.Convert("{\"type\": "));
        Assert.Contains("not valid JSON", e.Message);
    }

    [Fact]
    public void GrammarTextIsReadable()
    {
        string g = JsonSchemaGrammar.Convert("""{"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}""");
        Assert.StartsWith("root ::= \"{\" space name-kv", g);
        Assert.Contains("name-kv ::= \"\\\"name\\\"\" space \":\" space string", g);
    }
}
