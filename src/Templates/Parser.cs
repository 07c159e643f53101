using System.Runtime.CompilerServices;

namespace Infer.Templates;

/// <summary>Recursive-descent parser for Jinja2 statements and expressions, following jinja2/parser.py's precedence.</summary>
internal sealed class Parser
{
    private readonly List<Token> _tokens;
    private int _pos;
    private int _namesVarargs;
    private int _namesKwargs;

    // Jinja2 rejects an unknown filter or test when it compiles the template, unless the use sits directly in an
    // if statement or an inline if expression ("soft" frames); there it fails only when evaluated.
    private readonly List<(string Name, int Line, bool IsFilter, bool Soft)> _references = [];
    private bool _soft;

    // Names each frame (template, loop body, macro body, filter/set/call block) assigns outside if blocks.
    private HashSet<string> _frameStores = new(StringComparer.Ordinal);
    private int _ifNesting;

    // The open blocks (innermost last) and the end tags the innermost body is waiting for, for error messages.
    private readonly List<(string Name, int Line)> _openBlocks = [];
    private string[] _endTags = [];

    private Parser(List<Token> tokens) => _tokens = tokens;

    /// <summary>Parses a template; <paramref name="rootStores"/> receives the names its top level assigns.</summary>
    public static List<Stmt> Parse(string source, out HashSet<string> rootStores)
    {
        var parser = new Parser(Lexer.Tokenize(source));
        List<Stmt> body;
        try
        {
            body = parser.ParseBody([], out _);
        }
        catch (InsufficientExecutionStackException)
        {
            throw Error("template nests too deeply", parser.Current.Line, "template");
        }
        parser.CheckReferences();
        rootStores = parser._frameStores;
        return body;
    }

    private void CheckReferences()
    {
        foreach (var (name, line, isFilter, soft) in _references)
        {
            if (soft) continue;
            bool known = isFilter ? Builtins.Filters.ContainsKey(name) : Builtins.Tests.ContainsKey(name);
            if (!known)
            {
                throw new TemplateException("TemplateAssertionError", $"No {(isFilter ? "filter" : "test")} named '{name}'.", line,
                    isFilter ? "filter" : "test");
            }
        }
    }

    /// <summary>Parses the body of a new frame; returns what it assigns.</summary>
    private T InFrame<T>(Func<T> parse, out HashSet<string> stores)
    {
        var (savedStores, savedIf) = (_frameStores, _ifNesting);
        _frameStores = new HashSet<string>(StringComparer.Ordinal);
        _ifNesting = 0;
        try
        {
            return parse();
        }
        finally
        {
            stores = _frameStores;
            (_frameStores, _ifNesting) = (savedStores, savedIf);
        }
    }

    private void RecordStore(Target target)
    {
        if (_ifNesting > 0) return;
        switch (target)
        {
            case NameTarget n: _frameStores.Add(n.Name); break;
            case TupleTarget t: foreach (var item in t.Items) RecordStore(item); break;
        }
    }

    /// <summary>Parses with the soft flag set or cleared, restoring it after.</summary>
    private T WithSoft<T>(bool soft, Func<T> parse)
    {
        bool saved = _soft;
        _soft = soft;
        try
        {
            return parse();
        }
        finally
        {
            _soft = saved;
        }
    }

    private Token Current => _tokens[_pos];

    private Token Peek(int n = 1) => _tokens[Math.Min(_pos + n, _tokens.Count - 1)];

    private Token Next() => _tokens[_pos < _tokens.Count - 1 ? _pos++ : _pos];

    private static TemplateException Error(string message, int line, string construct) =>
        new("TemplateSyntaxError", message, line, construct);

    private Token Expect(TokenKind kind, string? value, string construct)
    {
        var t = Current;
        if (t.Kind != kind || (value is not null && t.Value != value))
        {
            string want = value is not null ? $"'{value}'" : kind switch
            {
                TokenKind.Name => "name",
                TokenKind.BlockEnd => "end of statement block",
                TokenKind.VarEnd => "end of print statement",
                _ => kind.ToString(),
            };
            throw Error($"expected token {want}, got {t.Describe()}", t.Line, construct);
        }
        return Next();
    }

