using Infer.Kernels.Cpu.Threading;

namespace Infer.Kernels.Cpu.Backend;

/// <summary>
/// Repacks weights on one background thread, in the order they were loaded, so that a model answers before its copy in the
/// interleaved layout exists: until a weight's copy is complete its matmuls read the mapped rows through the plain kernels
/// (the same products, slower for prompts), then <see cref="CpuWeight.PublishRepacked"/> switches them over and the mapped
/// rows leave the process. Providing the copy's fresh pages is most of the cost on a virtual machine (0.1 to 1.3 s for the
/// 790 MB of a 1B Q4_0 model, against about 0.1 s of shuffling): the first token no longer waits for it.
/// </summary>
internal sealed unsafe class BackgroundRepacker : IDisposable
{
    private const int Nice = 19;

    private readonly Queue<Job> _jobs = new();
    private readonly object _lock = new();
    private readonly CancellationTokenSource _stop = new();
    private Thread? _thread;
    private int _pending;
    private long _bytes;
    private Exception? _error;

    /// <summary>Tests reset it to hold the thread before its next weight, and set it to let it go on.</summary>
    internal ManualResetEventSlim Gate { get; } = new(true);

    /// <summary>Bytes of weights whose repacked copy is published.</summary>
    public long PublishedBytes => Interlocked.Read(ref _bytes);

    /// <summary>Whether weights are still waiting for (or in) their repack.</summary>
    public bool Pending => Volatile.Read(ref _pending) > 0;

    /// <summary>
    /// Queues <paramref name="weight"/>: its <see cref="CpuWeight.RepackedRows"/> rows from <paramref name="source"/> into
    /// <paramref name="destination"/> (allocated, not yet touched), then publishes it; <paramref name="releaseSource"/>: the
    /// source is a read-only file mapping whose pages then leave the process.
    /// </summary>
    public void Enqueue(CpuWeight weight, byte* source, byte* destination, bool releaseSource)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_stop.IsCancellationRequested, this); // under the lock: Dispose reads _thread there
            _jobs.Enqueue(new Job(weight, (nint)source, (nint)destination, releaseSource));
            _pending++;
            if (_thread is null)
            {
                _thread = new Thread(Loop) { IsBackground = true, Name = "infer-repack" };
                _thread.Start();
            }
        }
    }

    /// <summary>Blocks until every queued weight is published; rethrows a repack's failure (its weight stays plain).</summary>
    public void WaitForAll()
    {
        lock (_lock)
        {
            while (_pending > 0 && _thread is not null) Monitor.Wait(_lock);
            if (_error is { } error) throw new InvalidOperationException("repacking a weight in the background failed", error);
        }
    }

    private void Loop()
    {
        // Below every other thread: the first tokens (on the plain kernels) go first, the copy takes the idle time (1B Q4_0 on 2
        // cores of a virtual machine, 6 runs each: the first token a median 1.04 s from process start at nice 19, 1.17 at 10,
        // 1.43 at normal priority; 48 tokens generated at once still saw every copy finish within them, at 15.1 tokens/s against
        // 14.4 at normal priority and 16 with all copies made at load).
        ThreadNice.Lower(Nice);
        while (true)
        {
            Job job;
            lock (_lock)
            {
                if (_jobs.Count == 0 || _stop.IsCancellationRequested)
                {
                    _thread = null;
                    Monitor.PulseAll(_lock);
                    return;
                }
                job = _jobs.Dequeue();
            }
            try
            {
                Gate.Wait(_stop.Token);
                if (Run(job)) Interlocked.Add(ref _bytes, job.Weight.RepackedRows * job.Weight.RowBytes);
            }
            catch (OperationCanceledException)
            {
            }
            catch (Exception e)
            {
                lock (_lock) _error ??= e;
            }
            lock (_lock)
            {
                _pending--;
                Monitor.PulseAll(_lock);
            }
        }
    }

    /// <summary>Repacks one weight a chunk of groups at a time (a stop request waits for one chunk at most); false if stopped.</summary>
    private bool Run(Job job)
    {
        var w = job.Weight;
        int groups = w.RepackedRows / w.Kernel.RepackRows;
        byte* source = (byte*)job.Source, destination = (byte*)job.Destination;
        for (int start = 0; start < groups; start += WeightLoader.ChunkGroups)
        {
            if (_stop.IsCancellationRequested) return false;
            WeightLoader.RepackChunk(w.Kernel, source, destination, w.RowBytes, w.Cols, start, groups);
        }
        w.PublishRepacked(destination);
        if (job.ReleaseSource) MemoryAdvice.ReleaseMapped(source, w.RepackedRows * w.RowBytes);
        return true;
    }

    /// <summary>Stops the thread after its current chunk and waits for it; weights not yet published stay plain.</summary>
    public void Dispose()
    {
        Thread? thread;
        lock (_lock)
        {
            if (_stop.IsCancellationRequested) return;
            _stop.Cancel();
            thread = _thread;
        }
        thread?.Join();
        _stop.Dispose();
        Gate.Dispose();
    }

    private readonly record struct Job(CpuWeight Weight, nint Source, nint Destination, bool ReleaseSource);
}
