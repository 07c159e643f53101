namespace Infer.Runtime.Grammar;

/// <summary>
/// A parsed GBNF grammar (llama.cpp's syntax, see grammars/README.md there), independent of any tokenizer. Bind it to a
/// vocabulary with <see cref="GrammarConstraint.Create(GbnfGrammar, Tokenizers.Tokenizer, long)"/> to constrain sampling.
/// Immutable and thread-safe.
/// </summary>
public sealed class GbnfGrammar
{
    /// <summary>(elements): every alternative of every rule, each followed by an End element.</summary>
    internal Element[] Elements { get; }

    /// <summary>(rules) x (alternatives): where each alternative starts in <see cref="Elements"/>.</summary>
    internal int[][] Alternatives { get; }

    internal CharSet[] Sets { get; }

    /// <summary>(rules): names; rules made for groups and repetitions are named "parent~N".</summary>
    internal string[] Names { get; }

    internal int Root { get; }

    /// <summary>The grammar text it was parsed from.</summary>
    public string Text { get; }

    /// <summary>Rules after groups and repetitions were rewritten into helper rules.</summary>
    public int RuleCount => Names.Length;

    private GbnfGrammar(string text, Element[] elements, int[][] alternatives, CharSet[] sets, string[] names, int root)
    {
        Text = text;
        Elements = elements;
        Alternatives = alternatives;
        Sets = sets;
        Names = names;
        Root = root;
    }

    /// <summary>Parses GBNF text; <c>root</c> is the start rule.</summary>
    /// <exception cref="GrammarException">a syntax error (with line and column), an undefined rule, a rule defined twice,
    /// no <c>root</c> rule, or left recursion (a rule that can reach itself without consuming a character).</exception>
    public static GbnfGrammar Parse(string text) => GbnfParser.Parse(text);

    internal static GbnfGrammar Build(string text, List<GbnfParser.RuleDef> rules, List<CharSet> sets)
    {
        CheckLeftRecursion(text, rules);
        CheckEveryRuleCanEnd(text, rules);
        var elements = new List<Element>();
        var alternatives = new int[rules.Count][];
        for (int r = 0; r < rules.Count; r++)
        {
            var alts = rules[r].Alternatives!;
            alternatives[r] = new int[alts.Count];
            for (int a = 0; a < alts.Count; a++)
            {
                alternatives[r][a] = elements.Count;
                elements.AddRange(alts[a]);
                elements.Add(new Element(ElementKind.End, 0));
            }
        }
        int root = rules.FindIndex(r => r.Name == "root");
        return new GbnfGrammar(text, [.. elements], alternatives, [.. sets], rules.Select(r => r.Name).ToArray(), root);
    }

