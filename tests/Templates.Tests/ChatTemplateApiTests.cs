using System.Text.Json;
using System.Text.Json.Nodes;

namespace Infer.Templates.Tests;

/// <summary>The public API: errors with lines, raise_exception, the clock, JSON values, RenderChat, limits.</summary>
public class ChatTemplateApiTests
{
    private static string Render(string source, object? vars = null)
    {
        var dict = vars is null ? new Dictionary<string, object?>() : TemplateValues.FromJson(JsonSerializer.Serialize(vars));
        return ChatTemplate.Parse(source).Render(dict);
    }

    [Fact]
    public void RuntimeErrorNamesLineAndConstruct()
    {
        var t = ChatTemplate.Parse("line one\n{% set x = 1 %}\n{% for m in messages %}\n{{ m.content + 1 }}\n{% endfor %}");
        var vars = TemplateValues.FromJson("""{"messages": [{"content": "hi"}]}""");
        var ex = Assert.Throws<TemplateException>(() => t.Render(vars));
        Assert.Equal(4, ex.Line);
        Assert.Equal("TypeError", ex.Kind);
        Assert.Contains("line 4", ex.Message);
        Assert.Contains("{{ ... }}", ex.Message);
        Assert.Contains("can only concatenate str (not \"int\") to str", ex.Message);
    }

    [Fact]
    public void SyntaxErrorNamesLineAndConstruct()
    {
        var ex = Assert.Throws<TemplateException>(() => ChatTemplate.Parse("a\nb\n{% if x %}\n{% for y in %}\n{% endfor %}{% endif %}"));
        Assert.Equal("TemplateSyntaxError", ex.Kind);
        Assert.Equal(4, ex.Line);
        Assert.Contains("line 4", ex.Message);
        Assert.Contains("'for'", ex.Message);
    }

    [Fact]
    public void UnclosedBlockIsReported()
    {
        var ex = Assert.Throws<TemplateException>(() => ChatTemplate.Parse("a\n{% for x in y %}\nbody\n"));
        Assert.Contains("'endfor'", ex.Detail);
        Assert.Contains("'for' (opened on line 2)", ex.Detail);
        var stray = Assert.Throws<TemplateException>(() => ChatTemplate.Parse("{% if x %}\n{% for y in x %}{% endif %}"));
        Assert.Equal(2, stray.Line);
        Assert.Contains("unknown tag 'endif'", stray.Detail);
        Assert.Contains("'for' (opened on line 2)", stray.Detail);
    }

    [Fact]
    public void RaiseExceptionCarriesTheMessage()
    {
        var t = ChatTemplate.Parse("ok\n{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}");
        var vars = TemplateValues.FromJson("""{"messages": [{"role": "system", "content": "x"}]}""");
        var ex = Assert.Throws<TemplateRaiseException>(() => t.Render(vars));
        Assert.Equal("System role not supported", ex.TemplateMessage);
        Assert.Equal(2, ex.Line);
        Assert.Equal("TemplateError: System role not supported", ex.PythonMessage);
    }

    [Fact]
    public void StrftimeNowReadsTheInjectedClock()
    {
        var t = ChatTemplate.Parse("{{ strftime_now('%Y-%m-%d %H:%M:%S|%d %b %Y|%B %-d, %A|%I%p') }}");
        var options = new TemplateOptions { Clock = () => new DateTime(2024, 7, 5, 14, 3, 9) };
        Assert.Equal("2024-07-05 14:03:09|05 Jul 2024|July 5, Friday|02PM", t.Render(new Dictionary<string, object?>(), options));
    }

    [Fact]
    public void JsonNumbersKeepPythonTypes()
    {
        var vars = TemplateValues.FromJson("""{"i": 3, "f": 3.0, "e": 1e3, "big": 12345678901234, "z": {"b": 1, "a": 2}}""");
        Assert.Equal(3L, vars["i"]);
        Assert.Equal(3.0, vars["f"]);
        Assert.Equal(1000.0, vars["e"]);
        Assert.Equal("3 3.0 1000.0 12345678901234 {'b': 1, 'a': 2} True True",
            ChatTemplate.Parse("{{ i }} {{ f }} {{ e }} {{ big }} {{ z }} {{ i is integer }} {{ f is float }}").Render(vars));
    }

    [Fact]
    public void AcceptsDotNetAndJsonNodeValues()
    {
        var vars = new Dictionary<string, object?>
        {
            ["n"] = 5,
            ["x"] = 0.5f,
            ["list"] = new[] { "a", "b" },
            ["map"] = new Dictionary<string, object?> { ["k"] = new List<int> { 1, 2 } },
            ["node"] = JsonNode.Parse("""{"q": [true, null]}"""),
            ["msg"] = new ChatMessage("user", "hi"),
        };
        var t = ChatTemplate.Parse("{{ n + 1 }} {{ x }} {{ list }} {{ map.k[1] }} {{ node.q }} {{ msg.role }}:{{ msg['content'] }}");
        Assert.Equal("6 0.5 ['a', 'b'] 2 [True, None] user:hi", t.Render(vars));
    }

