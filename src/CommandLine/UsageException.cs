namespace Infer.CommandLine;

/// <summary>A command-line usage error: printed as one line naming the command, exit code <see cref="ExitCodes.Usage"/>.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>The exit codes the executables use (backend-ops adds 4: no such device).</summary>
public static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>A bad model or input file, a download that failed, an input the model cannot take.</summary>
    public const int BadInput = 1;

    /// <summary>The command line itself: an unknown option, a missing or malformed value.</summary>
    public const int Usage = 2;

    /// <summary>A bug: an exception nobody expected.</summary>
    public const int Internal = 3;

    /// <summary>Ctrl+C (128 + SIGINT, as shells report it).</summary>
    public const int Cancelled = 130;
}
