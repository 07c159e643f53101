using System.Text;

namespace Infer.Templates;

/// <summary>Python's arithmetic and comparison operators over template values.</summary>
internal static class Operators
{
    private const long MaxRepeatChars = 16L * 1024 * 1024;

    public static object? Unary(string op, object? v)
    {
        try
        {
            return UnaryCore(op, v);
        }
        catch (OverflowException)
        {
            throw IntegerOverflow();
        }
    }

    /// <summary>Python integers have no limit; ours stop at 64 bits and say so instead of wrapping.</summary>
    private static TemplateRuntimeError IntegerOverflow() => new("OverflowError", "integer result does not fit in 64 bits");

    public static object? Binary(string op, object? a, object? b)
    {
        try
        {
            return BinaryCore(op, a, b);
        }
        catch (OverflowException)
        {
            throw IntegerOverflow();
        }
    }

    private static object? UnaryCore(string op, object? v)
    {
        checked
        {
            if (v is Undefined u) throw u.Fail();
            return (op, v) switch
            {
                ("-", long l) => -l,
                ("-", double d) => -d,
                ("-", bool b) => b ? -1L : 0L,
                ("+", long or double) => v,
                ("+", bool b) => b ? 1L : 0L,
                _ => throw TemplateRuntimeError.Type($"bad operand type for unary {op}: '{Py.TypeName(v)}'"),
            };
        }
    }

    private static object? BinaryCore(string op, object? a, object? b)
    {
        checked
        {
            if (a is Undefined ua) throw ua.Fail();
            if (b is Undefined ub) throw ub.Fail();
            switch (op)
            {
                case "+": return Add(a, b);
                case "-":
                    if (Py.IsNumber(a) && Py.IsNumber(b))
                        return a is double || b is double ? (object)(Py.ToDouble(a) - Py.ToDouble(b)) : (object)(Py.ToLong(a) - Py.ToLong(b));
                    break;
                case "*": return Multiply(a, b);
                case "/":
                    if (Py.IsNumber(a) && Py.IsNumber(b))
                    {
                        double den = Py.ToDouble(b);
                        if (den == 0) throw new TemplateRuntimeError("ZeroDivisionError", "division by zero");
                        return Py.ToDouble(a) / den;
                    }
                    break;
                case "//":
                    if (Py.IsNumber(a) && Py.IsNumber(b))
                    {
                        if (a is double || b is double)
                        {
                            double den = Py.ToDouble(b);
                            if (den == 0) throw new TemplateRuntimeError("ZeroDivisionError", "float floor division by zero");
                            return Math.Floor(Py.ToDouble(a) / den);
                        }
                        long x = Py.ToLong(a), y = Py.ToLong(b);
                        if (y == 0) throw new TemplateRuntimeError("ZeroDivisionError", "integer division or modulo by zero");
                        return FloorDiv(x, y);
                    }
                    break;
                case "%":
                    if (a is string fmt) return PercentFormat(fmt, b);
                    if (a is Markup mfmt) return new Markup(PercentFormat(mfmt.Value, EscapeArgs(b)));
                    if (Py.IsNumber(a) && Py.IsNumber(b))
                    {
                        if (a is double || b is double)
                        {
                            double x = Py.ToDouble(a), y = Py.ToDouble(b);
                            if (y == 0) throw new TemplateRuntimeError("ZeroDivisionError", "float modulo");
                            double r = x % y;
                            if (r != 0 && (r < 0) != (y < 0)) r += y;
                            return r;
                        }
                        long p = Py.ToLong(a), q = Py.ToLong(b);
                        if (q == 0) throw new TemplateRuntimeError("ZeroDivisionError", "integer division or modulo by zero");
                        return p - FloorDiv(p, q) * q;
                    }
                    break;
                case "**":
                    if (Py.IsNumber(a) && Py.IsNumber(b))
                    {
                        if (a is not double && b is not double && Py.ToLong(b) >= 0)
                        {
                            double r = Math.Pow(Py.ToLong(a), Py.ToLong(b));
                            if (Math.Abs(r) >= 9.3e18) throw IntegerOverflow();
                            long result = 1, bas = Py.ToLong(a);
                            for (long e = Py.ToLong(b); e > 0; e--) result *= bas;
                            return result;
                        }
                        return Math.Pow(Py.ToDouble(a), Py.ToDouble(b));
                    }
                    break;
            }
            throw TemplateRuntimeError.Type(
                $"unsupported operand type(s) for {(op == "**" ? "** or pow()" : op)}: '{Py.TypeName(a)}' and '{Py.TypeName(b)}'");
        }
    }

