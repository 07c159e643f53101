namespace Infer.Runtime.Tokenizers;

/// <summary>Token types as stored in <c>tokenizer.ggml.token_type</c> (llama.cpp's llama_token_type).</summary>
public enum TokenType
{
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>The tokenizer algorithm, from <c>tokenizer.ggml.model</c>.</summary>
public enum TokenizerKind
{
    /// <summary><c>llama</c>: SentencePiece BPE by piece score, with byte fallback.</summary>
    SentencePiece,

    /// <summary><c>gpt2</c>: byte-level BPE by merge rank, with a regex pre-tokenizer.</summary>
    BytePairEncoding,
}