    private void ExpectOp(string op, string construct) => Expect(TokenKind.Operator, op, construct);

    private bool SkipOp(string op)
    {
        if (!Current.IsOp(op)) return false;
        _pos++;
        return true;
    }

    private bool SkipName(string name)
    {
        if (!Current.IsName(name)) return false;
        _pos++;
        return true;
    }

    /// <summary>
    /// Parses statements until one of <paramref name="endTags"/> opens a block (left unconsumed: the tag name is in
    /// <paramref name="endTag"/>).
    /// </summary>
    private List<Stmt> ParseBody(string[] endTags, out string? endTag)
    {
        var savedEndTags = _endTags;
        _endTags = endTags;
        try
        {
            return ParseBodyCore(endTags, out endTag);
        }
        finally
        {
            _endTags = savedEndTags;
        }
    }

    /// <summary>What the innermost open block waits for; <paramref name="skip"/> leaves out the tag being parsed.</summary>
    private string LookingFor(int skip = 0)
    {
        if (_endTags.Length == 0 || _openBlocks.Count <= skip) return "";
        var (name, line) = _openBlocks[^(1 + skip)];
        return $" Jinja was looking for the following tags: {string.Join(" or ", _endTags.Select(e => $"'{e}'"))}." +
               $" The innermost block that needs to be closed is '{name}' (opened on line {line}).";
    }

    private List<Stmt> ParseBodyCore(string[] endTags, out string? endTag)
    {
        var body = new List<Stmt>();
        while (true)
        {
            var t = Current;
            switch (t.Kind)
            {
                case TokenKind.Eof:
                    if (endTags.Length > 0)
                        throw Error("Unexpected end of template." + LookingFor(), t.Line, _openBlocks.Count > 0 ? _openBlocks[^1].Name : endTags[0]);
                    endTag = null;
                    return body;
                case TokenKind.Text:
                    Next();
                    body.Add(new TextStmt(t.Line, t.Value));
                    break;
                case TokenKind.VarBegin:
                    {
                        Next();
                        var e = ParseTuple(allowCond: true, construct: "{{ ... }}");
                        Expect(TokenKind.VarEnd, null, "{{ ... }}");
                        body.Add(new OutputStmt(t.Line, e));
                        break;
                    }
                case TokenKind.BlockBegin:
                    {
                        var name = Peek();
                        if (name.Kind != TokenKind.Name) throw Error("tag name expected", name.Line, "statement");
                        if (endTags.Contains(name.Value))
                        {
                            Next();
                            endTag = name.Value;
                            return body;
                        }
                        Next();
                        Next();
                        body.Add(ParseStatement(name));
                        break;
                    }
                default:
                    throw Error($"unexpected {t.Describe()}", t.Line, "template");
            }
        }
    }

    private void EndTag(string construct) => Expect(TokenKind.BlockEnd, null, construct);

    /// <summary>After ParseBody stopped on an end tag: consumes the tag name and the closing %}.</summary>
    private void CloseTag(string construct)
    {
        Next();
        EndTag(construct);
    }

    private Stmt ParseStatement(Token tag)
    {
        _openBlocks.Add((tag.Value, tag.Line));
        try
        {
            return ParseStatementCore(tag);
        }
        finally
        {
            _openBlocks.RemoveAt(_openBlocks.Count - 1);
        }
    }

