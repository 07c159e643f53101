using System.Runtime.InteropServices;

namespace Infer.Kernels.Cpu.Backend;

/// <summary>
/// Advice to the Linux kernel about the backend's memory (madvise(2)); elsewhere, and where the kernel refuses, nothing happens:
/// the advice only changes how much memory is resident, never what it holds.
/// </summary>
internal static unsafe partial class MemoryAdvice
{
    private const int MadvDontNeed = 4;

    /// <summary>
    /// Drops this process's pages of [p, p + bytes) of a read-only file mapping (whole pages inside the range): they stop counting as
    /// resident, stay in the page cache, and come back on the next read. Never for anonymous memory, whose contents it discards.
    /// </summary>
    public static void ReleaseMapped(void* p, long bytes)
    {
        if (!OperatingSystem.IsLinux() || bytes <= 0) return;
        long page = Environment.SystemPageSize;
        long start = ((long)p + page - 1) / page * page, end = ((long)p + bytes) / page * page;
        if (end > start) _ = madvise((void*)start, (nuint)(end - start), MadvDontNeed);
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int madvise(void* addr, nuint length, int advice);
}
