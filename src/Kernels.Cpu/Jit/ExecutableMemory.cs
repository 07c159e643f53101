using System.Runtime.InteropServices;

namespace Infer.Kernels.Cpu.Jit;

/// <summary>
/// Pages of generated machine code for the life of the process (a few KiB, made once when the kernel tables are built). Linux only:
/// the pages are mapped writable, filled, then made read + execute (never both writable and executable).
/// </summary>
internal static unsafe partial class ExecutableMemory
{
    private const int ProtRead = 1, ProtWrite = 2, ProtExec = 4;
    private const int MapPrivate = 2, MapAnonymous = 0x20;

    /// <summary>Copies <paramref name="code"/> into new executable pages and returns its address; null where that is refused.</summary>
    public static void* Commit(ReadOnlySpan<byte> code)
    {
        if (!OperatingSystem.IsLinux() || code.IsEmpty) return null;
        long page = Environment.SystemPageSize;
        nuint bytes = (nuint)((code.Length + page - 1) / page * page);
        void* p = mmap(null, bytes, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
        if (p == (void*)-1 || p == null) return null;
        code.CopyTo(new Span<byte>(p, code.Length));
        if (mprotect(p, bytes, ProtRead | ProtExec) != 0)
        {
            _ = munmap(p, bytes);
            return null;
        }
        return p;
    }

    [LibraryImport("libc", EntryPoint = "mmap")]
    private static partial void* mmap(void* addr, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "mprotect")]
    private static partial int mprotect(void* addr, nuint length, int prot);

    [LibraryImport("libc", EntryPoint = "munmap")]
    private static partial int munmap(void* addr, nuint length);
}