    private Stmt ParseStatementCore(Token tag)
    {
        switch (tag.Value)
        {
            case "if": return ParseIf(tag);
            case "for": return ParseFor(tag);
            case "set": return ParseSet(tag);
            case "macro": return ParseMacro(tag);
            case "call": return ParseCallBlock(tag);
            case "filter": return ParseFilterBlock(tag);
            case "with": return ParseWith(tag);
            case "break":
                EndTag("break");
                return new BreakStmt(tag.Line);
            case "continue":
                EndTag("continue");
                return new ContinueStmt(tag.Line);
            case "generation":
                {
                    // transformers' generation tag marks assistant spans; it renders its body unchanged.
                    EndTag("generation");
                    var body = ParseBody(["endgeneration"], out _);
                    CloseTag("generation");
                    return new IfStmt(tag.Line, [(new ConstExpr(tag.Line, true), body)], null);
                }
            default:
                throw Error($"Encountered unknown tag '{tag.Value}'." + LookingFor(skip: 1), tag.Line, tag.Value);
        }
    }

    private Stmt ParseIf(Token tag)
    {
        _ifNesting++;
        try
        {
            return WithSoft(true, () => ParseIfCore(tag));
        }
        finally
        {
            _ifNesting--;
        }
    }

    private Stmt ParseIfCore(Token tag)
    {
        var branches = new List<(Expr, List<Stmt>)>();
        List<Stmt>? otherwise = null;
        var test = ParseTuple(allowCond: true, construct: "if");
        EndTag("if");
        while (true)
        {
            var body = ParseBody(["elif", "else", "endif"], out var end);
            branches.Add((test, body));
            if (end == "elif")
            {
                Next();
                test = ParseTuple(allowCond: true, construct: "elif");
                EndTag("elif");
                continue;
            }
            if (end == "else")
            {
                CloseTag("else");
                otherwise = ParseBody(["endif"], out _);
            }
            CloseTag("endif");
            return new IfStmt(tag.Line, branches, otherwise);
        }
    }

    private Stmt ParseFor(Token tag)
    {
        var target = ParseAssignTarget("for", allowAttr: false);
        Expect(TokenKind.Name, "in", "for");
        var iter = ParseTuple(allowCond: false, construct: "for");
        Expr? filter = null;
        if (SkipName("if")) filter = ParseExpression(allowCond: true, "for");
        if (Current.IsName("recursive"))
            throw Error("recursive for loops are not supported", Current.Line, "for");
        EndTag("for");
        List<Stmt>? otherwise = null;
        var body = InFrame(() =>
        {
            string? end = null;
            var b = WithSoft(false, () => ParseBody(["endfor", "else"], out end));
            if (end == "else")
            {
                CloseTag("else");
                otherwise = WithSoft(false, () => ParseBody(["endfor"], out _));
            }
            return b;
        }, out var stores);
        CloseTag("endfor");
        return new ForStmt(tag.Line, target, iter, filter, body, otherwise, stores);
    }

    private Stmt ParseSet(Token tag)
    {
        var target = ParseAssignTarget("set", allowAttr: true);
        if (SkipOp("="))
        {
            var value = ParseTuple(allowCond: true, construct: "set");
            EndTag("set");
            RecordStore(target);
            return new SetStmt(tag.Line, target, value);
        }
        var filters = new List<FilterExpr>();
        while (SkipOp("|")) filters.Add(ParseFilterCall(null, "set"));
        EndTag("set");
        var body = InFrame(() => ParseBody(["endset"], out _), out var stores);
        CloseTag("endset");
        RecordStore(target);
        return new SetBlockStmt(tag.Line, target, filters, body, stores);
    }

    private Stmt ParseFilterBlock(Token tag)
    {
        var filters = new List<FilterExpr>();
        do filters.Add(ParseFilterCall(null, "filter"));
        while (SkipOp("|"));
        EndTag("filter");
        var body = InFrame(() => ParseBody(["endfilter"], out _), out var stores);
        CloseTag("endfilter");
        return new FilterBlockStmt(tag.Line, filters, body, stores);
    }

    private Stmt ParseWith(Token tag)
    {
        var targets = new List<(Target, Expr)>();
        while (!Current.Is(TokenKind.BlockEnd, "%}"))
        {
            if (targets.Count > 0) ExpectOp(",", "with");
            var target = ParseAssignTarget("with", allowAttr: false);
            ExpectOp("=", "with");
            targets.Add((target, ParseExpression(allowCond: true, "with")));
        }
        EndTag("with");
        var body = InFrame(() => WithSoft(false, () => ParseBody(["endwith"], out _)), out var stores);
        CloseTag("endwith");
        return new WithStmt(tag.Line, targets, body, stores);
    }

