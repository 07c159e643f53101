using System.Numerics.Tensors;
using Infer.Runtime.Grammar;

namespace Infer.Runtime.Sampling;

/// <summary>Sampling settings with llama.cpp's defaults.</summary>
public sealed record SamplerOptions
{
    public float Temperature { get; init; } = 0.8f;
    public int TopK { get; init; } = 40;
    public float TopP { get; init; } = 0.95f;
    public float MinP { get; init; } = 0.05f;
    public float RepeatPenalty { get; init; } = 1.0f;
    public float FrequencyPenalty { get; init; } = 0.0f;
    public float PresencePenalty { get; init; } = 0.0f;
    public int RepeatLastN { get; init; } = 64;
    public ulong Seed { get; init; } = 0xFFFFFFFF; // llama.cpp's LLAMA_DEFAULT_SEED: pick a random seed

    /// <summary>Restricts sampling to sentences of a grammar (each sampler gets its own matcher); null: unconstrained.</summary>
    public GrammarConstraint? Grammar { get; init; }

    public bool IsGreedy => Temperature <= 0;

    public void Validate()
    {
        if (float.IsNaN(Temperature)) throw new ArgumentException("temperature is NaN");
        if (TopP is < 0 or > 1 || float.IsNaN(TopP)) throw new ArgumentException($"top-p must be in [0, 1], got {TopP}");
        if (MinP is < 0 or > 1 || float.IsNaN(MinP)) throw new ArgumentException($"min-p must be in [0, 1], got {MinP}");
        if (!(RepeatPenalty > 0)) throw new ArgumentException($"repeat penalty must be positive, got {RepeatPenalty}");
        if (RepeatLastN < -1) throw new ArgumentException($"repeat-last-n must be -1 (context), 0 (off) or positive, got {RepeatLastN}");
    }
}

/// <summary>
/// The sampling pipeline, in llama.cpp's order: penalties over the last N tokens, top-k, top-p, min-p, temperature,
/// then a draw from a seeded RNG. Temperature 0 is greedy (argmax after penalties). Buffers are allocated once.
/// With a grammar, its mask comes first (as in llama.cpp) and the chosen token advances it.
/// </summary>
public sealed class Sampler
{
    private readonly SamplerOptions _o;
    private readonly int[] _ids;
    private readonly float[] _values;
    private readonly Dictionary<int, int> _counts = [];
    private readonly int[] _history;
    private int _historyCount, _historyStart;
    private Random _rng;
    private readonly GrammarMatcher? _grammar;

    public Sampler(int vocabSize, SamplerOptions options)
    {
        options.Validate();
        _o = options;
        _ids = new int[vocabSize];
        _values = new float[vocabSize];
        _history = new int[Math.Max(1, options.RepeatLastN < 0 ? 4096 : options.RepeatLastN)];
        _probs = new float[vocabSize];
        _rng = NewRng(options.Seed);
        _grammar = options.Grammar?.CreateMatcher();
    }

    public SamplerOptions Options => _o;

    /// <summary>Where generation stands in <see cref="SamplerOptions.Grammar"/>; null without a grammar.</summary>
    public GrammarMatcher? Grammar => _grammar;

    private static Random NewRng(ulong seed) =>
        seed == 0xFFFFFFFF ? new Random() : new Random(unchecked((int)(seed ^ (seed >> 32))));

    /// <summary>Forgets the penalty history (a new conversation), restarts the RNG from the seed and the grammar from its start.</summary>
    public void Reset()
    {
        _historyCount = _historyStart = 0;
        _rng = NewRng(_o.Seed);
        _grammar?.Reset();
    }

    /// <summary>Records a token (prompt or generated) for the repetition penalties.</summary>
    public void Accept(int token)
    {
        if (_o.RepeatLastN == 0) return;
        int cap = _history.Length;
        if (_historyCount < cap) _history[(_historyStart + _historyCount++) % cap] = token;
        else { _history[_historyStart] = token; _historyStart = (_historyStart + 1) % cap; }
    }

    /// <summary>
    /// Picks the next token from <paramref name="logits"/> (modified in place by the grammar mask and the penalties)
    /// and advances the grammar with it.
    /// </summary>
    /// <exception cref="GrammarException">no token can continue the grammar.</exception>
    /// <exception cref="NonFiniteLogitsException">a logit is NaN or +inf.</exception>
    public int Sample(Span<float> logits)
    {
        if (logits.Length > _ids.Length) throw new ArgumentException("logits longer than the vocabulary");
        // IEEE maximum: the first NaN wins, so one vectorized pass finds a NaN or a +inf (either would pick token 0 or a random one;
        // -inf is a masked token)
        int top = TensorPrimitives.IndexOfMax(logits);
        if (top >= 0 && (float.IsNaN(logits[top]) || float.IsPositiveInfinity(logits[top]))) throw new NonFiniteLogitsException(top, logits[top]);
        int allowed = _grammar?.Mask(logits) ?? logits.Length;
        int token = Choose(logits, allowed);
        _grammar?.Accept(token);
        return token;
    }

