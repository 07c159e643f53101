namespace Infer.BackendOps.Cases;

/// <summary>Every test case of <c>backend-ops test</c>, in a fixed order; <c>quick</c> is the subset CI runs on the CPU accelerator.</summary>
internal static class Grid
{
    public static IEnumerable<OpCase> All(bool quick) =>
        Rows(quick).Concat(MatMulCase.Grid(quick)).Concat(AttentionCase.Grid(quick)).Concat(NormQkvRopeCase.Grid(quick))
            .Concat(MatMulAddCase.Grid(quick)).Concat(NormGateUpCase.Grid(quick)).Concat(NormMatMulRowsCase.Grid(quick));

    private static IEnumerable<OpCase> Rows(bool quick)
    {
        int[] tokens = quick ? [1, 5] : [1, 5, 64];
        foreach (var type in OpCase.WeightTypes)
            foreach (int n in tokens)
                yield return new EmbedCase(type, quick ? 11 : 1000, Math.Max(64, OpCase.Cols(type, true)[0]), n);
        (int Group, int Groups)[] norms = quick ? [(17, 1), (32, 4)] : [(1, 1), (17, 1), (255, 1), (64, 2), (2048, 1), (4096, 1), (128, 32)];
        foreach (var (group, groups) in norms)
            foreach (int n in tokens)
                foreach (bool inPlace in new[] { false, true })
                    yield return new RmsNormCase(group, groups, n, inPlace);
        foreach (string op in new[] { "ADD", "ADD_BIAS", "SWIGLU" })
            foreach (int cols in quick ? new[] { 7, 257 } : [1, 7, 257, 2048, 14336])
                foreach (int n in tokens)
                    yield return new ElementwiseCase(op, cols, n);
        yield return new GatherCase(96, 6, [2, 0]);
        yield return new GatherCase(quick ? 96 : 2048, 6, [5, 1, 3]);
        foreach (var (head, dims) in quick ? new[] { (64, 64), (64, 32) } : [(64, 64), (128, 128), (64, 32), (32, 32), (6, 6)])
            foreach (bool neox in new[] { false, true })
            {
                yield return new RopeCase(head, dims, quick ? 2 : 8, neox, !neox, 1f, [0, 1, 17]);
                if (!quick) yield return new RopeCase(head, dims, 32, neox, !neox, 0.25f, [0, 1, 17, 1000, 8191]);
            }
    }
}
