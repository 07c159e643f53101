using System.Text;
using Infer.Runtime;

namespace Infer.ConvertWeights;

/// <summary>
/// The pieces of a SentencePiece <c>tokenizer.model</c> (a serialized <c>ModelProto</c>), parsed without the protobuf
/// library: field 1 holds the repeated <c>SentencePiece { string piece = 1; float score = 2; Type type = 3; }</c>;
/// every other field is skipped.
/// </summary>
public sealed class SentencePieceModel
{
    /// <summary>SentencePiece's piece types (sentencepiece_model.proto).</summary>
    public enum PieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Byte = 6, Unused = 5 }

    public required string[] Pieces { get; init; }
    public required float[] Scores { get; init; }
    public required PieceType[] Types { get; init; }

    public const int MaxPieces = 1 << 22;

    public static SentencePieceModel Load(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException(path, "file not found");
        byte[] data = File.ReadAllBytes(path);
        var pieces = new List<string>();
        var scores = new List<float>();
        var types = new List<PieceType>();
        var r = new ProtoReader(data, path);
        while (!r.End)
        {
            var (field, wire) = r.Tag();
            if (field == 1 && wire == 2)
            {
                var (start, len) = r.LengthDelimited();
                if (pieces.Count >= MaxPieces) throw new ModelFormatException(path, $"more than {MaxPieces} pieces");
                var (piece, score, type) = ParsePiece(data.AsSpan(start, len), path, pieces.Count);
                pieces.Add(piece);
                scores.Add(score);
                types.Add(type);
            }
            else r.Skip(wire);
        }
        if (pieces.Count == 0) throw new ModelFormatException(path, "no pieces: not a SentencePiece model");
        return new SentencePieceModel { Pieces = [.. pieces], Scores = [.. scores], Types = [.. types] };
    }

    private static (string, float, PieceType) ParsePiece(ReadOnlySpan<byte> msg, string path, int index)
    {
        string? piece = null;
        float score = 0;
        var type = PieceType.Normal;
        var r = new ProtoReader(msg.ToArray(), path);
        while (!r.End)
        {
            var (field, wire) = r.Tag();
            switch (field, wire)
            {
                case (1, 2):
                    var (s, l) = r.LengthDelimited();
                    try
                    {
                        piece = new UTF8Encoding(false, true).GetString(r.Data, s, l);
                    }
                    catch (DecoderFallbackException)
                    {
                        throw new ModelFormatException(path, $"piece #{index} is not valid UTF-8");
                    }
                    break;
                case (2, 5):
                    score = BitConverter.Int32BitsToSingle((int)r.Fixed32());
                    break;
                case (3, 0):
                    ulong t = r.Varint();
                    if (t is < 1 or > 6) throw new ModelFormatException(path, $"piece #{index} has unknown type {t}");
                    type = (PieceType)t;
                    break;
                default:
                    r.Skip(wire);
                    break;
            }
        }
        return (piece ?? throw new ModelFormatException(path, $"piece #{index} has no text"), score, type);
    }

    /// <summary>A bounds-checked protobuf wire-format cursor.</summary>
    private sealed class ProtoReader(byte[] data, string path)
    {
        private int _pos;
        public byte[] Data => data;
        public bool End => _pos >= data.Length;

        private ModelFormatException Corrupt(string what) => new(path, $"corrupt protobuf at byte {_pos}: {what}");

        public ulong Varint()
        {
            ulong v = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_pos >= data.Length) throw Corrupt("truncated varint");
                byte b = data[_pos++];
                v |= (ulong)(b & 0x7f) << shift;
                if ((b & 0x80) == 0) return v;
            }
            throw Corrupt("varint longer than 10 bytes");
        }

        public (int Field, int Wire) Tag()
        {
            ulong tag = Varint();
            return ((int)(tag >> 3), (int)(tag & 7));
        }

        public (int Start, int Length) LengthDelimited()
        {
            ulong len = Varint();
            if (len > (ulong)(data.Length - _pos)) throw Corrupt($"field length {len} runs past the end");
            int start = _pos;
            _pos += (int)len;
            return (start, (int)len);
        }

        public uint Fixed32()
        {
            if (data.Length - _pos < 4) throw Corrupt("truncated fixed32");
            uint v = BitConverter.ToUInt32(data, _pos);
            _pos += 4;
            return v;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1:
                    if (data.Length - _pos < 8) throw Corrupt("truncated fixed64");
                    _pos += 8;
                    break;
                case 2: LengthDelimited(); break;
                case 5: Fixed32(); break;
                default: throw Corrupt($"unsupported wire type {wire}");
            }
        }
    }
}
