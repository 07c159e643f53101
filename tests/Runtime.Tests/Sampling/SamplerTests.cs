using Infer.Runtime.Sampling;

namespace Infer.Runtime.Tests.Sampling;

public class SamplerTests
{
    [Fact]
    public void TemperatureZeroIsArgMax()
    {
        var s = new Sampler(5, new SamplerOptions { Temperature = 0 });
        Assert.Equal(3, s.Sample(new float[] { 0.1f, 2f, -1f, 2.5f, 1f }));
    }

    /// <summary>
    /// A NaN or +inf logit (non-finite weights, an overflow) is an error that names the token, greedy or not, wherever it is (a long
    /// vocabulary: the vectorized search's tail too); -inf is a masked token and stays allowed.
    /// </summary>
    [Theory]
    [InlineData(0f, 37, float.NaN)]
    [InlineData(0f, 32000 - 1, float.NaN)]
    [InlineData(0.8f, 1000, float.NaN)]
    [InlineData(0f, 5, float.PositiveInfinity)]
    [InlineData(0.8f, 31999, float.PositiveInfinity)]
    public void NonFiniteLogitIsAnErrorNamingTheToken(float temperature, int index, float value)
    {
        var s = new Sampler(32000, new SamplerOptions { Temperature = temperature, Seed = 1 });
        var logits = new float[32000];
        for (int i = 0; i < logits.Length; i++) logits[i] = (i % 97) * 0.01f;
        logits[3] = float.NegativeInfinity;
        logits[index] = value;
        var e = Assert.Throws<NonFiniteLogitsException>(() => s.Sample(logits));
        Assert.Contains($"token {index}", e.Message);
        logits[index] = float.NegativeInfinity;
        int token = s.Sample(logits);
        if (temperature == 0) Assert.Equal(96, token); // the first of the largest finite logits (0.96)
        Assert.True(token != 3 && token != index, $"a masked (-inf) token was sampled: {token}");
    }

    [Fact]
    public void RepeatPenaltyDividesPositiveAndMultipliesNegativeLogits()
    {
        // llama.cpp: logit <= 0 ? logit * penalty : logit / penalty
        var s = new Sampler(3, new SamplerOptions { Temperature = 0, RepeatPenalty = 2f });
        s.Accept(0);
        s.Accept(2);
        var logits = new float[] { 3f, 1.6f, -1f };
        Assert.Equal(1, s.Sample(logits)); // 3/2 = 1.5 < 1.6
        Assert.Equal(1.5f, logits[0]);
        Assert.Equal(-2f, logits[2]);
    }

    [Fact]
    public void FrequencyAndPresencePenaltiesSubtract()
    {
        var s = new Sampler(2, new SamplerOptions { Temperature = 0, FrequencyPenalty = 0.5f, PresencePenalty = 0.25f });
        s.Accept(0); s.Accept(0); s.Accept(0);
        var logits = new float[] { 2f, 0.3f };
        s.Sample(logits);
        Assert.Equal(2f - 3 * 0.5f - 0.25f, logits[0]);
        Assert.Equal(0.3f, logits[1]);
    }

    [Fact]
    public void TopKOneAlwaysPicksTheBest()
    {
        var s = new Sampler(4, new SamplerOptions { Temperature = 1.5f, TopK = 1, TopP = 1, MinP = 0, Seed = 7 });
        for (int i = 0; i < 50; i++) Assert.Equal(2, s.Sample(new float[] { 1f, 0.9f, 1.1f, 0.95f }));
    }

    [Fact]
    public void MinPDropsUnlikelyTokens()
    {
        // p(1)/p(0) = e^-3 ≈ 0.05 < 0.1: only token 0 survives.
        var s = new Sampler(2, new SamplerOptions { Temperature = 1f, TopK = 0, TopP = 1, MinP = 0.1f, Seed = 3 });
        for (int i = 0; i < 100; i++) Assert.Equal(0, s.Sample(new float[] { 3f, 0f }));
    }

    [Fact]
    public void TopPKeepsTheSmallestPrefixReachingP()
    {
        // probabilities ≈ 0.665, 0.245, 0.090: p = 0.6 keeps only the first.
        var s = new Sampler(3, new SamplerOptions { Temperature = 1f, TopK = 0, TopP = 0.6f, MinP = 0, Seed = 11 });
        for (int i = 0; i < 100; i++) Assert.Equal(0, s.Sample(new float[] { 2f, 1f, 0f }));
    }

    [Fact]
    public void SeededDrawsRepeatAndFollowTheDistribution()
    {
        float[] logits = [0f, MathF.Log(3f)]; // p = 0.25, 0.75
        var opts = new SamplerOptions { Temperature = 1f, TopK = 0, TopP = 1, MinP = 0, Seed = 42 };
        var a = new Sampler(2, opts);
        var b = new Sampler(2, opts);
        int ones = 0;
        for (int i = 0; i < 4000; i++)
        {
            int x = a.Sample((float[])logits.Clone());
            Assert.Equal(x, b.Sample((float[])logits.Clone()));
            ones += x;
        }
        Assert.InRange(ones / 4000.0, 0.72, 0.78);
    }

    [Fact]
    public void InvalidOptionsAreRejected()
    {
        Assert.Throws<ArgumentException>(() => new Sampler(2, new SamplerOptions { TopP = 2 }));
        Assert.Throws<ArgumentException>(() => new Sampler(2, new SamplerOptions { RepeatPenalty = 0 }));
    }
}
