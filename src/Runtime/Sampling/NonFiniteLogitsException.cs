namespace Infer.Runtime.Sampling;

/// <summary>
/// The model's logits for a position hold NaN or +inf, so no token can be chosen: its weights are not finite (a corrupt or hostile file)
/// or its activations overflowed. Thrown by <see cref="Sampler.Sample"/> instead of picking an arbitrary token.
/// </summary>
public sealed class NonFiniteLogitsException : Exception
{
    public NonFiniteLogitsException(int index, float value)
        : base($"the model produced a logit of {value} (token {index}): its weights are not finite (a corrupt file?) or its activations overflowed")
    {
    }
}
