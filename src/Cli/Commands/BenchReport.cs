using System.Globalization;
using System.Reflection;
using System.Text.Json;
using Infer.Kernels.Cpu;
using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;
using Infer.Runtime.Gguf;
using Infer.Runtime.Model;

namespace Infer.Cli.Commands;

/// <summary>
/// What <c>infer bench</c> measured and how it prints it: a markdown table (md), one JSON object with a <c>results</c> array
/// (json: <c>results[].test</c>, <c>tokens_per_second</c>, <c>stddev</c> and the top-level <c>backend</c> are what
/// ../shared/scripts/ref-bench reads), or one object per test (jsonl) or one line per test (csv) with llama-bench's field
/// names (<c>n_prompt</c>, <c>n_gen</c>, <c>n_depth</c>, <c>n_threads</c>, <c>type_k</c>, <c>avg_ts</c>, <c>stddev_ts</c>, ...).
/// </summary>
internal sealed class BenchReport(GgufFile file, string path, ModelConfig config)
{
    private sealed record Row(string Backend, string Placement, int? Threads, string TypeK, string TypeV, int GpuLayers, string GpuInfo,
        int Batch, int NPrompt, int NGen, int NDepth, DateTime TestTime, double[] SamplesTs, long[] SamplesNs, double? GBs, double? Fraction,
        long? Rss)
    {
        public string Test => (NPrompt > 0 ? $"pp{NPrompt}" : $"tg{NGen}") + (NDepth > 0 ? $" @ d{NDepth}" : "");
        public double Mean => SamplesTs.Average();
        public double Std => StdDev(SamplesTs);
    }

    private readonly List<Row> _rows = [];
    private readonly List<(string Test, int Tokens, IReadOnlyList<ProfilingBackend.Entry> Entries)> _profiles = [];
    private readonly List<string> _notes = [];
    private readonly long _modelBytes = file.Tensors.Sum(t => t.ByteSize);
    private readonly long _parameters = file.Tensors.Sum(t => t.ElementCount);
    private LlamaModel _model = null!;
    private GpuBackend? _gpu;
    private CpuBackend? _cpu;
    private ProcessMemory? _afterLoad, _afterTests;
    private TimeSpan _loadTime;
    private long _kvCacheBytes;
    private string? _modelName;
    private readonly Dictionary<int, double> _bandwidths = [];

    /// <summary>Decode reads every weight once, but only one row of the embedding table (unless it doubles as the output).</summary>
    private long BytesPerToken
    {
        get
        {
            var embd = file.GetTensor("token_embd.weight");
            return _modelBytes - (config.TiedOutput ? 0 : embd.ByteSize - embd.RowBytes);
        }
    }

    /// <summary>A model is loaded for the next tests; <paramref name="memory"/> is the first load's resident memory.</summary>
    public void Loaded(LlamaModel model, GpuBackend? gpu, CpuBackend? cpu, TimeSpan loadTime, ProcessMemory? memory)
    {
        _model = model;
        _gpu = gpu;
        _cpu = cpu;
        if (_modelName is not null) return;
        _modelName = $"{config.Architecture} {Units.FormatCount(_parameters)} {DominantType(file)}"
            + (cpu?.RepackedBytes > 0 ? " (repacked)" : "");
        _afterLoad = memory;
        _loadTime = loadTime;
        _kvCacheBytes = model.KvCacheBytes;
    }

    public void TestsDone(ProcessMemory? memory) => _afterTests = memory;