    /// <summary>A Markup operand as is; a plain str operand HTML-escaped, as Markup.__add__ does.</summary>
    private static string MarkupText(object? v) => v is Markup m ? m.Value : Markup.Escape((string)v!);

    private static long FloorDiv(long x, long y)
    {
        checked
        {
            long q = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
            return q;
        }
    }

    private static object? Add(object? a, object? b)
    {
        checked
        {
            if (a is Markup || b is Markup)
            {
                if (a is (string or Markup) && b is (string or Markup))
                    return new Markup(string.Concat(MarkupText(a), MarkupText(b)));
                throw TemplateRuntimeError.Type($"unsupported operand type(s) for +: '{Py.TypeName(a)}' and '{Py.TypeName(b)}'");
            }
            if (Py.IsNumber(a) && Py.IsNumber(b))
                return a is double || b is double ? (object)(Py.ToDouble(a) + Py.ToDouble(b)) : (object)(Py.ToLong(a) + Py.ToLong(b));
            switch (a)
            {
                case string sa when b is string sb: return string.Concat(sa, sb);
                case string: throw TemplateRuntimeError.Type($"can only concatenate str (not \"{Py.TypeName(b)}\") to str");
                case List<object?> la when b is List<object?> lb:
                    {
                        var r = new List<object?>(la.Count + lb.Count);
                        r.AddRange(la);
                        r.AddRange(lb);
                        return r;
                    }
                case List<object?>: throw TemplateRuntimeError.Type($"can only concatenate list (not \"{Py.TypeName(b)}\") to list");
                case PyTuple ta when b is PyTuple tb: return new PyTuple([.. ta.Items, .. tb.Items]);
            }
            throw TemplateRuntimeError.Type($"unsupported operand type(s) for +: '{Py.TypeName(a)}' and '{Py.TypeName(b)}'");
        }
    }

    private static object? Multiply(object? a, object? b)
    {
        checked
        {
            if (a is Markup ma) return new Markup((string)Multiply(ma.Value, b)!);
            if (b is Markup mb) return new Markup((string)Multiply(a, mb.Value)!);
            if (Py.IsNumber(a) && Py.IsNumber(b))
                return a is double || b is double ? (object)(Py.ToDouble(a) * Py.ToDouble(b)) : (object)(Py.ToLong(a) * Py.ToLong(b));
            if (b is string or List<object?> && a is long or bool) (a, b) = (b, a);
            if (a is string s && b is long or bool)
            {
                long n = Py.ToLong(b);
                if (n <= 0) return "";
                if (s.Length * n > MaxRepeatChars) throw new TemplateRuntimeError("MemoryError", $"string repeated {n} times is too long");
                var sb = new StringBuilder((int)(s.Length * n));
                for (long i = 0; i < n; i++) sb.Append(s);
                return sb.ToString();
            }
            if (a is List<object?> l && b is long or bool)
            {
                long n = Py.ToLong(b);
                var r = new List<object?>();
                if (n <= 0) return r;
                if (l.Count * n > MaxRepeatChars) throw new TemplateRuntimeError("MemoryError", $"list repeated {n} times is too long");
                for (long i = 0; i < n; i++) r.AddRange(l);
                return r;
            }
            if (a is string or List<object?> or PyTuple || b is string or List<object?> or PyTuple)
            {
                var other = a is string or List<object?> or PyTuple ? b : a;
                throw TemplateRuntimeError.Type($"can't multiply sequence by non-int of type '{Py.TypeName(other)}'");
            }
            throw TemplateRuntimeError.Type($"unsupported operand type(s) for *: '{Py.TypeName(a)}' and '{Py.TypeName(b)}'");
        }
    }

