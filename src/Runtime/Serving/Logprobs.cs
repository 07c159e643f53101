namespace Infer.Runtime.Serving;

/// <summary>Log probabilities of a logits row (log-softmax), as OpenAI's <c>logprobs</c> reports them.</summary>
public static class Logprobs
{
    /// <summary>
    /// The log probability of <paramref name="token"/> and the <paramref name="top"/> most likely tokens (descending; ties: lower
    /// id first) under softmax(<paramref name="logits"/>).
    /// </summary>
    public static float Compute(ReadOnlySpan<float> logits, int token, int top, out TokenLogprob[] best)
    {
        float lse = (float)LogSumExp(logits);

        best = new TokenLogprob[Math.Min(top, logits.Length)];
        int count = 0;
        for (int i = 0; i < logits.Length && best.Length > 0; i++)
        {
            float v = logits[i];
            if (count == best.Length && v <= best[count - 1].Logprob) continue;
            int at = count < best.Length ? count++ : count - 1;
            while (at > 0 && best[at - 1].Logprob < v)
            {
                best[at] = best[at - 1];
                at--;
            }
            best[at] = new TokenLogprob(i, v);
        }
        for (int i = 0; i < best.Length; i++) best[i] = best[i] with { Logprob = best[i].Logprob - lse };
        return logits[token] - lse;
    }

    /// <summary>log Σ exp(logits), in double, about the largest logit (so no exp overflows): log softmax(logits)[i] = logits[i] − this.</summary>
    public static double LogSumExp(ReadOnlySpan<float> logits)
    {
        float max = float.NegativeInfinity;
        foreach (float l in logits) if (l > max) max = l;
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        return max + Math.Log(sum);
    }
}
