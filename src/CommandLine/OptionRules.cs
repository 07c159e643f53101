using System.CommandLine;

namespace Infer.CommandLine;

/// <summary>Checks on option values that become usage errors (exit 2) at parse time, before anything runs.</summary>
public static class OptionRules
{
    /// <summary>Adds a check: <paramref name="problem"/> returns the message for a bad value, null for a good one.</summary>
    public static Option<T> Check<T>(this Option<T> option, Func<T, string?> problem)
    {
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count == 0) return;
            T value;
            try
            {
                value = result.GetValueOrDefault<T>();
            }
            catch (InvalidOperationException)
            {
                return; // the value did not convert: that error is reported already
            }
            if (problem(value) is { } message) result.AddError(message);
        });
        return option;
    }

    /// <summary>Suggests <paramref name="values"/> for tab completion (without restricting what is accepted).</summary>
    public static Option<T> Suggest<T>(this Option<T> option, params string[] values)
    {
        option.CompletionSources.Add(values);
        return option;
    }
}
