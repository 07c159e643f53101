using Infer.Kernels.Cpu.Ops;
using Infer.Kernels.Cpu.Threading;
using Infer.Runtime.Backend;

namespace Infer.Kernels.Cpu.Backend;

internal sealed unsafe partial class AttentionDriver
{
    /// <summary>
    /// Attention work. When no query block is worth a tile (decode, or one token per sequence, with a small GQA group), items
    /// are (token, head) pairs, or (token, KV head) groups when there are enough of them to keep every thread busy. Otherwise
    /// items are (query block, KV head) through <see cref="FlashAttention"/>, so every K/V row serves all the block's tokens and
    /// the group's heads (blocks too small for a tile go a group at a time inside their item); items are handed out from a
    /// shared counter, most expensive block first, so the threads finish together. The kernels are chosen once, when the cache
    /// is created: <see cref="AttentionWork{TK, TV}"/> is specialized for its (K type, V type).
    /// </summary>
    private abstract class AttentionWork(AttentionDriver b) : IParallelWork
    {
        protected readonly AttentionDriver B = b;
        public int Layer, NHeads, NKvHeads, HeadDim;
        public float Scale;
        public CpuActivation Q = null!, Output = null!;
        public bool Tiled;
        public int Blocks;
        public int NextItem;

        /// <summary>Whether the cache is read through a float32 conversion (F16 or Q8_0 keys or values).</summary>
        public abstract bool Converts { get; }

        public static AttentionWork Create(AttentionDriver b, KvCacheType k, KvCacheType v) => k switch
        {
            KvCacheType.F32 => Create<KvF32>(b, v),
            KvCacheType.F16 => Create<KvF16>(b, v),
            KvCacheType.Q8_0 => Create<KvQ8_0>(b, v),
            _ => throw new NotSupportedException($"the CPU backend has no KV cache of type {k}"),
        };

        private static AttentionWork Create<TK>(AttentionDriver b, KvCacheType v) where TK : struct, IKvRows => v switch
        {
            KvCacheType.F32 => new AttentionWork<TK, KvF32>(b),
            KvCacheType.F16 => new AttentionWork<TK, KvF16>(b),
            KvCacheType.Q8_0 => new AttentionWork<TK, KvQ8_0>(b),
            _ => throw new NotSupportedException($"the CPU backend has no KV cache of type {v}"),
        };

        /// <summary>Stores one head's key row and value row (headDim floats each) in the cache's types.</summary>
        public abstract void StoreRow(float* k, byte* kDst, float* v, byte* vDst, int headDim);

        /// <summary>Head h of token t over its sequence's cache positions 0..pos.</summary>
        protected abstract void AttendHead(int t, int h, int thread);

        /// <summary>Token t's query heads of one KV head.</summary>
        protected abstract void AttendGroup(int t, int kvHead, int thread);

        /// <summary>A query block of tokens t0.. of one sequence, with the heads of one KV head, tiled.</summary>
        protected abstract void AttendTile(int t0, int tokens, int kvHead, float* scratch);

        public void Execute(int thread, int threadCount)
        {
            if (Tiled) ExecuteTiled(thread);
            else ExecutePerHead(thread, threadCount);
        }

        /// <summary>
        /// (token, head) work, handed out a whole GQA group at a time when there are enough groups to keep every thread busy: one
        /// thread then reads a KV head's cache rows and its other query heads find them in its L2 (long contexts).
        /// </summary>
        private void ExecutePerHead(int thread, int threadCount)
        {
            int group = NHeads / NKvHeads;
            int perItem = B._batch.N * NKvHeads >= 2 * threadCount ? group : 1;
            int items = B._batch.N * NHeads / perItem;
            while (true)
            {
                int item = Interlocked.Increment(ref NextItem) - 1;
                if (item >= items) break;
                int first = item * perItem;
                int t = first / NHeads, h = first % NHeads;
                if (perItem == group) AttendGroup(t, h / group, thread);
                else AttendHead(t, h, thread);
            }
        }

        private void ExecuteTiled(int thread)
        {
            int items = Blocks * NKvHeads;
            int group = NHeads / NKvHeads;
            float* scratch = B._tileScratch + thread * B._tileScratchPerThread;
            while (true)
            {
                int item = Interlocked.Increment(ref NextItem) - 1;
                if (item >= items) break;
                int block = (int)(B._blockOrder[item / NKvHeads] & 0xFFFFFFFF), kvHead = item % NKvHeads;
                int t0 = B._blockStart[block], tokens = B._blockTokens[block];
                if (!FlashAttention.Worthwhile(tokens, group))
                {
                    for (int t = t0; t < t0 + tokens; t++) AttendGroup(t, kvHead, thread);
                    continue;
                }
                AttendTile(t0, tokens, kvHead, scratch);
            }
        }

