namespace Infer.ConvertWeights;

public static class Program
{
    public static int Main(string[] args)
    {
        Console.Error.WriteLine("convert-weights: not implemented yet");
        return 1;
    }
}