    /// <param name="logits">one position's logits, already masked by the grammar; penalties change them in place.</param>
    /// <param name="allowed">how many logits are not -inf after the grammar mask: candidates beyond them are cut.</param>
    private int Choose(Span<float> logits, int allowed)
    {
        ApplyPenalties(logits);
        if (_o.IsGreedy) return ArgMax(logits);

        int n = logits.Length;
        for (int i = 0; i < n; i++) { _ids[i] = i; _values[i] = logits[i]; }

        // top-k: keep the k largest, sorted descending.
        int k = Math.Min(_o.TopK <= 0 ? n : Math.Min(_o.TopK, n), allowed);
        SortDescendingTop(n, k);
        n = k;

        // top-p: smallest prefix whose probability mass reaches p (min_keep 1).
        if (_o.TopP < 1)
        {
            Softmax(n, out var probs);
            float cum = 0;
            int keep = n;
            for (int i = 0; i < n; i++)
            {
                cum += probs[i];
                if (cum >= _o.TopP) { keep = i + 1; break; }
            }
            n = keep;
        }

        // min-p: drop tokens whose probability is below min_p x the top probability.
        if (_o.MinP > 0 && n > 1)
        {
            float threshold = _values[0] + MathF.Log(_o.MinP);
            int keep = 1;
            while (keep < n && _values[keep] >= threshold) keep++;
            n = keep;
        }

        // temperature, then a draw.
        for (int i = 0; i < n; i++) _values[i] /= _o.Temperature;
        Softmax(n, out var p);
        double r = _rng.NextDouble();
        double acc = 0;
        for (int i = 0; i < n; i++)
        {
            acc += p[i];
            if (r < acc) return _ids[i];
        }
        return _ids[n - 1];
    }

    private void ApplyPenalties(Span<float> logits)
    {
        bool any = _o.RepeatPenalty != 1 || _o.FrequencyPenalty != 0 || _o.PresencePenalty != 0;
        if (!any || _historyCount == 0) return;
        _counts.Clear();
        for (int i = 0; i < _historyCount; i++)
        {
            int t = _history[(_historyStart + i) % _history.Length];
            _counts[t] = _counts.GetValueOrDefault(t) + 1;
        }
        foreach (var (token, count) in _counts)
        {
            if ((uint)token >= (uint)logits.Length) continue;
            ref float l = ref logits[token];
            l = l <= 0 ? l * _o.RepeatPenalty : l / _o.RepeatPenalty;
            l -= count * _o.FrequencyPenalty + _o.PresencePenalty;
        }
    }

    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    /// <summary>Moves the k largest (value, id) pairs to the front, sorted descending (ties: lower id first).</summary>
    private void SortDescendingTop(int n, int k)
    {
        if (k < n)
        {
            // Min-heap of the k best over the first k slots.
            for (int i = k / 2 - 1; i >= 0; i--) SiftDown(i, k);
            for (int i = k; i < n; i++)
            {
                if (Better(i, 0))
                {
                    (_values[0], _values[i]) = (_values[i], _values[0]);
                    (_ids[0], _ids[i]) = (_ids[i], _ids[0]);
                    SiftDown(0, k);
                }
            }
        }
        _values.AsSpan(0, k).Sort(_ids.AsSpan(0, k), Descending.Instance);
    }

    /// <summary>A comparer object rather than a Comparison delegate: sorting with a delegate allocates a wrapper per call.</summary>
    private sealed class Descending : IComparer<float>
    {
        public static readonly Descending Instance = new();
        public int Compare(float a, float b) => b.CompareTo(a);
    }

    private bool Better(int a, int b) => _values[a] > _values[b] || (_values[a] == _values[b] && _ids[a] < _ids[b]);

    private void SiftDown(int i, int size)
    {
        while (true)
        {
            int l = 2 * i + 1, r = l + 1, worst = i;
            if (l < size && Better(worst, l)) worst = l;
            if (r < size && Better(worst, r)) worst = r;
            if (worst == i) return;
            (_values[i], _values[worst]) = (_values[worst], _values[i]);
            (_ids[i], _ids[worst]) = (_ids[worst], _ids[i]);
            i = worst;
        }
    }

    /// <summary>Probabilities of the first n candidates (values sorted descending), written to a scratch view.</summary>
    private readonly float[] _probs;

    private void Softmax(int n, out ReadOnlySpan<float> probs)
    {
        float max = _values[0];
        double sum = 0;
        for (int i = 0; i < n; i++) { _probs[i] = MathF.Exp(_values[i] - max); sum += _probs[i]; }
        for (int i = 0; i < n; i++) _probs[i] = (float)(_probs[i] / sum);
        probs = _probs.AsSpan(0, n);
    }
}
