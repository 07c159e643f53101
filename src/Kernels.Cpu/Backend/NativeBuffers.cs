using System.Runtime.InteropServices;

namespace Infer.Kernels.Cpu.Backend;

/// <summary>64-byte aligned native allocations owned by one backend, freed together on dispose.</summary>
internal sealed unsafe partial class NativeBuffers : IDisposable
{
    private const int HugePage = 2 * 1024 * 1024;
    private const int MadvHugePage = 14; // Linux MADV_HUGEPAGE

    private readonly List<nint> _allocations = [];

    /// <summary>
    /// At least 64 bytes, 64-byte aligned, uninitialized. A buffer of at least 2 MiB starts on a 2 MiB boundary and its whole 2 MiB
    /// spans are marked for transparent huge pages (Linux; the tail keeps 4 KiB pages, so no memory is added): decode streams every
    /// weight once per token, and with 4 KiB pages the TLB misses cost a core about a third of its bandwidth (repacked GEMV over
    /// 256 MB on one thread: 23 GB/s on 4 KiB pages, 32.8 on 2 MiB pages, `Kernels.Benchmarks cputime dram`).
    /// </summary>
    public void* Alloc(long bytes)
    {
        bool huge = bytes >= HugePage && OperatingSystem.IsLinux();
        void* p = NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 64), huge ? (nuint)HugePage : 64);
        if (huge) _ = MAdvise((nint)p, (nuint)(bytes / HugePage * HugePage), MadvHugePage); // advice only: a failure changes no result
        _allocations.Add((nint)p);
        return p;
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int MAdvise(nint address, nuint length, int advice);

    /// <summary>Frees a buffer from <see cref="Alloc"/> before the others (a scratch buffer being regrown); null is ignored.</summary>
    public void Free(void* p)
    {
        if (p == null) return;
        _allocations.Remove((nint)p);
        NativeMemory.AlignedFree(p);
    }

    public void Dispose()
    {
        foreach (var p in _allocations) NativeMemory.AlignedFree((void*)p);
        _allocations.Clear();
    }
}
