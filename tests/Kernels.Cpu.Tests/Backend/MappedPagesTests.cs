using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using Infer.Kernels.Cpu.Backend;

namespace Infer.Kernels.Cpu.Tests.Backend;

/// <summary>Releasing repacked weights' source pages: only read-only file mappings are touched, and their contents stay readable.</summary>
public unsafe class MappedPagesTests
{
    private const int Bytes = 1 << 20;

    private static byte Pattern(int i) => (byte)(i * 31 + (i >> 12));

    [Fact]
    public void AnonymousMemoryKeepsItsContents()
    {
        byte* p = (byte*)NativeMemory.AlignedAlloc(Bytes, 4096);
        try
        {
            for (int i = 0; i < Bytes; i++) p[i] = Pattern(i);
            MappedPages.Release(p, Bytes); // MADV_DONTNEED here would zero the pages
            for (int i = 0; i < Bytes; i++) Assert.True(p[i] == Pattern(i), $"byte {i} changed");
        }
        finally
        {
            NativeMemory.AlignedFree(p);
        }
    }

    [Fact]
    public void ManagedArrayKeepsItsContents()
    {
        var a = new byte[Bytes];
        for (int i = 0; i < Bytes; i++) a[i] = Pattern(i);
        fixed (byte* p = a) MappedPages.Release(p + 100, Bytes - 200);
        for (int i = 0; i < Bytes; i++) Assert.True(a[i] == Pattern(i), $"byte {i} changed");
    }

    [Fact]
    public void ReadOnlyFileMappingStaysReadable()
    {
        string path = Path.Combine(Path.GetTempPath(), $"mapped-pages-{Guid.NewGuid():N}.bin");
        try
        {
            var data = new byte[Bytes];
            for (int i = 0; i < Bytes; i++) data[i] = Pattern(i);
            File.WriteAllBytes(path, data);
            using var file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            using var view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            try
            {
                p += view.PointerOffset;
                long sum = 0;
                for (int i = 0; i < Bytes; i += 4096) sum += p[i]; // make the pages resident
                Assert.True(sum >= 0);
                MappedPages.Release(p + 10, Bytes - 10);
                for (int i = 0; i < Bytes; i++) Assert.True(p[i] == Pattern(i), $"byte {i} reads differently after release");
            }
            finally
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}
