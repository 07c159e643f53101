using System.Diagnostics;
using System.Diagnostics.Metrics;
using Infer.Runtime.Model;
using Infer.Runtime.Sampling;
using Infer.Runtime.Tokenizers;

namespace Infer.Runtime.Serving;

/// <summary>Sizes of the scheduler: its waiting queue and the tokens of one step.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Requests that may wait for a slot; one more is refused with <see cref="QueueFullException"/>.</summary>
    public int QueueCapacity { get; init; } = 64;

    /// <summary>Most tokens evaluated per step (llama.cpp's -b); 0 or more than the model's batch size: the model's batch size.</summary>
    public int StepTokens { get; init; }
}

/// <summary>
/// Continuous batching over one model: each of the model's sequences is a slot. One thread drives the model (its forward pass is
/// not thread-safe): each step packs the next token of every generating slot and chunks of waiting prompts into one batch, runs
/// it, samples each slot's next token with the slot's own sampler and streams it out. Requests join at the next step and leave
/// when done; a new request takes the free slot whose cache shares the longest prefix with its prompt and evaluates only the
/// rest. Callers talk to it from any thread through <see cref="Submit"/> and the returned stream.
/// <para>
/// A request served alone computes exactly what <c>infer run</c> computes (its prompt in one batch, then one token per step).
/// Batched with others, its rows can differ in the last bits: the CPU matmul multiplies a batch's rows in groups of four
/// through its tile kernels and the remainder through the single-row dot, and the two round differently (about 1e-6 on the
/// fixtures' logits), so greedy tokens agree except at near ties.
/// </para>
/// </summary>
public sealed partial class Scheduler : IDisposable
{
    private readonly LlamaModel _model;
    private readonly Tokenizer _tokenizer;
    private readonly SchedulerOptions _options;
    private readonly Slot[] _slots;
    private readonly Queue<Work> _queue = new();
    private readonly Lock _lock = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    private readonly SchedulerMetrics? _metrics;
    private readonly int _stepTokens;

    // One step's batch: (stepTokens) token, position, sequence; which rows need logits and their slots; (slots x vocab) logits.
    private readonly int[] _tokens, _positions, _sequences, _logitRows;
    private readonly Slot[] _rowSlots;
    private readonly float[] _logits;

    private bool _accepting = true, _disposed;
    private long _admissions;
    private volatile int _busy;
    private volatile int _cachedTokens;

    public Scheduler(LlamaModel model, Tokenizer tokenizer, SchedulerOptions? options = null, Meter? meter = null)
    {
        _model = model;
        _tokenizer = tokenizer;
        _options = options ?? new SchedulerOptions();
        if (_options.QueueCapacity < 0) throw new ArgumentOutOfRangeException(nameof(options), "the queue capacity must not be negative");
        _stepTokens = _options.StepTokens <= 0 ? model.BatchSize : Math.Min(_options.StepTokens, model.BatchSize);
        // Every generating slot's token goes into each step, so a step must hold one token per slot.
        if (_stepTokens < model.Sequences)
            throw new ArgumentException(
                $"a step of {_stepTokens} tokens cannot hold one token of each of the {model.Sequences} slots; use a larger batch");
        _slots = new Slot[model.Sequences];
        for (int i = 0; i < _slots.Length; i++) _slots[i] = new Slot(i, model.ContextLength, tokenizer);
        _tokens = new int[_stepTokens];
        _positions = new int[_stepTokens];
        _sequences = new int[_stepTokens];
        _logitRows = new int[_slots.Length];
        _rowSlots = new Slot[_slots.Length];
        _logits = new float[(long)_slots.Length * model.VocabSize];
        if (meter is not null) _metrics = new SchedulerMetrics(meter, this);
        _thread = new Thread(Drive) { IsBackground = true, Name = "infer scheduler" };
        _thread.Start();
    }

    public LlamaModel Model => _model;
    public Tokenizer Tokenizer => _tokenizer;

    /// <summary>Number of slots (the model's sequences, -np).</summary>
    public int Slots => _slots.Length;

    /// <summary>Positions of each slot's KV cache.</summary>
    public int ContextLength => _model.ContextLength;