    /// <summary>
    /// Matching expands a rule reference into its alternatives before consuming a character, so a rule that can reach
    /// itself at its left edge (directly or through rules that may match nothing) would expand forever. llama.cpp
    /// rejects such grammars too (llama_grammar_detect_left_recursion).
    /// </summary>
    private static void CheckLeftRecursion(string text, List<GbnfParser.RuleDef> rules)
    {
        int n = rules.Count;
        var nullable = new bool[n];
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int r = 0; r < n; r++)
            {
                if (nullable[r]) continue;
                foreach (var alt in rules[r].Alternatives!)
                {
                    if (alt.All(e => e.Kind == ElementKind.Rule && nullable[e.Value]))
                    {
                        nullable[r] = changed = true;
                        break;
                    }
                }
            }
        }

        // edges r -> s: s can start at the left edge of r
        var left = new List<int>[n];
        for (int r = 0; r < n; r++)
        {
            left[r] = [];
            foreach (var alt in rules[r].Alternatives!)
            {
                foreach (var e in alt)
                {
                    if (e.Kind != ElementKind.Rule) break;
                    left[r].Add(e.Value);
                    if (!nullable[e.Value]) break;
                }
            }
        }

        var state = new byte[n]; // 0 new, 1 on the path, 2 done
        var path = new List<int>();
        for (int r = 0; r < n; r++)
        {
            if (state[r] != 0) continue;
            var cycle = FindCycle(r, left, state, path);
            if (cycle is not null) throw LeftRecursionError(text, rules, cycle);
        }
    }

    /// <summary>
    /// A rule none of whose alternatives can finish (each refers back to itself, say <c>loop ::= "b" loop</c>) would
    /// let generation start a sentence that can never end; such a rule, when reachable from root, is an error.
    /// </summary>
    private static void CheckEveryRuleCanEnd(string text, List<GbnfParser.RuleDef> rules)
    {
        int n = rules.Count;
        var finite = new bool[n];
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int r = 0; r < n; r++)
            {
                if (finite[r]) continue;
                if (rules[r].Alternatives!.Any(alt => alt.All(e => e.Kind == ElementKind.Char || finite[e.Value])))
                    finite[r] = changed = true;
            }
        }
        int root = rules.FindIndex(r => r.Name == "root");
        var seen = new bool[n];
        var work = new Stack<int>();
        work.Push(root);
        seen[root] = true;
        int worst = -1;
        while (work.Count > 0)
        {
            int r = work.Pop();
            if (!finite[r] && (worst < 0 || rules[worst].Generated && !rules[r].Generated)) worst = r;
            foreach (var alt in rules[r].Alternatives!)
                foreach (var e in alt)
                    if (e.Kind == ElementKind.Rule && !seen[e.Value]) { seen[e.Value] = true; work.Push(e.Value); }
        }
        if (worst < 0) return;
        var (line, column) = GbnfParser.LineColumn(text, rules[worst].Position);
        string what = rules[worst].Generated ? "this group" : $"rule '{rules[worst].Name}'";
        throw new GrammarException($"{what} can never end: every alternative refers back to a rule that never ends", line, column);
    }

    private static List<int>? FindCycle(int start, List<int>[] left, byte[] state, List<int> path)
    {
        // iterative DFS: grammars made by the JSON schema converter can nest thousands of rules deep
        var stack = new Stack<(int Rule, int Next)>();
        stack.Push((start, 0));
        state[start] = 1;
        path.Add(start);
        while (stack.Count > 0)
        {
            var (r, next) = stack.Pop();
            if (next < left[r].Count)
            {
                stack.Push((r, next + 1));
                int s = left[r][next];
                if (state[s] == 1) return path.GetRange(path.IndexOf(s), path.Count - path.IndexOf(s));
                if (state[s] == 0)
                {
                    state[s] = 1;
                    path.Add(s);
                    stack.Push((s, 0));
                }
            }
            else
            {
                state[r] = 2;
                path.RemoveAt(path.Count - 1);
            }
        }
        return null;
    }

    private static GrammarException LeftRecursionError(string text, List<GbnfParser.RuleDef> rules, List<int> cycle)
    {
        var named = cycle.Where(r => !rules[r].Generated).ToList();
        if (named.Count == 0)
        {
            var (l, c) = GbnfParser.LineColumn(text, rules[cycle[0]].Position);
            return new GrammarException("the repeated item can match the empty string, so the repetition would never end", l, c);
        }
        var first = rules[named[0]];
        var (line, column) = GbnfParser.LineColumn(text, first.Position);
        var chain = string.Join(" -> ", named.Append(named[0]).Select(r => rules[r].Name));
        return new GrammarException($"rule '{first.Name}' is left-recursive ({chain} without consuming a character)", line, column);
    }

    /// <summary>Whether the whole of <paramref name="text"/> is a sentence of the grammar.</summary>
    public bool IsMatch(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var automaton = new GrammarAutomaton(this);
        int state = automaton.Start;
        foreach (var rune in text.EnumerateRunes())
        {
            state = automaton.Step(state, rune.Value);
            if (state < 0) return false;
        }
        return automaton.CanEnd(state);
    }

    public override string ToString() => $"GBNF grammar, {RuleCount} rules";
}
