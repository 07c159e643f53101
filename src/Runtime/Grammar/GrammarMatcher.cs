namespace Infer.Runtime.Grammar;

/// <summary>
/// Where one sequence stands in a grammar: <see cref="Mask"/> removes every token that cannot continue a sentence of
/// the grammar, <see cref="Accept"/> advances on the token taken. A token may end inside a UTF-8 character; the next
/// token continues it. End-of-generation tokens are allowed only where the grammar may end. Not thread-safe (one per
/// sequence); matchers of one <see cref="GrammarConstraint"/> share its caches. Allocation-free once the states it
/// meets are cached.
/// </summary>
public sealed class GrammarMatcher
{
    private readonly GrammarConstraint _constraint;
    private long _key;

    internal GrammarMatcher(GrammarConstraint constraint)
    {
        _constraint = constraint;
        _key = constraint.StartKey;
    }

    /// <summary>An independent matcher at the same position (to try a token without moving this one).</summary>
    public GrammarMatcher Clone() => new(_constraint) { _key = _key };

    public GrammarConstraint Constraint => _constraint;

    /// <summary>Back to the start of the grammar (a new reply).</summary>
    public void Reset() => _key = _constraint.StartKey;

    /// <summary>Whether the text so far is a complete sentence (an end-of-generation token is allowed now).</summary>
    public bool CanEnd => _constraint.CanEnd(_key);

    /// <summary>Whether some character may still follow (false once the sentence can only end).</summary>
    public bool CanContinue => _constraint.CanContinue(_key);

    /// <summary>
    /// Sets the logit of every token that cannot come next to -inf (also rows past the tokenizer's vocabulary) and
    /// returns how many tokens are left.
    /// </summary>
    /// <exception cref="GrammarException">no token of the vocabulary can continue the grammar here.</exception>
    public int Mask(Span<float> logits)
    {
        int allowed = _constraint.Apply(_key, logits);
        if (allowed == 0)
            throw new GrammarException("no token of the vocabulary can continue the grammar here (the grammar needs a character no token spells)");
        return allowed;
    }

    public bool IsAllowed(int token) => _constraint.IsAllowed(_key, token);

    /// <summary>Advances on <paramref name="token"/> when it can continue the grammar; otherwise returns false and stays put.</summary>
    public bool TryAccept(int token)
    {
        long next = _constraint.Advance(_key, token);
        if (next < 0) return false;
        _key = next;
        return true;
    }

    /// <summary>Advances on <paramref name="token"/>.</summary>
    /// <exception cref="GrammarException">the token cannot continue the grammar (it was not allowed by <see cref="Mask"/>).</exception>
    public void Accept(int token)
    {
        if (!TryAccept(token)) throw new GrammarException($"token {token} cannot continue the grammar here");
    }
}
