namespace Infer.Cli;

/// <summary>The streams a command reads and writes (the console, or a test's), and whether a person is at a terminal.</summary>
internal sealed record CliContext(TextWriter Out, TextWriter Err, TextReader In, bool Interactive);
