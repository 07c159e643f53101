using System.Security.Cryptography;
using System.Text;

namespace Infer.Hub;

/// <summary>
/// Hashes a file as its bytes arrive and checks the digest the Hub lists: SHA-256 (the LFS object id) for LFS files, else the
/// git blob id (SHA-1 over "blob {size}\0" + content). Files with neither are checked by size only.
/// </summary>
internal sealed class ContentHasher : IDisposable
{
    private readonly HubFile _file;
    private IncrementalHash? _hash;

    public ContentHasher(HubFile file)
    {
        _file = file;
        Reset();
    }

    /// <summary>"SHA-256", "git SHA-1" or null when nothing can be verified.</summary>
    public string? Algorithm => _file.Sha256 is not null ? "SHA-256" : _file.GitOid is not null ? "git SHA-1" : null;

    public void Reset()
    {
        _hash?.Dispose();
        _hash = null;
        if (_file.Sha256 is not null)
        {
            _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        }
        else if (_file.GitOid is not null)
        {
            _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
            _hash.AppendData(Encoding.ASCII.GetBytes($"blob {_file.Size}\0"));
        }
    }

    public void Append(ReadOnlySpan<byte> data) => _hash?.AppendData(data);

    /// <summary>The digest so far as lower-case hex and whether it equals the listed one (true when nothing is listed).</summary>
    public (bool Ok, string? Actual, string? Expected) Verify()
    {
        if (_hash is null) return (true, null, null);
        string actual = Convert.ToHexStringLower(_hash.GetCurrentHash());
        string expected = _file.Sha256 ?? _file.GitOid!;
        return (actual == expected, actual, expected);
    }

    public void Dispose() => _hash?.Dispose();
}
