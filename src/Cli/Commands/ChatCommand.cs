using System.CommandLine;
using System.Runtime.InteropServices;
using Infer.Cli.Options;
using Infer.Runtime.Grammar;
using Infer.Runtime.Inference;
using Infer.Runtime.Model;
using Infer.Runtime.Sampling;
using Infer.Templates;

namespace Infer.Cli.Commands;

/// <summary>
/// <c>infer chat -m MODEL [-sys TEXT] [-c CONTEXT] [sampling options] [--chat-template-file FILE] [--ctx-overflow stop|shift]</c>.
/// Interactive on a terminal (progress bar, summary, streamed replies, tokens/s, /exit /reset /system, Ctrl+C stops a
/// reply); with piped stdin each line is one user turn and only the replies are printed.
/// </summary>
internal static class ChatCommand
{
    public static Command Create(CliContext io)
    {
        var system = new Option<string?>("--system-prompt", "-sys") { Description = "the system prompt", HelpName = "TEXT" };
        var templateFile = new Option<string?>("--chat-template-file")
        {
            Description = "a Jinja chat template instead of the model's", HelpName = "FILE",
        };
        var overflow = new Option<string>("--ctx-overflow")
        {
            Description = "when the context is full: stop says so, shift drops the oldest turns", HelpName = "stop|shift",
            DefaultValueFactory = _ => "stop",
        }.Check(v => v is "stop" or "shift" ? null : $"--ctx-overflow must be stop or shift, got '{v}'").Suggest("stop", "shift");
        var shift = new Option<bool>("--context-shift") { Description = "llama.cpp's spelling of --ctx-overflow shift" };
        var noShift = new Option<bool>("--no-context-shift") { Description = "llama.cpp's spelling of --ctx-overflow stop" };
        var maxReply = RunCommand.PredictOption(-1, "most tokens per reply; -1 until the context is full or the model stops");
        var source = new ModelSourceOptions();
        var runtime = new RuntimeOptions();
        var sampling = new SamplingOptions();
        var grammar = new GrammarOptions();
        var command = new Command("chat", "chat with the model in its own chat template (piped stdin: one turn per line)")
        {
            system, templateFile, overflow, shift, noShift, maxReply,
        };
        sampling.AddTo(command);
        grammar.AddTo(command);
        source.AddTo(command);
        runtime.AddTo(command);
        command.SetAction(r =>
        {
            bool overflowGiven = r.GetResult(overflow) is { Implicit: false };
            if (new[] { overflowGiven, r.GetValue(shift), r.GetValue(noShift) }.Count(x => x) > 1)
                throw new UsageException("give one of --ctx-overflow, --context-shift and --no-context-shift");
            var policy = r.GetValue(shift) || r.GetValue(overflow) == "shift" ? ContextOverflowPolicy.Shift : ContextOverflowPolicy.Stop;
            var settings = new Settings(r.GetValue(system), r.GetValue(templateFile), policy, r.GetValue(maxReply), sampling.Read(r),
                grammar.Read(r));
            return Execute(settings, ModelArgs.Read(r, source, runtime), io);
        });
        return command;
    }

    private sealed record Settings(string? System, string? TemplateFile, ContextOverflowPolicy Policy, int MaxReply, SamplerOptions Sampling,
        GbnfGrammar? Grammar);

    /// <summary>What <c>/help</c> prints.</summary>
    internal const string CommandHelp = "commands: /exit (or /quit, /bye) ends the chat; /reset (or /clear) starts the conversation over; "
        + "/system TEXT sets the system prompt (empty: clears it); /help (or /?) lists these. Ctrl+C stops a reply.";

    /// <summary>A slash and letters only (or "/?"): what a command looks like, so one we do not know is not sent to the model.</summary>
    internal static bool IsCommandWord(string word) => word.Length > 1 && word[1..].All(char.IsAsciiLetter);