    public int BusySlots => _busy;

    public int QueueLength
    {
        get { lock (_lock) return _queue.Count; }
    }

    public int QueueCapacity => _options.QueueCapacity;

    /// <summary>Positions in use across all slots' KV caches (kept prefixes included).</summary>
    public int CachedTokens => _cachedTokens;

    /// <summary>True while no request runs or waits.</summary>
    public bool Idle
    {
        get { lock (_lock) return _busy == 0 && _queue.Count == 0; }
    }

    /// <summary>
    /// Queues a request; it starts at the next step that has a free slot. Cancelling <paramref name="cancel"/> frees its slot
    /// within one step and ends the stream with <see cref="FinishReason.Cancelled"/>.
    /// </summary>
    /// <exception cref="ArgumentException">
    /// empty prompt, a token outside the vocabulary, bad sampling options, logit biases or max tokens.
    /// </exception>
    /// <exception cref="ContextFullException">the prompt does not leave room for one generated token.</exception>
    /// <exception cref="QueueFullException">every slot is busy and the queue is full.</exception>
    /// <exception cref="SchedulerStoppedException">the scheduler no longer accepts requests.</exception>
    public GenerationStream Submit(GenerationRequest request, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var prompt = request.Prompt;
        if (prompt is null || prompt.Length == 0) throw new ArgumentException("the prompt is empty");
        foreach (int t in prompt)
            if ((uint)t >= (uint)_model.VocabSize) throw new ArgumentException($"token id {t} is outside the vocabulary (0..{_model.VocabSize - 1})");
        if (prompt.Length >= _model.ContextLength) throw new ContextFullException(_model.ContextLength);
        if (request.MaxTokens is 0 or < -1) throw new ArgumentException($"max tokens must be positive (or -1 for no limit), got {request.MaxTokens}");
        if (request.TopLogprobs > 20) throw new ArgumentException($"at most 20 top log probabilities, got {request.TopLogprobs}");
        ArgumentNullException.ThrowIfNull(request.Sampling);
        request.Sampling.Validate();
        foreach (var b in request.LogitBias ?? throw new ArgumentException("the logit bias list is null"))
        {
            if ((uint)b.Token >= (uint)_model.VocabSize)
                throw new ArgumentException($"logit bias for token id {b.Token}, which is outside the vocabulary (0..{_model.VocabSize - 1})");
            if (!float.IsFinite(b.Bias)) throw new ArgumentException($"the logit bias of token {b.Token} is not a finite number");
        }
        var work = new Work(request, cancel);
        lock (_lock)
        {
            if (!_accepting || _disposed) throw new SchedulerStoppedException();
            int free = _slots.Length - _busy;
            if (_queue.Count >= _options.QueueCapacity + Math.Max(0, free)) throw new QueueFullException(_options.QueueCapacity);
            _queue.Enqueue(work);
        }
        _wake.Release();
        return work.Stream;
    }

    /// <summary>
    /// A small generation before the server reports ready: an 8-token prompt (the batched matmul kernels) and one decode step (the
    /// single-row kernels), so both are compiled and every weight has been touched once.
    /// </summary>
    public async Task WarmUpAsync(CancellationToken cancel = default)
    {
        int first = _tokenizer.BosId >= 0 ? _tokenizer.BosId : 0;
        var prompt = new int[Math.Clamp(_model.ContextLength - 2, 1, 8)];
        Array.Fill(prompt, first);
        var request = new GenerationRequest { Prompt = prompt, MaxTokens = 2, IgnoreEos = true, Sampling = new SamplerOptions { Temperature = 0 } };
        await Submit(request, cancel).CollectAsync(cancel).ConfigureAwait(false);
    }

    /// <summary>New requests are refused from now on (<see cref="SchedulerStoppedException"/>); running and waiting ones go on.</summary>
    public void StopAccepting()
    {
        lock (_lock) _accepting = false;
    }

