using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Infer.Kernels.Cpu.Threading;

namespace Infer.Kernels.Cpu.Diagnostics;

/// <summary>Measures the machine's memory read bandwidth with all pool threads streaming a buffer much larger than the caches.</summary>
public static unsafe class MemoryBandwidth
{
    private sealed class ReadWork(byte* data, long bytes) : IParallelWork
    {
        public double Sink;

        public void Execute(int thread, int threadCount)
        {
            long chunk = bytes / threadCount / 64 * 64;
            byte* p = data + chunk * thread;
            long n = chunk / 64;
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            for (long i = 0; i < n; i++)
            {
                acc0 += Vector256.Load((float*)(p + i * 64));
                acc1 += Vector256.Load((float*)(p + i * 64 + 32));
            }
            Sink += Vector256.Sum(acc0 + acc1);
        }
    }

    /// <summary>Best of <paramref name="repetitions"/> full reads of a <paramref name="bytes"/>-byte buffer, in bytes per second.</summary>
    public static double Measure(WorkerPool pool, long bytes = 1L << 30, int repetitions = 5)
    {
        byte* data = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        try
        {
            new Span<byte>(data, (int)Math.Min(bytes, int.MaxValue)).Fill(1);
            if (bytes > int.MaxValue) NativeMemory.Fill(data + int.MaxValue, (nuint)(bytes - int.MaxValue), 1);
            var work = new ReadWork(data, bytes);
            double best = 0;
            for (int r = 0; r < repetitions; r++)
            {
                long t0 = Stopwatch.GetTimestamp();
                pool.Run(work);
                double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                best = Math.Max(best, bytes / seconds);
            }
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(data);
        }
    }
}
