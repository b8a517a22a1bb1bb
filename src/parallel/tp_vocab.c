/* tp_vocab.c — the vocabulary-parallel cross-entropy's one collective (see tp.h): the table's
 * vocab_merge_rows entry. Each rank holds the logits of its vocabulary slice; a row's loss
 * needs the row's maximum, its sum of exponentials and its target logit over the whole
 * vocabulary. Instead of two blocking all-reduces (the maximum, then the sums relative to it),
 * each rank sends its slice's three numbers per row — m_i, s_i = sum exp(l - m_i) over the
 * slice, t_i (0 where the target is on another rank) — in one all-gather, and every rank merges
 * them as an online softmax does: M = max_i m_i, S = sum_i s_i exp(m_i - M), t = sum_i t_i.
 *
 * Overlap: the rows go in mpt_tp_overlap_chunks(N, ld) chunks (the chunking of the logits'
 * bytes, as the row-parallel GEMMs): chunk c's all-gather starts as soon as fn has computed
 * its statistics (with its head GEMM rows, when the caller computes them there) and travels
 * while the next chunks compute; after the last chunk, chunk by chunk as its gather
 * completes, the statistics are merged and done runs (the chunk's loss and gradient), so the
 * wait for the slower rank's last chunk sits behind the earlier chunks' gradients. Progress
 * as in tp_overlap.c: MPI_Test from the calling thread between the callbacks, no thread taken
 * from the OpenMP team.
 *
 * Layout of st (3N floats): chunk c of rows [r0, r0 + n) at st + 3 r0 as [max (n) | sum (n) |
 * target (n)], so one chunk is one contiguous message; recv (tp * 3N) gets rank i's block of
 * chunk c at recv + 3 tp r0 + 3 n i. The merge writes the whole-vocabulary figures over the
 * chunk's block of st (its send buffer is free once the gather is complete). */
#include "parallel/tp.h"

#include <limits.h>
#include <math.h>

/* st[0 .. 3n) = the merge of the tp blocks of 3n in recv (see above), for one chunk */
static void merge_(float *st, const float *recv, size_t n, int tp) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < n; r++) {
        float M = recv[r];
        for (int i = 1; i < tp; i++) {
            float m = recv[(size_t)i * 3 * n + r];
            M = m > M ? m : M;
        }
        double S = 0.0;
        float t = 0.0f;
        for (int i = 0; i < tp; i++) {
            const float *b = recv + (size_t)i * 3 * n;
            S += (double)b[n + r] * exp((double)b[r] - (double)M);
            t += b[2 * n + r];
        }
        st[r] = M;
        st[n + r] = (float)S;
        st[2 * n + r] = t;
    }
}

mpt_status mpt_tp_vocab_merge_rows(void *ctx, float *st, float *recv, size_t N, size_t ld,
                                   mpt_rows_fn fn, mpt_rows_fn done, void *fctx,
                                   mpt_error *err) {
    mpt_comm *tp = ctx;
    size_t k = mpt_tp_overlap_chunks(N, ld > (size_t)INT_MAX ? INT_MAX : (int)ld);
    mpt_req req[MPT_TP_OVERLAP_MAX_CHUNKS];
    size_t started = 0;
    mpt_status st_ = MPT_OK;
    for (size_t c = 0; c < k && st_ == MPT_OK; c++) {
        size_t r0 = N * c / k, n = N * (c + 1) / k - r0;
        fn(fctx, r0, n);
        for (size_t p = 0; p < started && st_ == MPT_OK; p++) { /* progress the earlier chunks */
            int ready = 0;
            st_ = mpt_test(&req[p], &ready, err);
        }
        if (st_ == MPT_OK)
            st_ = mpt_iallgather(tp, st + 3 * r0, recv + 3 * (size_t)tp->size * r0, 3 * n,
                                 &req[started], err);
        if (st_ == MPT_OK) started++;
    }
    for (size_t c = 0; c < started; c++) {
        size_t r0 = N * c / k, n = N * (c + 1) / k - r0;
        mpt_status ws = mpt_wait(&req[c], err);
        if (ws != MPT_OK) {
            if (c + 1 < started) (void)mpt_waitall(req + c + 1, started - c - 1, NULL);
            return st_ == MPT_OK ? ws : st_;
        }
        if (st_ != MPT_OK) continue; /* a later chunk failed to start: finish, then report */
        merge_(st + 3 * r0, recv + 3 * (size_t)tp->size * r0, n, tp->size);
        done(fctx, r0, n);
    }
    return st_;
}