    /// <summary>One test's timed runs on the loaded model (<paramref name="bandwidth"/>: the CPU's, for tg's roofline column).</summary>
    public void Add(int nPrompt, int nGen, int depth, TimeSpan[] samples, int tokens, ProfilingBackend? profiler, double bandwidth = 0)
    {
        var m = _model;
        var cacheOwner = m.Placement[^1];
        int gpuLayers = _gpu is null ? 0 : m.Placement[0].Count;
        string backend = _gpu is null ? "cpu" : _cpu is null ? _gpu.Name : $"{_gpu.Name} {gpuLayers}/{config.BlockCount} + cpu";
        double[] ts = samples.Select(s => tokens / s.TotalSeconds).ToArray();
        double? gbs = nGen > 0 ? BytesPerToken * ts.Average() / 1e9 : null;
        if (_cpu is not null && bandwidth > 0) _bandwidths[_cpu.ThreadCount] = bandwidth;
        var row = new Row(backend, m.DescribePlacement(), _cpu?.ThreadCount, KvCacheTypes.Name(cacheOwner.KType),
            KvCacheTypes.Name(cacheOwner.VType), gpuLayers, _gpu?.Description ?? "", m.BatchSize, nPrompt, nGen, depth,
            DateTime.UtcNow - samples.Aggregate(TimeSpan.Zero, (x, y) => x + y),
            ts, samples.Select(s => (long)(s.TotalSeconds * 1e9)).ToArray(), gbs, gbs is { } g && bandwidth > 0 ? g * 1e9 / bandwidth : null,
            ProcessMemory.Read()?.Resident);
        _rows.Add(row);
        if (profiler is not null) _profiles.Add((row.Test, tokens * samples.Length, profiler.Snapshot()));
        if (_gpu is not null && nPrompt > 0) _notes.Add(_gpu.Int8GemmStatus); // the notes print once each (Distinct)
        if (_gpu is not null && nGen > 0)
            _notes.Add($"{_gpu.Description}: {_gpu.LaunchesThisBatch} kernel launches per decoded token"
                + (_cpu is null ? "" : $" ({gpuLayers} of {config.BlockCount} layers)"));
    }

    public void Write(TextWriter w, string format)
    {
        switch (format)
        {
            case "json": w.WriteLine(JsonSerializer.Serialize(Document())); break;
            case "jsonl": foreach (var r in _rows) w.WriteLine(JsonSerializer.Serialize(LlamaBenchFields(r))); break;
            case "csv": WriteCsv(w); break;
            default: WriteMarkdown(w); break;
        }
    }

    private object Document() => new
    {
        model = _modelName, file = path, size_bytes = _modelBytes, parameters = _parameters, threads = _rows.FirstOrDefault()?.Threads,
        kernel_launches_per_token = _gpu?.LaunchesThisBatch,
        gpu_int8_gemm = _gpu?.Int8GemmStatus, backend = _rows.FirstOrDefault()?.Placement, bytes_per_token = BytesPerToken,
        read_bandwidth_gbs = _bandwidths.Count > 0 ? _bandwidths.First().Value / 1e9 : 0,
        memory = new
        {
            rss_after_load_bytes = _afterLoad?.Resident, rss_anon_after_load_bytes = _afterLoad?.Anonymous,
            rss_file_after_load_bytes = _afterLoad?.FileBacked, rss_after_tests_bytes = _afterTests?.Resident,
            rss_anon_after_tests_bytes = _afterTests?.Anonymous, rss_file_after_tests_bytes = _afterTests?.FileBacked,
            rss_peak_bytes = _afterTests?.Peak, weights_bytes = _modelBytes, kv_cache_bytes = _kvCacheBytes, load_seconds = _loadTime.TotalSeconds,
        },
        results = _rows.Select(Result),
        profile = _profiles.Count == 0 ? null : _profiles.Select(pr => new
        {
            test = pr.Test,
            operations = pr.Entries.Select(e => new
            {
                operation = e.Operation, calls = e.Calls, microseconds_per_token = e.Time.TotalMicroseconds / pr.Tokens,
            }),
        }),
    };

    /// <summary>One test of the json document: our figures first, then llama-bench's fields.</summary>
    private Dictionary<string, object?> Result(Row r)
    {
        var result = new Dictionary<string, object?>
        {
            ["test"] = r.Test, ["tokens_per_second"] = r.Mean, ["stddev"] = r.Std, ["gbs"] = r.GBs, ["fraction_of_bandwidth"] = r.Fraction,
        };
        foreach (var (key, value) in LlamaBenchFields(r)) result.TryAdd(key, value);
        return result;
    }