    private Stmt ParseMacro(Token tag)
    {
        var name = Expect(TokenKind.Name, null, "macro").Value;
        var parameters = new List<(string, Expr?)>();
        ExpectOp("(", "macro");
        while (!Current.IsOp(")"))
        {
            if (parameters.Count > 0) ExpectOp(",", "macro");
            if (Current.IsOp(")")) break;
            var pname = Expect(TokenKind.Name, null, "macro").Value;
            Expr? def = null;
            if (SkipOp("=")) def = ParseExpression(allowCond: true, "macro");
            else if (parameters.Count > 0 && parameters[^1].Item2 is not null)
                throw Error("non-default argument follows default argument", tag.Line, "macro");
            parameters.Add((pname, def));
        }
        ExpectOp(")", "macro");
        EndTag("macro");
        int varargsBefore = _namesVarargs, kwargsBefore = _namesKwargs;
        var body = InFrame(() => WithSoft(false, () => ParseBody(["endmacro"], out _)), out var stores);
        CloseTag("endmacro");
        RecordStore(new NameTarget(name));
        var macro = new Macro(name, parameters, body, tag.Line, stores)
        {
            ReferencesVarargs = _namesVarargs > varargsBefore,
            ReferencesKwargs = _namesKwargs > kwargsBefore,
        };
        return new MacroStmt(tag.Line, macro);
    }

    private Stmt ParseCallBlock(Token tag)
    {
        if (Current.IsOp("(")) throw Error("call blocks with caller arguments are not supported", tag.Line, "call");
        var expr = ParseExpression(allowCond: true, "call");
        if (expr is not CallExpr call) throw Error("expected call", tag.Line, "call");
        EndTag("call");
        var body = InFrame(() => WithSoft(false, () => ParseBody(["endcall"], out _)), out var stores);
        CloseTag("endcall");
        return new CallBlockStmt(tag.Line, call, body, stores);
    }

    private Target ParseAssignTarget(string construct, bool allowAttr)
    {
        var items = new List<Target>();
        bool paren = SkipOp("(");
        do
        {
            if (paren && Current.IsOp(")")) break;
            var name = Expect(TokenKind.Name, null, construct).Value;
            if (allowAttr && Current.IsOp("."))
            {
                Next();
                var attr = Expect(TokenKind.Name, null, construct).Value;
                items.Add(new AttrTarget(name, attr));
            }
            else
            {
                if (name is "true" or "false" or "none" or "True" or "False" or "None")
                    throw Error($"can't assign to {name}", Current.Line, construct);
                items.Add(new NameTarget(name));
            }
        }
        while (SkipOp(","));
        if (paren) ExpectOp(")", construct);
        return items.Count == 1 && !paren ? items[0] : new TupleTarget(items.ToArray());
    }

    // ---- expressions -------------------------------------------------------------------------

    /// <summary>An expression or a bare tuple (<c>a, b</c>).</summary>
    private Expr ParseTuple(bool allowCond, string construct)
    {
        int line = Current.Line;
        var first = ParseExpression(allowCond, construct);
        if (!Current.IsOp(",")) return first;
        var items = new List<Expr> { first };
        while (SkipOp(","))
        {
            if (IsTupleEnd()) break;
            items.Add(ParseExpression(allowCond, construct));
        }
        return new TupleExpr(line, items);
    }

    private bool IsTupleEnd()
    {
        var t = Current;
        return t.Kind is TokenKind.VarEnd or TokenKind.BlockEnd or TokenKind.Eof || t.IsOp(")")
            || (t.Kind == TokenKind.Name && t.Value is "if" or "in");
    }

    private const int MaxNesting = 200;
    private int _nesting;

    private void Enter(string construct)
    {
        if (++_nesting > MaxNesting) throw Error($"expression nests deeper than {MaxNesting} levels", Current.Line, construct);
    }

