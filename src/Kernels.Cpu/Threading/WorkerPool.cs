using System.Diagnostics;

namespace Infer.Kernels.Cpu.Threading;

/// <summary>A unit of parallel work: called once on every thread of the pool with that thread's index.</summary>
public interface IParallelWork
{
    void Execute(int thread, int threadCount);
}

/// <summary>
/// A persistent pool of worker threads. <see cref="Run"/> wakes the workers, runs the work on the calling thread too
/// (as thread 0) and returns when every thread has finished. Idle workers spin briefly, then block, so back-to-back
/// operations of a decode step pay no wake-up latency and an idle process burns no CPU. No allocation per call.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    private static readonly long SpinTicks = Stopwatch.Frequency / 5000; // 200 µs of spinning before a worker blocks

    private readonly Thread[] _threads;
    private readonly object _lock = new();
    private IParallelWork? _work;
    private int _generation;
    private int _pending;
    private int _sleepers;
    private volatile bool _stop;
    private Exception? _error;

    public int ThreadCount { get; }

    public WorkerPool(int threadCount)
    {
        if (threadCount < 1) throw new ArgumentOutOfRangeException(nameof(threadCount), "at least one thread");
        ThreadCount = threadCount;
        _threads = new Thread[threadCount - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int index = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(index)) { IsBackground = true, Name = $"infer-worker-{index}" };
            _threads[i].Start();
        }
    }

    /// <summary>Runs <paramref name="work"/> on all threads and waits for them. Rethrows the first exception a thread raised.</summary>
    public void Run(IParallelWork work)
    {
        if (_threads.Length == 0)
        {
            work.Execute(0, 1);
            return;
        }
        _work = work;
        _error = null;
        Volatile.Write(ref _pending, _threads.Length);
        // Interlocked (a full fence) before reading the sleeper count: the Dekker handshake with the worker's Interlocked increment
        // of _sleepers guarantees that either this thread sees the sleeper, or the worker sees the new generation and does not sleep.
        Interlocked.Increment(ref _generation);
        if (Volatile.Read(ref _sleepers) > 0)
            lock (_lock) Monitor.PulseAll(_lock);

        try
        {
            work.Execute(0, ThreadCount);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _error, e, null);
        }

        var spin = new SpinWait();
        while (Volatile.Read(ref _pending) != 0) spin.SpinOnce(sleep1Threshold: -1);
        _work = null;
        if (_error is { } error) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(error).Throw();
    }

    private void WorkerLoop(int index)
    {
        int seen = 0;
        while (true)
        {
            long start = Stopwatch.GetTimestamp();
            while (Volatile.Read(ref _generation) == seen && !_stop)
            {
                if (Stopwatch.GetTimestamp() - start > SpinTicks)
                {
                    lock (_lock)
                    {
                        // Interlocked (a full fence), not ++: the generation must be read after the count is visible. With a plain
                        // store, x86 may let the read pass it, so Run could bump the generation, still read 0 sleepers and pulse
                        // no one while this worker goes to sleep on the old generation: Run then waits forever (seen in CI).
                        Interlocked.Increment(ref _sleepers);
                        while (Volatile.Read(ref _generation) == seen && !_stop) Monitor.Wait(_lock);
                        Interlocked.Decrement(ref _sleepers);
                    }
                    break;
                }
                Thread.SpinWait(16);
            }
            if (_stop) return;
            seen = Volatile.Read(ref _generation);
            try
            {
                _work!.Execute(index, ThreadCount);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
            }
            Interlocked.Decrement(ref _pending);
        }
    }

    public void Dispose()
    {
        _stop = true;
        lock (_lock) Monitor.PulseAll(_lock);
        foreach (var t in _threads) t.Join();
    }

    /// <summary>Splits [0, total) evenly into <paramref name="parts"/> contiguous ranges and returns range <paramref name="index"/>.</summary>
    public static (int Start, int End) Split(int total, int index, int parts)
    {
        long start = (long)total * index / parts;
        long end = (long)total * (index + 1) / parts;
        return ((int)start, (int)end);
    }
}
