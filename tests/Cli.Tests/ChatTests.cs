using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Infer.Kernels.Cpu;
using Infer.Runtime.Gguf;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Runtime.Sampling;
using Infer.Runtime.Tokenizers;
using Infer.Templates;
using Infer.Tests;

namespace Infer.Cli.Tests;

/// <summary>
/// Chat: the model's own template and tokenization against the fixtures, KV-cache reuse across turns, and the
/// <c>infer chat</c> process.
/// </summary>
public class ChatTests
{
    private static readonly SamplerOptions Greedy = new() { Temperature = 0 };

    private sealed class Loaded : IDisposable
    {
        public required GgufFile File;
        public required LlamaModel Model;
        public required Tokenizer Tokenizer;
        public ChatSession Chat(string? system = null, int ctx = 0, ContextOverflowPolicy policy = ContextOverflowPolicy.Stop, int maxReply = 8) =>
            new(Model, Tokenizer, ChatTemplate.Parse(ChatSession.TemplateFromGguf(File) ?? ChatSession.FallbackTemplate), Greedy, system)
            { MaxReplyTokens = maxReply, OverflowPolicy = policy };
        public void Dispose() { Model.Dispose(); File.Dispose(); }
    }

    private static Loaded Load(string name, int ctx = 512)
    {
        var f = GgufFile.Open(Fixtures.Model(name, "bf16"));
        return new Loaded
        {
            File = f, Tokenizer = Tokenizer.FromGguf(f), Model = LlamaModel.Load(f, new CpuBackend(2), new ModelOptions(ContextLength: ctx)),
        };
    }