    /// <summary>llama-bench's fields for one test, in its order (n_depth where its newer versions put it), then ours.</summary>
    private Dictionary<string, object?> LlamaBenchFields(Row r) => new()
    {
        ["build_commit"] = BuildCommit(), ["build_number"] = 0, ["cpu_info"] = CpuInfo(), ["gpu_info"] = r.GpuInfo,
        ["backends"] = r.GpuLayers > 0 ? (_cpu is null ? "GPU" : "GPU,CPU") : "CPU", ["model_filename"] = path, ["model_type"] = _modelName,
        ["model_size"] = _modelBytes, ["model_n_params"] = _parameters, ["n_batch"] = r.Batch, ["n_ubatch"] = r.Batch, ["n_threads"] = r.Threads,
        ["type_k"] = r.TypeK, ["type_v"] = r.TypeV, ["n_gpu_layers"] = r.GpuLayers, ["flash_attn"] = true, ["use_mmap"] = true,
        ["n_prompt"] = r.NPrompt, ["n_gen"] = r.NGen, ["n_depth"] = r.NDepth,
        ["test_time"] = r.TestTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
        ["avg_ns"] = (long)r.SamplesNs.Average(), ["stddev_ns"] = (long)StdDev(r.SamplesNs.Select(x => (double)x).ToArray()),
        ["avg_ts"] = r.Mean, ["stddev_ts"] = r.Std, ["samples_ns"] = r.SamplesNs, ["samples_ts"] = r.SamplesTs,
        ["test"] = r.Test, ["backend"] = r.Backend, ["rss_bytes"] = r.Rss,
    };

    private void WriteCsv(TextWriter w)
    {
        string[] skip = ["samples_ns", "samples_ts"];
        bool header = true;
        foreach (var r in _rows)
        {
            var fields = LlamaBenchFields(r).Where(f => !skip.Contains(f.Key)).ToList();
            if (header) w.WriteLine(string.Join(",", fields.Select(f => f.Key)));
            header = false;
            w.WriteLine(string.Join(",", fields.Select(f => Csv(f.Value))));
        }
    }

