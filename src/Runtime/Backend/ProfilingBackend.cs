using System.Diagnostics;
using Infer.Runtime.Gguf;

namespace Infer.Runtime.Backend;

/// <summary>
/// Wraps a backend and adds up the wall time of every operation, split by operation and, for matmuls, by weight role
/// (<c>blk.N.ffn_down.weight</c> counts as <c>ffn_down</c>) and type. Meant for a backend whose operations finish before they return
/// (the CPU backend); an asynchronous backend would be timed at its launches, and a fusing one loses its fusion here. Recording allocates nothing.
/// </summary>
public sealed class ProfilingBackend : ForwardingBackend
{
    private readonly IBackend _inner;
    private readonly List<string> _names = [];
    private readonly Dictionary<string, int> _slots = [];
    private readonly Dictionary<IWeight, int> _matMulSlots = new(ReferenceEqualityComparer.Instance);
    private long[] _ticks = new long[64];
    private long[] _calls = new long[64];
    private readonly int _embed, _rmsNorm, _addBias, _rope, _storeKv, _attention, _swiGlu, _add, _gather, _read, _copy, _setBatch, _matMulOther;

    public ProfilingBackend(IBackend inner) : base(inner)
    {
        _inner = inner;
        _setBatch = Slot("set batch");
        _embed = Slot("embed");
        _rmsNorm = Slot("rms norm");
        _addBias = Slot("add bias");
        _rope = Slot("rope");
        _storeKv = Slot("kv store");
        _attention = Slot("attention");
        _swiGlu = Slot("swiglu");
        _add = Slot("add");
        _gather = Slot("gather rows");
        _read = Slot("read row");
        _copy = Slot("host copy");
        _matMulOther = Slot("matmul");
    }

    /// <summary>One line of the profile: an operation (matmuls as "matmul ROLE TYPE"), its call count and total time.</summary>
    public readonly record struct Entry(string Operation, long Calls, TimeSpan Time);

    /// <summary>The operations recorded since the last <see cref="Reset"/>, slowest first.</summary>
    public IReadOnlyList<Entry> Snapshot()
    {
        var list = new List<Entry>();
        for (int i = 0; i < _names.Count; i++)
            if (_calls[i] > 0) list.Add(new Entry(_names[i], _calls[i], Stopwatch.GetElapsedTime(0, _ticks[i])));
        list.Sort((a, b) => b.Time.CompareTo(a.Time));
        return list;
    }

    /// <summary>Clears the counters.</summary>
    public void Reset()
    {
        Array.Clear(_ticks);
        Array.Clear(_calls);
    }

    private int Slot(string name)
    {
        if (_slots.TryGetValue(name, out int s)) return s;
        s = _names.Count;
        _names.Add(name);
        _slots[name] = s;
        if (s >= _ticks.Length)
        {
            Array.Resize(ref _ticks, _ticks.Length * 2);
            Array.Resize(ref _calls, _calls.Length * 2);
        }
        return s;
    }

    /// <summary>"blk.12.ffn_down.weight" → "ffn_down"; "output.weight" → "output".</summary>
    public static string Role(string tensorName)
    {
        string s = tensorName;
        if (s.StartsWith("blk.", StringComparison.Ordinal))
        {
            int dot = s.IndexOf('.', 4);
            if (dot > 0) s = s[(dot + 1)..];
        }
        if (s.EndsWith(".weight", StringComparison.Ordinal)) s = s[..^7];
        return s;
    }

    private void Record(int slot, long start)
    {
        _ticks[slot] += Stopwatch.GetTimestamp() - start;
        _calls[slot]++;
    }

    public override IWeight LoadWeight(GgufTensor tensor)
    {
        var w = _inner.LoadWeight(tensor);
        if (w.Rows > 1) _matMulSlots[w] = Slot($"matmul {Role(w.Name)} {GgmlTypeInfo.Name(w.Type)}");
        return w;
    }

    public override void SetBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> sequences)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.SetBatch(tokens, positions, sequences);
        Record(_setBatch, t);
    }

    public override void Embed(IWeight table, IActivation x)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.Embed(table, x);
        Record(_embed, t);
    }

    public override void RmsNorm(IActivation x, IWeight weight, float eps, IActivation y, int rows = -1)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.RmsNorm(x, weight, eps, y, rows);
        Record(_rmsNorm, t);
    }

    public override void MatMul(IWeight w, IActivation x, IActivation y, int rows = -1)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.MatMul(w, x, y, rows);
        Record(_matMulSlots.TryGetValue(w, out int s) ? s : _matMulOther, t);
    }

    public override void AddBias(IActivation y, IWeight bias)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.AddBias(y, bias);
        Record(_addBias, t);
    }

    public override void Rope(IActivation x, int headDim, RopeConfig rope)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.Rope(x, headDim, rope);
        Record(_rope, t);
    }

    public override void StoreKv(int layer, IActivation k, IActivation v)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.StoreKv(layer, k, v);
        Record(_storeKv, t);
    }

    public override void Attention(int layer, IActivation q, IActivation output, AttentionShape shape)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.Attention(layer, q, output, shape);
        Record(_attention, t);
    }

    // The fused operations run as their primitives through this decorator (ForwardingBackend), so each primitive is timed on
    // its own (the CPU backend, which this is meant for, composes them the same way).

    public override void SwiGlu(IActivation gate, IActivation up)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.SwiGlu(gate, up);
        Record(_swiGlu, t);
    }

    public override void Add(IActivation x, IActivation y)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.Add(x, y);
        Record(_add, t);
    }

    public override void GatherRows(IActivation src, ReadOnlySpan<int> rows, IActivation dst)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.GatherRows(src, rows, dst);
        Record(_gather, t);
    }

    public override void ReadRow(IActivation x, int row, Span<float> destination)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.ReadRow(x, row, destination);
        Record(_read, t);
    }

    public override void ReadRows(IActivation x, int rows, Span<float> destination)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.ReadRows(x, rows, destination);
        Record(_copy, t);
    }

    public override void WriteRows(IActivation x, ReadOnlySpan<float> source)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.WriteRows(x, source);
        Record(_copy, t);
    }

}