    /// <summary>Waits until no request runs or waits, or <paramref name="timeout"/> passes; true when idle.</summary>
    public async Task<bool> WaitIdleAsync(TimeSpan timeout, CancellationToken cancel = default)
    {
        long end = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (!Idle)
        {
            if (Stopwatch.GetTimestamp() >= end) return false;
            await Task.Delay(20, cancel).ConfigureAwait(false);
        }
        return true;
    }

    /// <summary>Stops accepting, lets running requests finish within <paramref name="grace"/>, then cancels the rest.</summary>
    public async Task ShutdownAsync(TimeSpan grace)
    {
        StopAccepting();
        if (await WaitIdleAsync(grace).ConfigureAwait(false)) return;
        lock (_lock) _cancelAll = true;
        _wake.Release();
        await WaitIdleAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
    }

    private bool _cancelAll;

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _accepting = false;
        }
        _wake.Release();
        _thread.Join();
        _metrics?.Dispose();
        _wake.Dispose();
    }

    /// <summary>The scheduler thread: admit, build a batch, run it, sample; sleep when there is nothing to do.</summary>
    private void Drive()
    {
        while (true)
        {
            bool cancelAll;
            lock (_lock)
            {
                if (_disposed) break;
                cancelAll = _cancelAll;
            }
            if (cancelAll) CancelEverything();
            Admit();
            ReapCancelled();
            if (_busy == 0)
            {
                _wake.Wait();
                continue;
            }
            Step();
        }
        CancelEverything();
    }

    /// <summary>Moves waiting requests into free slots, each to the free slot with the longest common prefix (then least recently used).</summary>
    private void Admit()
    {
        while (true)
        {
            Work? work;
            Slot? best = null;
            lock (_lock)
            {
                if (_queue.Count == 0) return;
                work = _queue.Peek();
                if (!work.Cancel.IsCancellationRequested)
                {
                    int bestPrefix = -1;
                    foreach (var s in _slots)
                    {
                        if (s.Busy) continue;
                        int p = s.CommonPrefix(work.Request.Prompt);
                        if (p > bestPrefix || (p == bestPrefix && s.LastUsed < best!.LastUsed)) (best, bestPrefix) = (s, p);
                    }
                    if (best is null) return;
                }
                _queue.Dequeue();
                if (best is not null) _busy++; // under the lock: never idle between the queue and the slot
            }
            if (best is null) Complete(work, FinishReason.Cancelled);
            else Start(best, work);
        }
    }

    private void Start(Slot slot, Work work)
    {
        var prompt = work.Request.Prompt;
        // Keep the shared prefix; at least the last prompt token is evaluated again so that its logits exist.
        int keep = Math.Min(slot.CommonPrefix(prompt), prompt.Length - 1);
        SetCacheCount(slot, keep);
        slot.Job = work;
        // A slot keeps its sampler (vocabulary-sized buffers) for the next request with the same settings.
        if (slot.Sampler?.Options != work.Request.Sampling) slot.Sampler = new Sampler(_model.VocabSize, work.Request.Sampling);
        slot.Sampler.Reset();
        slot.PromptNext = keep;
        slot.PendingToken = -1;
        slot.Admitted = ++_admissions;
        slot.Stop.Reset(work.Request.Stop);
        slot.Decoder.Flush();
        foreach (int t in prompt) slot.Sampler.Accept(t); // the penalties see the prompt, as `infer run`
        work.Cached = keep;
        work.Started = Stopwatch.GetTimestamp();
        _metrics?.RecordPrompt(prompt.Length, keep);
    }

    private void ReapCancelled()
    {
        foreach (var s in _slots)
            if (s.Job is { } w && w.Cancel.IsCancellationRequested) Finish(s, FinishReason.Cancelled);
    }

    private void CancelEverything()
    {
        List<Work> waiting;
        lock (_lock)
        {
            waiting = [.. _queue];
            _queue.Clear();
        }
        foreach (var w in waiting) Complete(w, FinishReason.Cancelled);
        foreach (var s in _slots)
            if (s.Busy) Finish(s, FinishReason.Cancelled);
    }

    private void SetCacheCount(Slot slot, int count)
    {
        _cachedTokens += count - slot.CacheCount;
        slot.CacheCount = count;
    }
}