    private static string Csv(object? v) => "\"" + (v switch
    {
        null => "",
        bool b => b ? "1" : "0",
        double d => d.ToString("F6", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => v.ToString(),
    })!.Replace("\"", "\"\"") + "\"";

    private void WriteMarkdown(TextWriter w)
    {
        // like llama-bench, the cache types get columns only when a row does not use the default
        bool types = _rows.Any(r => r.TypeK != KvCacheTypes.Name(KvCacheTypes.Default) || r.TypeV != KvCacheTypes.Name(KvCacheTypes.Default));
        string size = Units.FormatSize(_modelBytes), pars = Units.FormatCount(_parameters);
        w.WriteLine($"| model | size | params | backend | threads |{(types ? " type_k | type_v |" : "")} test | t/s | GB/s | % of read BW |");
        w.WriteLine($"| --- | ---: | ---: | --- | ---: |{(types ? " --- | --- |" : "")} ---: | ---: | ---: | ---: |");
        foreach (var r in _rows)
            w.WriteLine($"| {_modelName} | {size} | {pars} | {r.Backend} | {r.Threads?.ToString(CultureInfo.InvariantCulture) ?? "-"} |"
                + (types ? $" {r.TypeK} | {r.TypeV} |" : "")
                + $" {r.Test} | {r.Mean:F2} ± {r.Std:F2} | {(r.GBs is { } g ? g.ToString("F1") : "")} |"
                + $" {(r.Fraction is { } f ? (f * 100).ToString("F0") + "%" : "")} |");
        foreach (var (threads, bw) in _bandwidths)
            w.WriteLine($"\nmeasured read bandwidth: {bw / 1e9:F1} GB/s with {threads} threads; tg reads {BytesPerToken / 1e6:F0} MB per token");
        foreach (var note in _notes.Distinct()) w.WriteLine($"\n{note}");
        if (_afterLoad is { } load)
        {
            w.WriteLine($"\nresident memory after loading ({_loadTime.TotalSeconds:F2} s): {load}");
            if (_afterTests is { } done) w.WriteLine($"resident memory after the tests: {done}");
            w.WriteLine($"weights {Units.FormatSize(_modelBytes)} (mapped), KV cache {Units.FormatSize(_kvCacheBytes)} "
                + $"({_model.DescribeKvCache()}, "
                + $"{_model.ContextLength} positions)");
        }
        foreach (var (test, tokenCount, entries) in _profiles) WriteProfile(w, test, tokenCount, entries);
    }

    /// <summary>Per-operation time of one test, slowest first, as a markdown table.</summary>
    private static void WriteProfile(TextWriter stdout, string test, int tokens, IReadOnlyList<ProfilingBackend.Entry> entries)
    {
        double total = entries.Sum(e => e.Time.TotalSeconds);
        stdout.WriteLine($"\nprofile of {test} (operation time per token, over the timed runs):\n");
        stdout.WriteLine("| operation | calls per token | µs per token | % |");
        stdout.WriteLine("| --- | ---: | ---: | ---: |");
        foreach (var e in entries)
            stdout.WriteLine(
                $"| {e.Operation} | {(double)e.Calls / tokens:G3} | {e.Time.TotalMicroseconds / tokens:F1} |"
                + $" {e.Time.TotalSeconds / total * 100:F1} |");
    }

    /// <summary>
    /// The file's type as llama-bench names it from general.file_type ("Q4_K - Medium": a Q4_K_M file whose small tensors are
    /// Q8_0 or Q6_K is still a Q4_K_M file), else the type holding the most bytes.
    /// </summary>
    private static string DominantType(GgufFile f) =>
        f.TryGetInt("general.file_type") is { } ft && FileTypeNames.TryGetValue(ft, out var name) ? name
            : GgmlTypeInfo.Name(f.Tensors.GroupBy(t => t.Type).OrderByDescending(g => g.Sum(t => t.ByteSize)).First().Key);

    /// <summary>llama.cpp's llama_ftype values and the names llama_model_ftype_name gives them.</summary>
    private static readonly Dictionary<long, string> FileTypeNames = new()
    {
        [0] = "all F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [7] = "Q8_0", [8] = "Q5_0", [9] = "Q5_1",
        [10] = "Q2_K - Medium", [11] = "Q3_K - Small", [12] = "Q3_K - Medium", [13] = "Q3_K - Large",
        [14] = "Q4_K - Small", [15] = "Q4_K - Medium", [16] = "Q5_K - Small", [17] = "Q5_K - Medium", [18] = "Q6_K", [32] = "BF16",
    };

    private static double StdDev(double[] x)
    {
        if (x.Length < 2) return 0;
        double mean = x.Average();
        return Math.Sqrt(x.Sum(v => (v - mean) * (v - mean)) / (x.Length - 1));
    }

    /// <summary>The commit the SDK stamps into the informational version ("1.0.0+abc123"), or "unknown".</summary>
    private static string BuildCommit()
    {
        string? v = typeof(BenchReport).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
        int plus = v?.IndexOf('+') ?? -1;
        return plus >= 0 ? v![(plus + 1)..] : "unknown";
    }

    /// <summary>The first "model name" of /proc/cpuinfo (as llama-bench's cpu_info), or the architecture.</summary>
    private static string CpuInfo()
    {
        try
        {
            if (File.Exists("/proc/cpuinfo"))
                foreach (var line in File.ReadLines("/proc/cpuinfo"))
                    if (line.StartsWith("model name", StringComparison.Ordinal) && line.IndexOf(':') is int i and > 0) return line[(i + 1)..].Trim();
        }
        catch (IOException)
        {
        }
        return System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString();
    }
}
