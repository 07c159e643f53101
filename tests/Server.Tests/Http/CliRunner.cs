namespace Infer.Cli.Tests;

/// <summary>Runs `infer` in-process with captured output.</summary>
internal static class CliRunner
{
    public static (int Code, string Out, string Err) Infer(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }
}