    private static int Execute(Settings s, ModelArgs modelArgs, CliContext io)
    {
        var (stdout, stderr, stdin, interactive) = (io.Out, io.Err, io.In, io.Interactive);
        var (system, templateFile, policy, maxReply) = (s.System, s.TemplateFile, s.Policy, s.MaxReply);
        string? templateText = templateFile is null ? null
            : File.Exists(templateFile) ? File.ReadAllText(templateFile) : throw new FileNotFoundException($"{templateFile}: file not found");

        var bar = interactive ? ProgressBar.For(stderr) : null;
        using var m = modelArgs.Load(stderr, bar?.Fraction("loading the model"));
        bar?.Finish();
        var sampling = GrammarOptions.Bind(s.Sampling, s.Grammar, m.Tokenizer);

        if (templateText is null && m.TemplateText is null)
            stderr.WriteLine("warning: the model has no chat template; using a plain 'User:/Assistant:' fallback "
                + "(--chat-template-file FILE to set one)");
        var template = templateText is null ? m.Template : ChatTemplate.Parse(templateText);
        var chat = m.CreateChat(sampling, system, template, policy, maxReply);

        if (interactive)
        {
            var c = m.Config;
            string parameters = Units.FormatCount(m.File.Tensors.Sum(t => t.ElementCount));
            stderr.WriteLine($"{Path.GetFileName(m.File.Path)}: {c.Architecture}, {parameters} parameters, {c.BlockCount} layers, "
                + $"context {m.Model.ContextLength}, {m.Model.DescribePlacement()}, {m.Model.DescribeKvCache()}");
            stderr.WriteLine("commands: /exit, /reset (or /clear), /system TEXT; Ctrl+C stops a reply; Ctrl+C at an empty prompt or Ctrl+D exits");
        }

        // Ctrl+C (SIGINT): during a reply it cancels the reply; at the prompt the default action ends the process.
        CancellationTokenSource? replyCancel = null;
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx =>
        {
            var cts = Volatile.Read(ref replyCancel);
            if (cts is not null)
            {
                ctx.Cancel = true;
                cts.Cancel();
            }
            else if (interactive)
            {
                stderr.WriteLine();
            }
        });

        // Piped turns that fail are each reported once and make the exit code non-zero at the end.
        int turn = 0, failed = 0;
        string TurnName(int n) => interactive ? "" : $"turn {n}: ";
        while (true)
        {
            if (interactive)
            {
                stdout.Write("> ");
                stdout.Flush();
            }
            string? line;
            try { line = stdin.ReadLine(); }
            catch (Exception e) when (e is ObjectDisposedException or IOException) { line = null; }
            if (line is null) break;
            if (interactive && line.Length == 0) continue;

            if (line.StartsWith('/'))
            {
                string cmd = line.Split(' ', 2)[0];
                string arg = line.Length > cmd.Length ? line[(cmd.Length + 1)..] : "";
                switch (cmd)
                {
                    case "/exit" or "/quit":
                        return Finish();
                    case "/reset" or "/clear":
                        chat.Reset();
                        stderr.WriteLine("conversation reset");
                        continue;
                    case "/system":
                        chat.SetSystemPrompt(arg);
                        stderr.WriteLine(arg.Length == 0 ? "system prompt cleared" : "system prompt set");
                        continue;
                    case "/help" or "/?":
                        stderr.WriteLine(CommandHelp);
                        continue;
                    case "/bye": // Ollama's
                        return Finish();
                    default:
                        // a lone word after the slash is a mistyped command, not a message (a path such as /etc/hosts goes to the model)
                        if (IsCommandWord(cmd))
                        {
                            stderr.WriteLine($"unknown command {cmd} (/help lists them; start the line with a space to send it)");
                            continue;
                        }
                        break;
                }
            }

            turn++;
            var cts = new CancellationTokenSource();
            Volatile.Write(ref replyCancel, cts);
            ChatReply reply;
            try
            {
                reply = chat.Respond(line, text => { stdout.Write(text); stdout.Flush(); }, cts.Token);
            }
            catch (ContextFullException e)
            {
                failed++;
                stderr.WriteLine($"{TurnName(turn)}the conversation does not fit the context of {e.ContextLength} tokens: "
                    + "/reset, a larger -c, or --ctx-overflow shift");
                continue;
            }
            catch (TemplateException e)
            {
                failed++;
                stderr.WriteLine($"{TurnName(turn)}the chat template failed: {e.Message}");
                continue;
            }
            finally
            {
                Volatile.Write(ref replyCancel, null);
                cts.Dispose();
            }
            stdout.WriteLine();
            stdout.Flush();
            if (reply.DroppedTurns > 0)
                stderr.WriteLine($"[context shift: dropped the {reply.DroppedTurns} oldest messages and re-evaluated {reply.PromptTokens} tokens]");
            if (reply.StopReason == "cancelled") stderr.WriteLine("[interrupted]");
            if (reply.StopReason == "context") stderr.WriteLine("[context full: the reply was cut; /reset or --ctx-overflow shift]");
            if (interactive)
                stderr.WriteLine($"[{reply.PromptTokens} prompt tokens, {reply.GeneratedTokens} tokens, "
                    + $"{reply.GenerationTokensPerSecond:F1} tokens/s]");
        }
        return Finish();

        int Finish()
        {
            if (interactive || failed == 0) return 0;
            stderr.WriteLine($"{failed} of {turn} turns failed");
            return 1;
        }
    }
}