    private Expr ParseExpression(bool allowCond, string construct)
    {
        Enter(construct);
        try
        {
            return ParseExpressionCore(allowCond, construct);
        }
        finally
        {
            _nesting--;
        }
    }

    private Expr ParseExpressionCore(bool allowCond, string construct)
    {
        int mark = _references.Count;
        var expr = ParseOr(construct);
        if (!allowCond) return expr;
        while (Current.IsName("if"))
        {
            int line = Next().Line;
            for (int i = mark; i < _references.Count; i++) _references[i] = _references[i] with { Soft = true };
            var test = WithSoft(true, () => ParseOr(construct));
            Expr? otherwise = null;
            if (SkipName("else")) otherwise = WithSoft(true, () => ParseExpression(allowCond: true, construct));
            expr = new CondExpr(line, test, expr, otherwise);
        }
        return expr;
    }

    private Expr ParseOr(string c)
    {
        var left = ParseAnd(c);
        while (Current.IsName("or"))
        {
            int line = Next().Line;
            left = new OrExpr(line, left, ParseAnd(c));
        }
        return left;
    }

    private Expr ParseAnd(string c)
    {
        var left = ParseNot(c);
        while (Current.IsName("and"))
        {
            int line = Next().Line;
            left = new AndExpr(line, left, ParseNot(c));
        }
        return left;
    }

    private Expr ParseNot(string c)
    {
        if (Current.IsName("not"))
        {
            int line = Next().Line;
            Enter(c);
            try
            {
                return new NotExpr(line, ParseNot(c));
            }
            finally
            {
                _nesting--;
            }
        }
        return ParseCompare(c);
    }

    private Expr ParseCompare(string c)
    {
        int line = Current.Line;
        var first = ParseMath1(c);
        List<(string, Expr)>? rest = null;
        while (true)
        {
            var t = Current;
            string? op = null;
            if (t.Kind == TokenKind.Operator && t.Value is "==" or "!=" or "<" or "<=" or ">" or ">=") op = t.Value;
            else if (t.IsName("in")) op = "in";
            else if (t.IsName("not") && Peek().IsName("in")) op = "not in";
            if (op is null) break;
            Next();
            if (op == "not in") Next();
            (rest ??= []).Add((op, ParseMath1(c)));
        }
        return rest is null ? first : new CompareExpr(line, first, rest);
    }

    private Expr ParseMath1(string c)
    {
        var left = ParseConcat(c);
        while (Current.Kind == TokenKind.Operator && Current.Value is "+" or "-")
        {
            var op = Next();
            left = new BinaryExpr(op.Line, op.Value, left, ParseConcat(c));
        }
        return left;
    }

    private Expr ParseConcat(string c)
    {
        int line = Current.Line;
        var first = ParseMath2(c);
        if (!Current.IsOp("~")) return first;
        var parts = new List<Expr> { first };
        while (SkipOp("~")) parts.Add(ParseMath2(c));
        return new ConcatExpr(line, parts);
    }

    private Expr ParseMath2(string c)
    {
        var left = ParsePow(c);
        while (Current.Kind == TokenKind.Operator && Current.Value is "*" or "/" or "//" or "%")
        {
            var op = Next();
            left = new BinaryExpr(op.Line, op.Value, left, ParsePow(c));
        }
        return left;
    }

    private Expr ParsePow(string c)
    {
        var left = ParseUnary(c, withFilter: true);
        while (Current.IsOp("**"))
        {
            var op = Next();
            left = new BinaryExpr(op.Line, "**", left, ParseUnary(c, withFilter: true));
        }
        return left;
    }

    private Expr ParseUnary(string c, bool withFilter)
    {
        var t = Current;
        Expr node;
        if (t.IsOp("-") || t.IsOp("+"))
        {
            Next();
            Enter(c);
            try
            {
                node = new UnaryExpr(t.Line, t.Value, ParseUnary(c, withFilter: false));
            }
            finally
            {
                _nesting--;
            }
        }
        else
        {
            node = ParsePrimary(c);
        }
        node = ParsePostfix(node, c);
        if (withFilter) node = ParseFilterTestChain(node, c);
        return node;
    }

