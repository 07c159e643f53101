using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Text.RegularExpressions;

namespace Infer.CommandLine;

/// <summary>
/// Runs a System.CommandLine command tree the way the executables behave: <c>--help</c> for every command on stdout; one
/// line on stderr naming the command and the problem for a usage error (exit 2); exceptions turned into one line and an exit
/// code (<see cref="ExitCodes"/>); the <c>[suggest]</c> directive for shell completion. Response files are off: a prompt may
/// start with '@'.
/// </summary>
public static partial class CommandLineApp
{
    /// <summary>
    /// Parses <paramref name="args"/> against <paramref name="root"/> and runs the chosen command's action; messages name
    /// the executable <paramref name="tool"/>. <paramref name="isBadInput"/> says which exceptions are the user's input or
    /// file (exit 1) rather than a bug (exit 3).
    /// </summary>
    public static int Run(RootCommand root, string tool, string[] args, TextWriter stdout, TextWriter stderr, Func<Exception, bool> isBadInput,
        Option<bool>? verbose = null) =>
        Run(root, tool, args, stdout, stderr, e => isBadInput(e) ? ExitCodes.BadInput : null, verbose);

    /// <summary>
    /// As the other overload, with the exit code of each expected exception from <paramref name="exitCodeFor"/> (null for a bug:
    /// "internal error", exit 3).
    /// </summary>
    public static int Run(RootCommand root, string tool, string[] args, TextWriter stdout, TextWriter stderr, Func<Exception, int?> exitCodeFor,
        Option<bool>? verbose = null)
    {
        var result = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
        string name = CommandName(result, tool);
        if (result.Action is ParseErrorAction)
        {
            if (args.Length == 0)
            {
                // The bare executable: its help, and the exit code of a usage error.
                root.Parse(["--help"]).Invoke(new InvocationConfiguration { Output = stdout, Error = stderr });
                return ExitCodes.Usage;
            }
            // An unknown word explains the rest ("missing a command" after a misspelt one): name it first.
            var error = result.Errors.FirstOrDefault(e => Unrecognized().IsMatch(e.Message)) ?? result.Errors[0];
            stderr.WriteLine($"{name}: {Describe(error, result, tool)}");
            return ExitCodes.Usage;
        }
        bool showStack = verbose is not null && result.GetValue(verbose);
        try
        {
            return result.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"{name}: {e.Message}");
            return ExitCodes.Usage;
        }
        catch (OperationCanceledException)
        {
            stderr.WriteLine($"{name}: cancelled");
            return ExitCodes.Cancelled;
        }
        catch (Exception e) when (exitCodeFor(e) is int code)
        {
            stderr.WriteLine($"{name}: error: {e.Message}");
            if (showStack) stderr.WriteLine(e);
            return code;
        }
        catch (Exception e)
        {
            stderr.WriteLine($"{name}: internal error: {e.GetType().Name}: {e.Message}");
            if (showStack) stderr.WriteLine(e);
            return ExitCodes.Internal;
        }
    }

    /// <summary>
    /// "infer run": the executable and the command the arguments reached. The root goes by <paramref name="tool"/>, not
    /// by the process's name (a test host runs the same tree in-process).
    /// </summary>
    private static string CommandName(ParseResult result, string tool)
    {
        var names = new List<string>();
        for (SymbolResult? r = result.CommandResult; r is not null; r = r.Parent)
            if (r is CommandResult c) names.Add(c.Parent is null ? tool : c.Command.Name);
        names.Reverse();
        return string.Join(' ', names);
    }

    /// <summary>A parse error in our words: the option named as it was typed, the value that did not parse, what to run for help.</summary>
    internal static string Describe(ParseError error, ParseResult result, string tool)
    {
        string message = error.Message;
        string help = $"(see '{CommandName(result, tool)} --help')";
        if (Unrecognized().Match(message) is { Success: true } u)
        {
            string token = u.Groups[1].Value;
            if (token.StartsWith('-') && token.Length > 1 && !double.TryParse(token, out _)) return $"unknown option {token} {help}";
            return result.CommandResult.Command is RootCommand ? $"unknown command '{token}' {help}" : $"unexpected argument '{token}' {help}";
        }
        if (MissingValue().Match(message) is { Success: true } m)
            return $"option {m.Groups[1].Value} needs a value {help}";
        if (CannotParse().Match(message) is { Success: true } p)
            return $"{Typed(error) ?? p.Groups[2].Value} expects {TypeName(p.Groups[3].Value)}, got '{p.Groups[1].Value}'";
        if (RequiredOption().Match(message) is { Success: true } r)
            return $"missing {r.Groups[1].Value} {help}";
        if (SingleValue().Match(message) is { Success: true } s)
            return $"{s.Groups[1].Value} is given {s.Groups[2].Value} times; give it once";
        if (MissingArgument().IsMatch(message))
            return $"missing {string.Join(" ", result.CommandResult.Command.Arguments.Select(x => x.HelpName ?? x.Name))} {help}";
        if (message == "Required command was not provided.")
            return $"missing a command {help}";
        return message.TrimEnd('.');
    }

    /// <summary>The option as the user spelt it (-n rather than --n-predict).</summary>
    private static string? Typed(ParseError error) => (error.SymbolResult as OptionResult)?.IdentifierToken?.Value;

    private static string TypeName(string clrType) => clrType switch
    {
        "System.Int32" or "System.Int64" or "System.Nullable`1[System.Int32]" => "an integer",
        "System.UInt64" or "System.UInt32" => "a non-negative integer",
        "System.Single" or "System.Double" => "a number",
        "System.Boolean" => "true or false",
        _ => $"a {clrType}",
    };

    [GeneratedRegex(@"^Unrecognized command or argument '(.*)'\.$")]
    private static partial Regex Unrecognized();

    [GeneratedRegex(@"^Required argument missing for option: '(.*)'\.$")]
    private static partial Regex MissingValue();

    [GeneratedRegex(@"^Cannot parse argument '(.*)' for option '(.*)' as expected type '(.*)'\.$")]
    private static partial Regex CannotParse();

    [GeneratedRegex(@"^Option '(.*)' expects a single argument but (\d+) were provided\.$")]
    private static partial Regex SingleValue();

    [GeneratedRegex(@"^Required argument missing for command: '(.*)'\.$")]
    private static partial Regex MissingArgument();

    [GeneratedRegex(@"^Option '(.*)' is required\.$")]
    private static partial Regex RequiredOption();
}
