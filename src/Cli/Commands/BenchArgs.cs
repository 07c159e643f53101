using System.CommandLine;
using System.Globalization;
using Infer.Cli.Options;
using Infer.Kernels.Gpu;
using Infer.Runtime.Backend;

namespace Infer.Cli.Commands;

/// <summary>
/// The settings of <c>infer bench</c>. As llama-bench, -p, -n, -d, -t, -ctk and -ctv take comma lists (<c>-p 128,512 -d 0,4096
/// -t 1,2</c>) and every combination runs in turn.
/// </summary>
/// <param name="Source">-m FILE or -hf REPO.</param>
/// <param name="Prompt">-p: prompt lengths of the pp tests (0: none).</param>
/// <param name="Gen">-n: tokens of the tg tests (0: none).</param>
/// <param name="Depth">-d: tokens already in the KV cache before each test.</param>
/// <param name="Threads">-t: CPU threads (0: every core).</param>
/// <param name="TypeK">-ctk: K cache types; null is the default (f16).</param>
/// <param name="TypeV">-ctv: V cache types.</param>
/// <param name="Repetitions">-r: timed runs per test (after one warm-up run).</param>
/// <param name="Output">-o: md, json, jsonl or csv.</param>
/// <param name="NoBandwidth">--no-bandwidth: skip measuring the read bandwidth.</param>
/// <param name="Repack">false with --no-repack.</param>
/// <param name="Profile">--profile: time each operation (CPU backend).</param>
/// <param name="Device">--device.</param>
/// <param name="GpuLayers">-ngl; null: every layer on the GPU, if there is one.</param>
internal sealed record BenchArgs(ModelSource Source, int[] Prompt, int[] Gen, int[] Depth, int[] Threads, KvCacheType?[] TypeK,
    KvCacheType?[] TypeV, int Repetitions, string Output, bool NoBandwidth, bool Repack, bool Profile, DeviceRequest Device, int? GpuLayers)
{
    /// <summary>bench's options, defined and read in this one place.</summary>
    internal sealed class Options
    {
        private readonly Option<string> _prompt = Counts("--n-prompt", "-p", "prompt tokens of the pp tests (0 skips them)", "512");
        private readonly Option<string> _gen = Counts("--n-gen", "-n", "generated tokens of the tg tests (0 skips them)", "128");
        private readonly Option<string> _depth = Counts("--n-depth", "-d", "tokens of context already in the KV cache before each test", "0");
        private readonly Option<string> _threads = Counts("--threads", "-t", "CPU threads (0: one per logical core)", "0")
            .Check(v => TryInts(v, int.MaxValue, out var counts)
                ? counts.Select(RuntimeOptions.CheckThreads).FirstOrDefault(m => m is not null) : null);
        private readonly Option<string?> _typeK = CacheTypes("--cache-type-k", "-ctk", "keys");
        private readonly Option<string?> _typeV = CacheTypes("--cache-type-v", "-ctv", "values");
        private readonly Option<int> _reps = new Option<int>("--repetitions", "-r")
        {
            Description = "timed runs per test", HelpName = "N", DefaultValueFactory = _ => 5,
        }.Check(v => v >= 1 ? null : $"-r must be at least 1, got {v}");
        private readonly Option<string> _output = new Option<string>("--output", "-o")
        {
            Description = "md (a table), json (one object with a results array), jsonl or csv (one test per line, llama-bench's fields)",
            HelpName = "md|json|jsonl|csv", DefaultValueFactory = _ => "md",
        }.Check(v => v is "md" or "json" or "jsonl" or "csv" ? null : $"-o must be md, json, jsonl or csv, got '{v}'")
         .Suggest("md", "json", "jsonl", "csv");
        private readonly Option<bool> _noBandwidth = new("--no-bandwidth") { Description = "skip measuring the read bandwidth" };
        private readonly Option<bool> _profile = new("--profile") { Description = "time every operation (CPU backend)" };
        private readonly ModelSourceOptions _source = new();
        private readonly RuntimeOptions _runtime = new();

        public void AddTo(Command command)
        {
            foreach (Option o in new Option[] { _prompt, _gen, _depth, _threads, _typeK, _typeV, _reps, _output, _noBandwidth, _profile })
                command.Options.Add(o);
            _source.AddTo(command);
            _runtime.AddTo(command, contextAndBatch: false, threadsAndCacheTypes: false);
        }

        public BenchArgs Read(ParseResult r)
        {
            var o = new BenchArgs(_source.Read(r), Ints(r.GetValue(_prompt)!), Ints(r.GetValue(_gen)!), Ints(r.GetValue(_depth)!),
                Ints(r.GetValue(_threads)!), Types(r.GetValue(_typeK)), Types(r.GetValue(_typeV)), r.GetValue(_reps), r.GetValue(_output)!,
                r.GetValue(_noBandwidth), !r.GetValue(_runtime.NoRepack), r.GetValue(_profile), _runtime.ReadDevice(r), _runtime.ReadGpuLayers(r));
            if (o.Prompt.All(p => p == 0) && o.Gen.All(n => n == 0)) throw new UsageException("nothing to run: -p and -n are all 0");
            return o;
        }

        /// <summary>A comma list of integers in [0, <paramref name="max"/>] (one value is a list of one).</summary>
        private static Option<string> Counts(string name, string alias, string description, string fallback, int max = int.MaxValue) =>
            new Option<string>(name, alias)
            {
                Description = description + "; a comma list runs each", HelpName = "N[,N...]", DefaultValueFactory = _ => fallback,
            }.Check(v => TryInts(v, max, out _) ? null : $"{alias} expects integers from 0 to {max}, separated by commas, got '{v}'");

        private static Option<string?> CacheTypes(string name, string alias, string what) => new Option<string?>(name, alias)
        {
            Description = $"how the KV cache stores {what} (f32, f16 or q8_0; a comma list runs each) [default: f16]",
            HelpName = "TYPE[,TYPE...]",
        }.Check(v => v is null || RuntimeOptions.ParseCacheTypes(v, list: true, out _) ? null
            : $"{alias} must be f32, f16 or q8_0 (or a comma list of them), got '{v}'");

        private static bool TryInts(string text, int max, out int[] values)
        {
            var parts = text.Split(',', StringSplitOptions.TrimEntries);
            values = new int[parts.Length];
            for (int i = 0; i < parts.Length; i++)
                if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out values[i]) || values[i] < 0 || values[i] > max)
                    return false;
            return true;
        }

        private static int[] Ints(string text) =>
            TryInts(text, int.MaxValue, out var values) ? values : throw new UsageException($"bad list '{text}'");

        private static KvCacheType?[] Types(string? text) =>
            text is not null && RuntimeOptions.ParseCacheTypes(text, list: true, out var types) ? [.. types.Select(t => (KvCacheType?)t)] : [null];
    }
}