    private Expr ParsePrimary(string c)
    {
        RuntimeHelpers.EnsureSufficientExecutionStack();
        var t = Current;
        switch (t.Kind)
        {
            case TokenKind.Name:
                Next();
                switch (t.Value)
                {
                    case "true" or "True": return new ConstExpr(t.Line, true);
                    case "false" or "False": return new ConstExpr(t.Line, false);
                    case "none" or "None": return new ConstExpr(t.Line, null);
                }
                if (t.Value == "varargs") _namesVarargs++;
                if (t.Value == "kwargs") _namesKwargs++;
                return new NameExpr(t.Line, t.Value);
            case TokenKind.String:
                {
                    Next();
                    var s = (string)t.Literal!;
                    while (Current.Kind == TokenKind.String) s += (string)Next().Literal!;
                    return new ConstExpr(t.Line, s);
                }
            case TokenKind.Integer:
            case TokenKind.Float:
                Next();
                return new ConstExpr(t.Line, t.Literal);
            case TokenKind.Operator when t.Value == "(":
                {
                    Next();
                    if (SkipOp(")")) return new TupleExpr(t.Line, []);
                    var first = ParseExpression(allowCond: true, c);
                    if (SkipOp(")")) return first;
                    var items = new List<Expr> { first };
                    while (SkipOp(","))
                    {
                        if (Current.IsOp(")")) break;
                        items.Add(ParseExpression(allowCond: true, c));
                    }
                    ExpectOp(")", c);
                    return new TupleExpr(t.Line, items);
                }
            case TokenKind.Operator when t.Value == "[":
                {
                    Next();
                    var items = new List<Expr>();
                    while (!Current.IsOp("]"))
                    {
                        if (items.Count > 0) ExpectOp(",", c);
                        if (Current.IsOp("]")) break;
                        items.Add(ParseExpression(allowCond: true, c));
                    }
                    ExpectOp("]", c);
                    return new ListExpr(t.Line, items);
                }
            case TokenKind.Operator when t.Value == "{":
                {
                    Next();
                    var pairs = new List<(Expr, Expr)>();
                    while (!Current.IsOp("}"))
                    {
                        if (pairs.Count > 0) ExpectOp(",", c);
                        if (Current.IsOp("}")) break;
                        var k = ParseExpression(allowCond: true, c);
                        ExpectOp(":", c);
                        pairs.Add((k, ParseExpression(allowCond: true, c)));
                    }
                    ExpectOp("}", c);
                    return new DictExpr(t.Line, pairs);
                }
            default:
                if (t.Kind is TokenKind.BlockEnd or TokenKind.VarEnd or TokenKind.Eof)
                    throw Error($"Expected an expression, got {t.Describe()}", t.Line, c);
                throw Error($"unexpected {t.Describe()}", t.Line, c);
        }
    }

    private Expr ParsePostfix(Expr node, string c)
    {
        while (true)
        {
            var t = Current;
            if (t.IsOp("."))
            {
                Next();
                var attr = Next();
                if (attr.Kind == TokenKind.Name) node = new GetAttrExpr(t.Line, node, attr.Value);
                else if (attr.Kind == TokenKind.Integer) node = new GetItemExpr(t.Line, node, new ConstExpr(t.Line, attr.Literal));
                else throw Error($"expected name or number after '.', got {attr.Describe()}", attr.Line, c);
            }
            else if (t.IsOp("["))
            {
                Next();
                node = ParseSubscript(node, t.Line, c);
            }
            else if (t.IsOp("("))
            {
                Next();
                node = new CallExpr(t.Line, node, ParseArgs(c));
            }
            else
            {
                return node;
            }
        }
    }

