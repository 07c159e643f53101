using Infer.Runtime.Model;

namespace Infer.Runtime.Inference;

/// <summary>
/// One sequence of a model's KV cache: the tokens evaluated so far and the logits of the last one. Evaluating a new
/// token list reuses the cached prefix it shares with what was evaluated before (multi-turn chat), so only the new
/// tail is computed.
/// </summary>
public sealed class Session
{
    private readonly LlamaModel _model;
    private readonly int _sequence;
    private readonly int[] _tokens;
    private readonly int[] _positions;
    private readonly int[] _sequences;
    private readonly int[] _lastRow = new int[1];
    private int _count;

    public Session(LlamaModel model, int sequence = 0)
    {
        _model = model;
        _sequence = sequence;
        _tokens = new int[model.ContextLength];
        _positions = new int[model.BatchSize];
        _sequences = new int[model.BatchSize];
        Array.Fill(_sequences, sequence);
        Logits = new float[model.VocabSize];
    }

    public LlamaModel Model => _model;

    /// <summary>Logits after the last evaluated token (vocabulary size).</summary>
    public float[] Logits { get; }

    /// <summary>Tokens in the cache, in order.</summary>
    public ReadOnlySpan<int> Tokens => _tokens.AsSpan(0, _count);

    public int Count => _count;

    public int ContextLength => _model.ContextLength;

    /// <summary>Forgets everything after the first <paramref name="count"/> tokens.</summary>
    public void Truncate(int count) => _count = Math.Clamp(count, 0, _count);

    public void Clear() => _count = 0;

    /// <summary>Appends tokens and evaluates them in batches; <see cref="Logits"/> then holds the last token's logits.</summary>
    /// <exception cref="ContextFullException">the tokens do not fit in the context.</exception>
    public void Append(ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty) return;
        if (_count + tokens.Length > _model.ContextLength) throw new ContextFullException(_model.ContextLength);
        int batch = _model.BatchSize;
        for (int start = 0; start < tokens.Length; start += batch)
        {
            var chunk = tokens.Slice(start, Math.Min(batch, tokens.Length - start));
            for (int i = 0; i < chunk.Length; i++) _positions[i] = _count + i;
            _lastRow[0] = chunk.Length - 1;
            _model.Forward(chunk, _positions.AsSpan(0, chunk.Length), _sequences.AsSpan(0, chunk.Length), _lastRow, Logits);
            chunk.CopyTo(_tokens.AsSpan(_count));
            _count += chunk.Length;
        }
    }

    /// <summary>Appends one token (the decode step).</summary>
    public void Append(int token)
    {
        Span<int> one = [token];
        Append(one);
    }

    /// <summary>
    /// Makes the cache hold exactly <paramref name="tokens"/>: keeps the longest common prefix, drops the rest, evaluates
    /// the remainder. Returns how many tokens were evaluated. At least the last token is re-evaluated so that
    /// <see cref="Logits"/> belongs to it.
    /// </summary>
    public int Sync(ReadOnlySpan<int> tokens)
    {
        int common = 0;
        int max = Math.Min(_count, tokens.Length);
        while (common < max && _tokens[common] == tokens[common]) common++;
        if (common == tokens.Length) common = Math.Max(0, tokens.Length - 1);
        _count = common;
        Append(tokens[common..]);
        return tokens.Length - common;
    }
}