        protected Span<float> Scores(int thread) => new(B._scratch + (long)thread * B._scratchPerThread, B._kv!.ContextLength);

        protected byte* Keys(int t, int kvHead) => B.KvHead(B._kCache, B._kRowBytes, B._batch.Sequences[t], Layer, kvHead);

        protected byte* Values(int t, int kvHead) => B.KvHead(B._vCache, B._vRowBytes, B._batch.Sequences[t], Layer, kvHead);
    }

    /// <summary>
    /// The kernels for one (K type, V type). A float32 cache is read in place: decode per head through <see cref="VectorOps.Attend"/>,
    /// a GQA group together past <see cref="GroupDecodePositions"/> through <see cref="VectorOps.AttendGroup"/>. A narrower cache goes a
    /// group (or a head) at a time through <see cref="KvAttention"/>, converting each block of rows once for the group.
    /// </summary>
    private sealed class AttentionWork<TK, TV>(AttentionDriver b) : AttentionWork(b) where TK : struct, IKvRows where TV : struct, IKvRows
    {
        public override bool Converts => TK.Converts || TV.Converts;

        public override void StoreRow(float* k, byte* kDst, float* v, byte* vDst, int headDim)
        {
            TK.Store(k, kDst, headDim);
            TV.Store(v, vDst, headDim);
        }

        protected override void AttendHead(int t, int h, int thread)
        {
            int kvHead = h / (NHeads / NKvHeads);
            int count = B._batch.Positions[t] + 1;
            if (Converts)
            {
                KvAttention.Attend<TK, TV>(Q.Data + (long)t * Q.Cols + h * HeadDim, 1, HeadDim, Keys(t, kvHead), Values(t, kvHead), count, Scale,
                    B._scratch + (long)thread * B._scratchPerThread, Output.Data + (long)t * Output.Cols + h * HeadDim, RowScratch(thread));
                return;
            }
            VectorOps.Attend(Q.Row(t).Slice(h * HeadDim, HeadDim), (float*)Keys(t, kvHead), (float*)Values(t, kvHead), HeadDim, count, Scale,
                Scores(thread), Output.Row(t).Slice(h * HeadDim, HeadDim));
        }

        protected override void AttendGroup(int t, int kvHead, int thread)
        {
            int group = NHeads / NKvHeads, pos = B._batch.Positions[t];
            int headOffset = kvHead * group * HeadDim;
            float* q = Q.Data + (long)t * Q.Cols + headOffset, output = Output.Data + (long)t * Output.Cols + headOffset;
            if (Converts)
            {
                if (group == 1) AttendHead(t, kvHead, thread);
                else KvAttention.Attend<TK, TV>(q, group, HeadDim, Keys(t, kvHead), Values(t, kvHead), pos + 1, Scale,
                    B._tileScratch + thread * B._tileScratchPerThread, output, RowScratch(thread));
                return;
            }
            if (group == 1 || pos + 1 < GroupDecodePositions || HeadDim % 8 != 0 || !System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated)
            {
                for (int g = 0; g < group; g++) AttendHead(t, kvHead * group + g, thread);
                return;
            }
            VectorOps.AttendGroup(q, group, HeadDim, (float*)Keys(t, kvHead), (float*)Values(t, kvHead), HeadDim,
                pos + 1, Scale, B._tileScratch + thread * B._tileScratchPerThread, output);
        }

        protected override void AttendTile(int t0, int tokens, int kvHead, float* scratch)
        {
            int headOffset = kvHead * (NHeads / NKvHeads) * HeadDim;
            FlashAttention.Attend<TK, TV>(new FlashAttention.Args(
                Q.Data + (long)t0 * Q.Cols + headOffset, Q.Cols, Output.Data + (long)t0 * Output.Cols + headOffset, Output.Cols,
                B._batch.Positions + t0, tokens, NHeads / NKvHeads, HeadDim,
                Keys(t0, kvHead), B._kRowBytes, Values(t0, kvHead), B._vRowBytes, Scale, scratch));
        }

        private float* RowScratch(int thread) => B._rowScratch + thread * B._rowScratchPerThread;
    }
}
