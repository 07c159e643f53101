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
            long chunk = bytes / threadCount / 256 * 256;
            byte* p = data + chunk * thread;
            long n = chunk / 256;
            // Eight independent accumulators over 256-byte steps: enough loads in flight to saturate the memory system.
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            for (long i = 0; i < n; i++)
            {
                float* q = (float*)(p + i * 256);
                a0 += Vector256.Load(q); a1 += Vector256.Load(q + 8); a2 += Vector256.Load(q + 16); a3 += Vector256.Load(q + 24);
                a4 += Vector256.Load(q + 32); a5 += Vector256.Load(q + 40); a6 += Vector256.Load(q + 48); a7 += Vector256.Load(q + 56);
            }
            var acc0 = a0 + a1 + a2 + a3;
            var acc1 = a4 + a5 + a6 + a7;
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
