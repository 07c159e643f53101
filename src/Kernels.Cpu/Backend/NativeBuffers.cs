using System.Runtime.InteropServices;

namespace Infer.Kernels.Cpu.Backend;

/// <summary>64-byte aligned native allocations owned by one backend, freed together on dispose.</summary>
internal sealed unsafe class NativeBuffers : IDisposable
{
    private readonly List<nint> _allocations = [];

    /// <summary>At least 64 bytes, 64-byte aligned, uninitialized.</summary>
    public void* Alloc(long bytes)
    {
        void* p = NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 64), 64);
        _allocations.Add((nint)p);
        return p;
    }

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
