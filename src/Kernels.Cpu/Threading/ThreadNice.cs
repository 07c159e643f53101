using System.Runtime.InteropServices;

namespace Infer.Kernels.Cpu.Threading;

/// <summary>Lowers the scheduling priority of the calling thread (Linux: its nice value); elsewhere, or when refused, nothing.</summary>
internal static partial class ThreadNice
{
    private const int PrioProcess = 0;

    /// <summary>Sets the calling thread's nice value to <paramref name="nice"/> (0 normal, 19 lowest); false if it could not.</summary>
    public static bool Lower(int nice)
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            return setpriority(PrioProcess, gettid(), nice) == 0; // with a thread id, Linux sets that thread's priority alone
        }
        catch (EntryPointNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport("libc", EntryPoint = "setpriority")]
    private static partial int setpriority(int which, int who, int prio);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int gettid();
}
