using System.Diagnostics;
using System.Text;

namespace Infer.Cli.Tests;

/// <summary>The built <c>infer</c> executable run as a user runs it: a separate process, its exit code and both output streams.</summary>
internal static class InferProcess
{
    public sealed record Result(int Code, string Out, string Err)
    {
        /// <summary>stderr's lines, without the empty one after the last newline.</summary>
        public string[] ErrLines => Err.Replace("\r\n", "\n").TrimEnd('\n').Split('\n', StringSplitOptions.None);
    }

    public static string Dll => Path.Combine(AppContext.BaseDirectory, "infer.dll");

    /// <summary>Starts infer with redirected streams; <paramref name="environment"/> entries with a null value are removed.</summary>
    public static Process Start(IEnumerable<string> args, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        psi.ArgumentList.Add(Dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("HF_TOKEN");
        psi.Environment.Remove("HF_HUB_OFFLINE");
        foreach (var (key, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null) psi.Environment.Remove(key);
            else psi.Environment[key] = value;
        }
        return Process.Start(psi)!;
    }

    /// <summary>
    /// Runs to the end with <paramref name="stdin"/> piped in; fails the test if it takes longer than
    /// <paramref name="timeoutSeconds"/>.
    /// </summary>
    public static Result Run(string[] args, string stdin = "", IReadOnlyDictionary<string, string?>? environment = null, int timeoutSeconds = 120)
    {
        using var p = Start(args, environment);
        return Finish(p, stdin, timeoutSeconds);
    }

    public static Result Run(params string[] args) => Run(args, "");

    /// <summary>A started process whose output is collected as it comes, so a test can wait for a line before going on.</summary>
    public sealed class Live : IDisposable
    {
        private readonly StringBuilder _out = new(), _err = new();
        private readonly Task _pumps;

        public Live(IEnumerable<string> args, IReadOnlyDictionary<string, string?>? environment = null)
        {
            Process = Start(args, environment);
            Process.StandardInput.Close();
            _pumps = Task.WhenAll(Pump(Process.StandardOutput, _out), Pump(Process.StandardError, _err));
        }

        public Process Process { get; }

        public string Err { get { lock (_err) return _err.ToString(); } }

        /// <summary>Waits until stderr satisfies <paramref name="condition"/>; false after <paramref name="timeoutSeconds"/>.</summary>
        public bool WaitForErr(Func<string, bool> condition, int timeoutSeconds = 60)
        {
            var sw = Stopwatch.StartNew();
            while (!condition(Err))
            {
                if (sw.Elapsed.TotalSeconds > timeoutSeconds || Process.HasExited && _pumps.IsCompleted && !condition(Err)) return false;
                Thread.Sleep(20);
            }
            return true;
        }

        public Result Finish(int timeoutSeconds = 120)
        {
            if (!Process.WaitForExit(timeoutSeconds * 1000))
            {
                Process.Kill(entireProcessTree: true);
                Assert.Fail($"infer did not finish within {timeoutSeconds} s; stderr so far: {Err}");
            }
            Process.WaitForExit();
            _pumps.Wait(TimeSpan.FromSeconds(30));
            lock (_out) return new Result(Process.ExitCode, _out.ToString(), Err);
        }

        public void Dispose()
        {
            if (!Process.HasExited) Process.Kill(entireProcessTree: true);
            Process.Dispose();
        }

        private static Task Pump(StreamReader reader, StringBuilder into) => Task.Run(() =>
        {
            var buffer = new char[4096];
            int n;
            while ((n = reader.Read(buffer, 0, buffer.Length)) > 0)
                lock (into) into.Append(buffer, 0, n);
        });
    }

    public static Result Finish(Process p, string stdin = "", int timeoutSeconds = 120)
    {
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            p.StandardInput.Write(stdin);
            p.StandardInput.Close();
        }
        catch (IOException) { } // it exited before reading its input
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"infer did not finish within {timeoutSeconds} s; stderr so far: {(stderr.IsCompleted ? stderr.Result : "")}");
        }
        p.WaitForExit();
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }
}
