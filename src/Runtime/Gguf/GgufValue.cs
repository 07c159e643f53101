namespace Infer.Runtime.Gguf;

/// <summary>Metadata value type ids of the GGUF format.</summary>
public enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

/// <summary>
/// An array metadata value. <see cref="Values"/> is a typed CLR array: byte[], sbyte[], ushort[], short[], uint[], int[],
/// float[], bool[], string[], ulong[], long[], double[], or GgufArray[] for nested arrays.
/// </summary>
public sealed class GgufArray(GgufValueType elementType, Array values)
{
    public GgufValueType ElementType { get; } = elementType;
    public Array Values { get; } = values;
    public int Length => Values.Length;

    public override string ToString() => $"[{ElementType} x {Length}]";
}

/// <summary>One metadata entry: its type id and its value (a boxed primitive, a string, or a <see cref="GgufArray"/>).</summary>
public sealed record GgufMetadataValue(GgufValueType Type, object Value)
{
    public override string ToString() => Value switch
    {
        string s => s.Length > 60 ? $"\"{s[..57]}...\"" : $"\"{s}\"",
        bool b => b ? "true" : "false",
        _ => Convert.ToString(Value, System.Globalization.CultureInfo.InvariantCulture) ?? "",
    };
}
