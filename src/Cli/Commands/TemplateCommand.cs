using System.CommandLine;
using System.Text.Json;
using Infer.Cli.Options;
using Infer.Runtime.Gguf;
using Infer.Runtime.Inference;
using Infer.Runtime.Tokenizers;
using Infer.Templates;

namespace Infer.Cli.Commands;

/// <summary>
/// <c>infer template --template-file FILE --context CONTEXT.json</c> or
/// <c>infer template -m MODEL --messages MESSAGES.json [--add-generation-prompt]</c>: renders a chat template to stdout,
/// byte-exact, with no added newline.
/// </summary>
internal static class TemplateCommand
{
    public static Command Create(CliContext io)
    {
        var templateFile = new Option<string?>("--template-file", "--chat-template-file")
        {
            Description = "a Jinja chat template", HelpName = "FILE",
        };
        var context = new Option<string?>("--context")
        {
            Description = "every template variable, as JSON (with --template-file)", HelpName = "CONTEXT.json",
        };
        var messages = new Option<string?>("--messages")
        {
            Description = "the conversation: a JSON array of {role, content}", HelpName = "MESSAGES.json",
        };
        var addGenerationPrompt = new Option<bool>("--add-generation-prompt") { Description = "end with the assistant's turn opening" };
        var source = new ModelSourceOptions();
        var command = new Command("template", "render a chat template (the model's, or a file) byte-exact to stdout")
        {
            templateFile, context, messages, addGenerationPrompt,
        };
        source.AddTo(command);
        command.SetAction(r => Execute(r.GetValue(templateFile), r.GetValue(context), r.GetValue(messages), r.GetValue(addGenerationPrompt),
            source.Given(r) ? source.Read(r) : null, io));
        return command;
    }

    private static int Execute(string? templateFile, string? contextFile, string? messagesFile, bool addGenerationPrompt, ModelSource? source,
        CliContext io)
    {
        var (stdout, stderr) = (io.Out, io.Err);
        string rendered;
        if (contextFile is not null)
        {
            if (templateFile is null) throw new UsageException("--context needs --template-file FILE");
            if (source is not null || messagesFile is not null)
                throw new UsageException("--context renders a template file; it takes no -m or --messages");
            var template = ChatTemplate.Parse(File.ReadAllText(templateFile));
            var variables = TemplateValues.FromJson(ReadJson(contextFile));
            rendered = template.Render(variables);
        }
        else
        {
            if (messagesFile is null)
                throw new UsageException("give --context CONTEXT.json (with --template-file) or --messages MESSAGES.json (with -m MODEL)");
            if (source is null && templateFile is null) throw new UsageException("--messages needs -m MODEL or --template-file FILE");
            var messages = ReadMessages(messagesFile);
            string bos = "", eos = "";
            string? source_ = null;
            if (source is not null)
            {
                using var file = GgufFile.Open(source.Resolve(stderr));
                var tok = Tokenizer.FromGguf(file);
                bos = tok.BosId >= 0 ? tok.TokenText(tok.BosId) : "";
                eos = tok.EosId >= 0 ? tok.TokenText(tok.EosId) : "";
                source_ = ChatSession.TemplateFromGguf(file);
                if (source_ is null && templateFile is null)
                    stderr.WriteLine("warning: the model has no chat template; using the plain fallback");
            }
            string text = templateFile is not null ? File.ReadAllText(templateFile) : source_ ?? ChatSession.FallbackTemplate;
            rendered = ChatTemplate.Parse(text).RenderChat(messages, addGenerationPrompt, bos, eos);
        }
        stdout.Write(rendered);
        stdout.Flush();
        return 0;
    }

    private static string ReadJson(string path) =>
        File.Exists(path) ? File.ReadAllText(path) : throw new FileNotFoundException($"{path}: file not found");

    private static List<ChatMessage> ReadMessages(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(ReadJson(path));
            var root = doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("messages", out var m)
                ? m : doc.RootElement;
            if (root.ValueKind != JsonValueKind.Array)
                throw new UsageException($"{path}: expected a JSON array of {{\"role\", \"content\"}} messages");
            return root.EnumerateArray().Select(e => new ChatMessage(
                e.GetProperty("role").GetString() ?? throw new UsageException($"{path}: a message has no role"),
                e.GetProperty("content").GetString() ?? "")).ToList();
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new UsageException($"{path}: not a valid messages file: {e.Message}");
        }
    }
}