    [Fact]
    public void RenderChatPassesTransformersVariables()
    {
        var t = ChatTemplate.Parse(
            "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}{{ eos_token }}{% endfor %}" +
            "{% if add_generation_prompt %}<|assistant|>{% endif %}{{ extra_flag | default('') }}");
        var messages = new[] { new ChatMessage("system", "S "), new ChatMessage("user", " U") };
        Assert.Equal("<s><|system|>S</s><|user|>U</s><|assistant|>",
            t.RenderChat(messages, addGenerationPrompt: true, "<s>", "</s>"));
        Assert.Equal("<s><|system|>S</s><|user|>U</s>!",
            t.RenderChat(messages, addGenerationPrompt: false, "<s>", "</s>", new Dictionary<string, object?> { ["extra_flag"] = "!" }));
    }

    [Fact]
    public void TemplateDoesNotChangeCallerData()
    {
        var list = new List<object?> { 1L, 2L };
        var vars = new Dictionary<string, object?> { ["l"] = list };
        Assert.Equal("[2, 1]", ChatTemplate.Parse("{{ l | reverse | list }}").Render(vars));
        Assert.Equal([1L, 2L], list);
    }

    [Fact]
    public void RendersConcurrentlyFromOneParse()
    {
        var t = ChatTemplate.Parse("{% set ns = namespace(s='') %}{% for m in messages %}{% set ns.s = ns.s + m.content %}{% endfor %}{{ ns.s }}");
        Parallel.For(0, 64, i =>
        {
            var msgs = Enumerable.Range(0, i % 7).Select(k => new ChatMessage("user", $"{i}.{k};")).ToArray();
            var expected = string.Concat(msgs.Select(m => m.Content));
            Assert.Equal(expected, t.RenderChat(msgs, false, "", ""));
        });
    }

    [Fact]
    public void GenerationTagRendersItsBody()
    {
        Assert.Equal("a[x]b", Render("a{% generation %}[{{ 'x' }}]{% endgeneration %}b"));
    }

    [Theory]
    [InlineData("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")]
    [InlineData("{{ range(100000000000) | length }}")]
    [InlineData("{{ 'x' * 100000000000 }}")]
    public void RunawayTemplatesStopWithAnError(string source)
    {
        Assert.ThrowsAny<TemplateException>(() => Render(source));
    }

    [Fact]
    public void EndlessLoopsStopAtTheIterationLimit()
    {
        var t = ChatTemplate.Parse("{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}");
        var ex = Assert.Throws<TemplateException>(
            () => t.Render(new Dictionary<string, object?>(), new TemplateOptions { MaxLoopIterations = 5000 }));
        Assert.Contains("5000 loop iterations", ex.Detail);
    }

    [Theory]
    [InlineData("{{ 9223372036854775807 + 1 }}")]
    [InlineData("{{ (-9223372036854775807 - 1) | abs }}")]
    [InlineData("{{ 3037000500 * 3037000500 }}")]
    [InlineData("{{ 2 ** 70 }}")]
    [InlineData("{{ 99999999999999999999 }}")]
    public void IntegersBeyond64BitsFailInsteadOfWrapping(string source)
    {
        // Python would print the exact big integer; we stop with OverflowError rather than print a wrapped number.
        var ex = Assert.ThrowsAny<TemplateException>(() => Render(source));
        Assert.Equal("OverflowError", ex.Kind);
    }

    [Fact]
    public void DeepNestingIsASyntaxErrorNotACrash()
    {
        var deep = "{{ " + new string('(', 5000) + "1" + new string(')', 5000) + " }}";
        var ex = Assert.Throws<TemplateException>(() => ChatTemplate.Parse(deep));
        Assert.Equal("TemplateSyntaxError", ex.Kind);
        var deepBlocks = string.Concat(Enumerable.Repeat("{% if true %}", 20000));
        Assert.ThrowsAny<TemplateException>(() => ChatTemplate.Parse(deepBlocks));
    }

    [Fact]
    public void GarbageInputNeverEscapesAsAnotherException()
    {
        var rng = new Random(1234);
        const string alphabet = "{}%#-+()[]'\"|.,:=~*/ abcifnorsetdx0123456789\n";
        for (int i = 0; i < 3000; i++)
        {
            var chars = new char[rng.Next(1, 40)];
            for (int k = 0; k < chars.Length; k++) chars[k] = alphabet[rng.Next(alphabet.Length)];
            var source = new string(chars);
            try
            {
                ChatTemplate.Parse(source).Render(new Dictionary<string, object?> { ["x"] = 1L, ["s"] = "str" });
            }
            catch (TemplateException)
            {
            }
        }
    }
}
