namespace Infer.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        Console.Error.WriteLine("infer: not implemented yet");
        return 1;
    }
}
