using Infer.Kernels.Cpu.Threading;

namespace Infer.Kernels.Cpu.Tests.Threading;

public class WorkerPoolTests
{
    private sealed class SumWork(long[] data) : IParallelWork
    {
        public long[] Partial = new long[8];
        public void Execute(int thread, int threadCount)
        {
            var (s, e) = WorkerPool.Split(data.Length, thread, threadCount);
            long sum = 0;
            for (int i = s; i < e; i++) sum += data[i];
            Partial[thread] = sum;
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void EveryThreadRunsItsShareEveryTime(int threads)
    {
        var data = Enumerable.Range(1, 10_001).Select(i => (long)i).ToArray();
        using var pool = new WorkerPool(threads);
        var work = new SumWork(data);
        for (int round = 0; round < 2000; round++)
        {
            Array.Clear(work.Partial);
            pool.Run(work);
            Assert.Equal(10_001L * 10_002 / 2, work.Partial.Sum());
        }
    }

    [Fact]
    public void WakesUpAfterWorkersBlocked()
    {
        var data = new long[] { 1, 2, 3, 4 };
        using var pool = new WorkerPool(2);
        var work = new SumWork(data);
        pool.Run(work);
        Thread.Sleep(50); // past the spin period: workers are now blocked
        Array.Clear(work.Partial);
        pool.Run(work);
        Assert.Equal(10, work.Partial.Sum());
    }

    private sealed class CountingWork : IParallelWork
    {
        public int Count;
        public void Execute(int thread, int threadCount) => Interlocked.Increment(ref Count);
    }

    /// <summary>
    /// Runs issued right around the moment idle workers stop spinning and block (200 µs), thousands of times: a lost wake-up
    /// (the worker sleeping on a generation that Run already advanced) would leave Run waiting forever. The bound is only a
    /// hang detector (the loop takes about a second).
    /// </summary>
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public async Task NeverMissesAWakeUpAroundTheSpinToBlockSwitch(int threads)
    {
        using var pool = new WorkerPool(threads);
        var work = new CountingWork();
        const int runs = 3000;
        var loop = Task.Run(() =>
        {
            var rng = new Random(7);
            for (int i = 0; i < runs; i++)
            {
                pool.Run(work);
                long wait = System.Diagnostics.Stopwatch.Frequency / 5000 * rng.Next(80, 125) / 100; // 160-250 µs
                long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                while (System.Diagnostics.Stopwatch.GetTimestamp() - t0 < wait) { }
            }
        });
        var finished = await Task.WhenAny(loop, Task.Delay(TimeSpan.FromMinutes(2)));
        Assert.True(finished == loop, $"Run never returned after {Volatile.Read(ref work.Count)} executions: a worker missed its wake-up");
        Assert.Equal(runs * threads, work.Count);
    }

    private sealed class Failing : IParallelWork
    {
        public void Execute(int thread, int threadCount)
        {
            if (thread == threadCount - 1) throw new InvalidOperationException("boom");
        }
    }

    [Fact]
    public void ExceptionsReachTheCaller()
    {
        using var pool = new WorkerPool(2);
        Assert.Throws<InvalidOperationException>(() => pool.Run(new Failing()));
        var work = new SumWork([5, 6]);
        pool.Run(work); // still usable
        Assert.Equal(11, work.Partial.Sum());
    }

    [Theory]
    [InlineData(10, 3)]
    [InlineData(2, 4)]
    [InlineData(0, 2)]
    public void SplitCoversEverythingOnce(int total, int parts)
    {
        int covered = 0, last = 0;
        for (int i = 0; i < parts; i++)
        {
            var (s, e) = WorkerPool.Split(total, i, parts);
            Assert.Equal(last, s);
            Assert.True(e - s <= total / parts + 1);
            covered += e - s;
            last = e;
        }
        Assert.Equal(total, covered);
    }
}