    private Expr ParseSubscript(Expr target, int line, string c)
    {
        Expr? start = null, stop = null, step = null;
        if (!Current.IsOp(":")) start = ParseExpression(allowCond: true, c);
        if (!SkipOp(":"))
        {
            if (Current.IsOp(","))
            {
                var items = new List<Expr> { start! };
                while (SkipOp(",") && !Current.IsOp("]")) items.Add(ParseExpression(allowCond: true, c));
                ExpectOp("]", c);
                return new GetItemExpr(line, target, new TupleExpr(line, items));
            }
            ExpectOp("]", c);
            return new GetItemExpr(line, target, start!);
        }
        if (!Current.IsOp("]") && !Current.IsOp(":")) stop = ParseExpression(allowCond: true, c);
        if (SkipOp(":") && !Current.IsOp("]")) step = ParseExpression(allowCond: true, c);
        ExpectOp("]", c);
        return new SliceExpr(line, target, start, stop, step);
    }

    /// <summary>Arguments after an opening parenthesis, through the closing one.</summary>
    private ArgList ParseArgs(string c)
    {
        var positional = new List<Expr>();
        var keywords = new List<(string, Expr)>();
        while (!Current.IsOp(")"))
        {
            if (positional.Count + keywords.Count > 0)
            {
                ExpectOp(",", c);
                if (Current.IsOp(")")) break;
            }
            if (Current.IsOp("*") || Current.IsOp("**"))
                throw Error("*args and **kwargs in calls are not supported", Current.Line, c);
            if (Current.Kind == TokenKind.Name && Peek().IsOp("="))
            {
                var name = Next().Value;
                Next();
                keywords.Add((name, ParseExpression(allowCond: true, c)));
            }
            else
            {
                if (keywords.Count > 0) throw Error("positional argument follows keyword argument", Current.Line, c);
                positional.Add(ParseExpression(allowCond: true, c));
            }
        }
        ExpectOp(")", c);
        return positional.Count == 0 && keywords.Count == 0 ? ArgList.None : new ArgList(positional, keywords);
    }

    private Expr ParseFilterTestChain(Expr node, string c)
    {
        while (true)
        {
            var t = Current;
            if (t.IsOp("|"))
            {
                Next();
                node = ParseFilterCall(node, c);
            }
            else if (t.IsName("is"))
            {
                Next();
                node = ParseTest(node, t.Line, c);
            }
            else if (t.IsOp("("))
            {
                Next();
                node = new CallExpr(t.Line, node, ParseArgs(c));
            }
            else
            {
                return node;
            }
        }
    }

    private FilterExpr ParseFilterCall(Expr? value, string c)
    {
        var nameTok = Expect(TokenKind.Name, null, c);
        var name = nameTok.Value;
        while (Current.IsOp(".") && Peek().Kind == TokenKind.Name)
        {
            Next();
            name += "." + Next().Value;
        }
        _references.Add((name, nameTok.Line, true, _soft));
        var args = SkipOp("(") ? ParseArgs(c) : ArgList.None;
        return new FilterExpr(nameTok.Line, value, name, args);
    }

    private Expr ParseTest(Expr value, int line, string c)
    {
        bool negated = SkipName("not");
        var nameTok = Expect(TokenKind.Name, null, c);
        var name = nameTok.Value;
        while (Current.IsOp(".") && Peek().Kind == TokenKind.Name)
        {
            Next();
            name += "." + Next().Value;
        }
        _references.Add((name, nameTok.Line, false, _soft));
        ArgList args = ArgList.None;
        var t = Current;
        if (t.IsOp("("))
        {
            Next();
            args = ParseArgs(c);
        }
        else if ((t.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float || t.IsOp("[") || t.IsOp("{"))
                 && !(t.Kind == TokenKind.Name && t.Value is "else" or "or" or "and"))
        {
            if (t.IsName("is")) throw Error("You cannot chain multiple tests with is", t.Line, c);
            var arg = ParsePostfix(ParsePrimary(c), c);
            args = new ArgList([arg], []);
        }
        Expr test = new TestExpr(line, value, name, args);
        return negated ? new NotExpr(line, test) : test;
    }
}