    [Theory]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    public void ChatTurnTokensEqualTheFixture(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.ModelDir(name), "reference", "reference.json")));
        var c = doc.RootElement.GetProperty("cases").EnumerateArray().First(e => e.GetProperty("id").GetString() == "chat");
        var messages = c.GetProperty("messages").EnumerateArray()
            .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList();
        using var m = Load(name);
        var chat = m.Chat(system: messages[0].Content);
        string rendered = chat.Render(messages.Skip(1).ToList(), addGenerationPrompt: true);
        Assert.Equal(c.GetProperty("rendered").GetString(), rendered);
        Assert.Equal(c.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(), chat.Tokenize(rendered));
    }

    [Fact]
    public void SecondTurnEvaluatesOnlyItsNewTokens()
    {
        using var m = Load("qwen3");
        var chat = m.Chat(system: "You are a helpful assistant.");
        var first = chat.Respond("What is the capital of France?", _ => { });
        Assert.Equal(chat.Session.Count, first.PromptTokens + first.GeneratedTokens);
        int[] cached = chat.Session.Tokens.ToArray();

        var second = chat.Respond("And of Italy?", _ => { });
        int[] full = chat.Tokenize(chat.Render(chat.Messages.Take(3).ToList(), addGenerationPrompt: true));
        int shared = 0;
        while (shared < Math.Min(cached.Length, full.Length) && cached[shared] == full[shared]) shared++;
        Assert.True(shared > first.PromptTokens / 2, $"only {shared} tokens shared");
        Assert.Equal(full.Length - shared, second.PromptTokens);
        Assert.True(second.PromptTokens < full.Length / 2, $"evaluated {second.PromptTokens} of {full.Length}");

        // The reused cache gives what evaluating the whole conversation from scratch gives.
        using var m2 = Load("qwen3");
        var fresh = new Session(m2.Model);
        fresh.Append(full);
        var ids = new List<int>();
        for (int i = 0; i < second.GeneratedTokens; i++)
        {
            ids.Add(Sampler.ArgMax(fresh.Logits));
            fresh.Append(ids[^1]);
        }
        Assert.Equal(m.Tokenizer.Decode(ids.ToArray()), second.Text);
    }

    [Fact]
    public void ContextOverflowStopRefusesAndShiftDropsOldTurns()
    {
        using var m = Load("qwen3", ctx: 96);
        var stop = m.Chat(maxReply: 8);
        string longText = string.Join(' ', Enumerable.Repeat("word", 40));
        stop.Respond(longText, _ => { });
        Assert.Throws<ContextFullException>(() => stop.Respond(longText, _ => { }));
        Assert.Equal(2, stop.Messages.Count); // the refused turn was not kept

        var shift = m.Chat(maxReply: 8, policy: ContextOverflowPolicy.Shift);
        shift.Reset();
        shift.Respond(longText, _ => { });
        var r = shift.Respond(longText, _ => { });
        Assert.Equal(2, r.DroppedTurns);
        Assert.Equal(2, shift.Messages.Count);
    }

    // ---- the process ----

    private static string InferDll => Path.Combine(AppContext.BaseDirectory, "infer.dll");

    private static Process Start(params string[] args)
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
        psi.ArgumentList.Add(InferDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    [Fact]
    public void PipedChatPrintsOnlyTheReplies()
    {
        string model = Fixtures.Model("qwen3", "bf16");
        using var p = Start("chat", "-m", model, "--temp", "0", "-n", "6", "-t", "2", "-sys", "You are a helpful assistant.");
        p.StandardInput.WriteLine("Hello!");
        p.StandardInput.WriteLine("Tell me more.");
        p.StandardInput.Close();
        string stdout = p.StandardOutput.ReadToEnd();
        string stderr = p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(60_000));
        Assert.True(p.ExitCode == 0, stderr);

        // The same conversation in-process gives the replies the process must print, one per line.
        using var m = Load("qwen3");
        var chat = m.Chat(system: "You are a helpful assistant.", maxReply: 6);
        string r1 = chat.Respond("Hello!", _ => { }).Text;
        string r2 = chat.Respond("Tell me more.", _ => { }).Text;
        Assert.Equal(r1 + "\n" + r2 + "\n", stdout);
    }

    /// <summary>
    /// /help lists the commands, /bye ends the chat as in Ollama, and a mistyped command is reported, not sent to the model; a
    /// line that only starts with a slash (a path) is a message. Only that message's reply is printed.
    /// </summary>
    [Fact]
    public void ChatCommandsHelpAndUnknownOnesAreNotSentToTheModel()
    {
        string model = Fixtures.Model("qwen3", "bf16");
        using var p = Start("chat", "-m", model, "--temp", "0", "-n", "4", "-t", "2");
        p.StandardInput.WriteLine("/help");
        p.StandardInput.WriteLine("/?");
        p.StandardInput.WriteLine("/frobnicate now");
        p.StandardInput.WriteLine("/etc/hosts is a file");
        p.StandardInput.WriteLine("/bye");
        p.StandardInput.WriteLine("never read");
        p.StandardInput.Close();
        string stdout = p.StandardOutput.ReadToEnd();
        string stderr = p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(60_000));
        Assert.True(p.ExitCode == 0, stderr);
        Assert.Equal(2, stderr.Split('\n').Count(l => l.StartsWith("commands: /exit")));
        Assert.Contains("unknown command /frobnicate", stderr);

        using var m = Load("qwen3");
        string reply = m.Chat(system: null, maxReply: 4).Respond("/etc/hosts is a file", _ => { }).Text;
        Assert.Equal(reply + "\n", stdout);
    }

    [Fact]
    public async Task SigintStopsTheReplyAndTheChatContinues()
    {
        string model = Fixtures.Model("qwen3", "bf16");
        // Replies run until the 4096-token context is full unless interrupted: long enough to interrupt (with 1024 the tiny
        // fixture once finished its whole reply between its first output and the signal).
        using var p = Start("chat", "-m", model, "--temp", "0", "-c", "4096", "-t", "1");
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        Task Pump(StreamReader r, StringBuilder sb) => Task.Run(() =>
        {
            var buf = new char[256];
            int n;
            while ((n = r.Read(buf, 0, buf.Length)) > 0) lock (sb) sb.Append(buf, 0, n);
        });
        string Read(StringBuilder sb) { lock (sb) return sb.ToString(); }
        bool WaitFor(Func<bool> condition, int ms)
        {
            var sw = Stopwatch.StartNew();
            while (!condition()) { if (sw.ElapsedMilliseconds > ms) return false; Thread.Sleep(20); }
            return true;
        }
        var pumps = new[] { Pump(p.StandardOutput, stdout), Pump(p.StandardError, stderr) };

        p.StandardInput.WriteLine("Write a very long story.");
        p.StandardInput.Flush();
        Assert.True(WaitFor(() => Read(stdout).Length > 0, 60_000), "no reply started");
        if (SigIntIgnored(p.Id))
        {
            p.Kill();
            // A test run started as a background job of a shell without job control (`cmd &` in a script) passes SIGINT on
            // ignored, so no Ctrl+C can reach the chat it starts: the check cannot run here.
            Assert.Skip("SIGINT is ignored in this test run (a background job without job control): the chat cannot be interrupted");
        }
        // Signalled through libc, not a spawned `kill`: on a loaded 2-core CI machine the spawn alone could outlast the reply.
        Assert.Equal(0, Kill(p.Id, SigInt));
        Assert.True(WaitFor(() => Read(stderr).Contains("[interrupted]"), 30_000), "the reply was not interrupted: " + Read(stderr));
        int afterFirst = Read(stdout).Length;

        // Back at the prompt: the next line is answered.
        p.StandardInput.WriteLine("/system Be brief.");
        p.StandardInput.WriteLine("Hi");
        p.StandardInput.Close();
        Assert.True(p.WaitForExit(120_000), "chat did not exit");
        await Task.WhenAll(pumps).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, p.ExitCode);
        Assert.Contains("system prompt set", Read(stderr));
        Assert.True(Read(stdout).Length > afterFirst + 1, "no second reply");
    }

    private const int SigInt = 2;

    /// <summary>Whether process <paramref name="pid"/> ignores SIGINT (Linux: the SigIgn mask of /proc/PID/status).</summary>
    private static bool SigIntIgnored(int pid)
    {
        string status = $"/proc/{pid}/status";
        if (!File.Exists(status)) return false;
        string? line = File.ReadLines(status).FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        return line is not null && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & (1UL << (SigInt - 1))) != 0;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);
}