    private static object? EscapeArgs(object? args) => args switch
    {
        string s => Markup.Escape(s),
        PyTuple t => new PyTuple(t.Items.Select(x => x is string s ? (object?)Markup.Escape(s) : x).ToArray()),
        _ => args,
    };

    public static bool Compare(string op, object? a, object? b) => op switch
    {
        "==" => Py.Equal(a, b),
        "!=" => !Py.Equal(a, b),
        "<" => Py.Compare(a, b, op) < 0,
        "<=" => Py.Compare(a, b, op) <= 0,
        ">" => Py.Compare(a, b, op) > 0,
        ">=" => Py.Compare(a, b, op) >= 0,
        "in" => Py.Contains(b, a),
        "not in" => !Py.Contains(b, a),
        _ => throw new InvalidOperationException(op),
    };

    /// <summary>printf-style <c>"%s %d" % args</c> for the common conversions.</summary>
    public static string PercentFormat(string fmt, object? args)
    {
        var values = args is PyTuple t ? t.Items : [args];
        int next = 0;
        var sb = new StringBuilder();
        for (int i = 0; i < fmt.Length; i++)
        {
            char c = fmt[i];
            if (c != '%')
            {
                sb.Append(c);
                continue;
            }
            if (++i >= fmt.Length) throw TemplateRuntimeError.Value("incomplete format");
            int specStart = i;
            while (i < fmt.Length && "-+ #0123456789.".Contains(fmt[i])) i++;
            if (i >= fmt.Length) throw TemplateRuntimeError.Value("incomplete format");
            string spec = fmt[specStart..i];
            char conv = fmt[i];
            if (conv == '%')
            {
                sb.Append('%');
                continue;
            }
            if (next >= values.Length) throw TemplateRuntimeError.Type("not enough arguments for format string");
            var v = values[next++];
            string text = conv switch
            {
                's' => Py.Str(v),
                'r' => Py.Repr(v),
                'd' or 'i' => Py.IsNumber(v) ? ((long)Math.Truncate(Py.ToDouble(v))).ToString(System.Globalization.CultureInfo.InvariantCulture)
                    : throw TemplateRuntimeError.Type($"%{conv} format: a real number is required, not {Py.TypeName(v)}"),
                'f' or 'F' => FixedPoint(Py.ToDouble(v), PrecisionOf(spec, 6)),
                'x' => IntegerOf(v, conv).ToString("x", System.Globalization.CultureInfo.InvariantCulture),
                'X' => IntegerOf(v, conv).ToString("X", System.Globalization.CultureInfo.InvariantCulture),
                'o' => Convert.ToString(IntegerOf(v, conv), 8),
                _ => throw TemplateRuntimeError.Value($"unsupported format character '{conv}'"),
            };
            int dot = spec.IndexOf('.');
            var widthText = (dot >= 0 ? spec[..dot] : spec).TrimStart('-', '+', ' ', '#', '0');
            if (widthText.Length > 0 && int.TryParse(widthText, out int width) && width <= 4096)
                text = spec.StartsWith('-') ? text.PadRight(width) : text.PadLeft(width, spec.StartsWith('0') && conv != 's' ? '0' : ' ');
            sb.Append(text);
        }
        if (next < values.Length && args is not PyDict) throw TemplateRuntimeError.Type("not all arguments converted during string formatting");
        return sb.ToString();
    }

    private static long IntegerOf(object? v, char conv) => v is long or bool
        ? Py.ToLong(v)
        : throw TemplateRuntimeError.Type($"%{conv} format: an integer is required, not {Py.TypeName(v)}");

    /// <summary>%.Nf as Python prints it: the double rounded half-to-even at N decimals.</summary>
    private static string FixedPoint(double v, int precision) =>
        double.IsFinite(v)
            ? Math.Round(v, Math.Min(precision, 15), MidpointRounding.ToEven)
                .ToString("F" + precision, System.Globalization.CultureInfo.InvariantCulture)
            : Py.FloatRepr(v);

    private static int PrecisionOf(string spec, int fallback)
    {
        int dot = spec.IndexOf('.');
        return dot >= 0 && int.TryParse(spec[(dot + 1)..], out int p) && p <= 100 ? p : fallback;
    }
}
