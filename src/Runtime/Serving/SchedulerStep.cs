using System.Diagnostics;

namespace Infer.Runtime.Serving;

public sealed partial class Scheduler
{
    private int _step;

    /// <summary>Called before each token of a request is sampled, on the scheduler thread (tests inject faults here).</summary>
    internal Action<GenerationRequest>? SampleHook { get; set; }

    /// <summary>
    /// One batch: the pending token of every generating slot (each needs logits), then prompt chunks of prefilling slots, first
    /// admitted first, within the step's token budget (a prompt's last token needs logits). Then the model runs once and each
    /// slot with logits samples its next token.
    /// </summary>
    private void Step()
    {
        _step++;
        int n = 0, rows = 0;
        foreach (var s in _slots)
        {
            if (s.Job is null || s.PendingToken < 0) continue;
            _tokens[n] = s.PendingToken;
            _positions[n] = s.CacheCount;
            _sequences[n] = s.Sequence;
            _logitRows[rows] = n++;
            _rowSlots[rows++] = s;
        }
        while (n < _stepTokens)
        {
            Slot? next = null;
            foreach (var s in _slots)
                if (s.Prefilling && s.StepStamp != _step && (next is null || s.Admitted < next.Admitted)) next = s;
            if (next is null) break;
            next.StepStamp = _step;
            var prompt = next.Job!.Request.Prompt;
            int take = Math.Min(prompt.Length - next.PromptNext, _stepTokens - n);
            for (int i = 0; i < take; i++, n++)
            {
                _tokens[n] = prompt[next.PromptNext + i];
                _positions[n] = next.PromptNext + i;
                _sequences[n] = next.Sequence;
            }
            next.Chunk = take;
            if (next.PromptNext + take == prompt.Length)
            {
                _logitRows[rows] = n - 1;
                _rowSlots[rows++] = next;
            }
        }
        if (n == 0) return;

        int vocab = _model.VocabSize;
        try
        {
            _model.Forward(_tokens.AsSpan(0, n), _positions.AsSpan(0, n), _sequences.AsSpan(0, n), _logitRows.AsSpan(0, rows),
                _logits.AsSpan(0, rows * vocab));
        }
        catch (Exception e)
        {
            // An internal fault fails the requests of this batch only; their caches are no longer trusted.
            foreach (var s in _slots)
            {
                if (s.StepStamp != _step && s.PendingToken < 0) continue;
                if (s.Job is null) continue;
                SetCacheCount(s, 0);
                Fail(s, e);
            }
            return;
        }

        for (int i = 0; i < n; i++)
        {
            var s = _slots[_sequences[i]];
            s.Cache[_positions[i]] = _tokens[i];
            if (_positions[i] >= s.CacheCount) SetCacheCount(s, _positions[i] + 1);
        }
        foreach (var s in _slots)
        {
            if (s.StepStamp == _step && s.Chunk > 0)
            {
                s.PromptNext += s.Chunk;
                s.Chunk = 0;
            }
            s.PendingToken = -1;
        }
        for (int r = 0; r < rows; r++)
        {
            var s = _rowSlots[r];
            _rowSlots[r] = null!;
            try
            {
                Sample(s, _logits.AsSpan(r * vocab, vocab));
            }
            catch (Exception e)
            {
                Fail(s, e);
            }
        }
    }

    /// <summary>Picks the slot's next token from its logits row and streams it; finishes the request when it is done.</summary>
    private void Sample(Slot slot, Span<float> logits)
    {
        var w = slot.Job!;
        var req = w.Request;
        SampleHook?.Invoke(req);
        foreach (var b in req.LogitBias) logits[b.Token] += b.Bias;
        if (req.TopLogprobs >= 0)
        {
            slot.Scratch ??= new float[logits.Length];
            logits.CopyTo(slot.Scratch);
        }
        int token = slot.Sampler!.Sample(logits);
        // An end-of-generation token ends the request unless told to ignore it; with a grammar it only comes where the
        // grammar's sentence is complete, so it ends the request even then (nothing may follow it).
        if ((!req.IgnoreEos || req.Sampling.Grammar is not null) && _tokenizer.IsEndOfGeneration(token))
        {
            Finish(slot, FinishReason.Stop);
            return;
        }
        slot.Sampler.Accept(token);
        float logprob = 0;
        TokenLogprob[]? top = null;
        if (req.TopLogprobs >= 0) logprob = Logprobs.Compute(slot.Scratch, token, req.TopLogprobs, out top);
        if (++w.Generated == 1) w.FirstToken = Stopwatch.GetTimestamp();
        string released = slot.Stop.Append(slot.Decoder.Append(token), out bool stopped);
        w.Channel.Writer.TryWrite(new GeneratedToken(token, released, logprob, top));
        if (stopped) Finish(slot, FinishReason.Stop, flush: false);
        else if (req.MaxTokens > 0 && w.Generated >= req.MaxTokens) Finish(slot, FinishReason.Length);
        else if (slot.CacheCount >= _model.ContextLength) Finish(slot, FinishReason.Length);
        else slot.PendingToken = token;
    }

    /// <summary>Ends the slot's request: releases held-back text (unless a stop string ended it) and frees the slot; the cache stays.</summary>
    private void Finish(Slot slot, FinishReason reason, bool flush = true)
    {
        var w = slot.Job!;
        string tail = slot.Decoder.Flush();
        if (flush && reason != FinishReason.Cancelled)
        {
            string text = slot.Stop.Append(tail, out bool stopped);
            if (!stopped) text += slot.Stop.Flush();
            if (text.Length > 0) w.Channel.Writer.TryWrite(new GeneratedToken(-1, text, 0, null));
        }
        Release(slot);
        Complete(w, reason);
    }

    private void Fail(Slot slot, Exception e)
    {
        var w = slot.Job!;
        slot.Decoder.Flush();
        Release(slot);
        w.Channel.Writer.TryComplete(e);
        w.Result.TrySetException(e);
        _metrics?.RecordFailure();
    }

    private void Release(Slot slot)
    {
        slot.Stop.Reset([]);
        slot.Job = null;
        slot.PendingToken = -1;
        slot.Chunk = 0;
        slot.LastUsed = Stopwatch.GetTimestamp();
        _busy--;
    }

    private void Complete(Work w, FinishReason reason)
    {
        long now = Stopwatch.GetTimestamp();
        double Seconds(long from, long to) => (to - from) / (double)Stopwatch.Frequency;
        var result = new GenerationResult(reason, w.Request.Prompt.Length, w.Cached, w.Generated,
            QueueSeconds: Seconds(w.Submitted, w.Started > 0 ? w.Started : now),
            TimeToFirstToken: w.FirstToken > 0 ? Seconds(w.Submitted, w.FirstToken) : 0,
            TotalSeconds: Seconds(w.Submitted, now));
        w.Channel.Writer.TryComplete();
        w.Result.TrySetResult(result);
        _metrics?.RecordFinished(result);
    }
}
