/* tp_ring.c — the tensor-parallel sums as balanced rings of point-to-point messages (see tp.h,
 * "sums over the tp group"), instead of MPI's non-blocking all-reduce, when MPT_TP_RING_SUMS
 * is 1 (off by default: under light load the ring lost on tp 2, tp.h has the figures).
 *
 * Why: OpenMPI's libnbc takes a binomial tree for groups below 4 ranks and for in-place calls
 * (all of mptrain's): on 2 ranks rank 1 sends the whole buffer, rank 0 adds it all and sends
 * the sum back — two transfers one after the other, one rank doing every add. The ring of
 * parallel/dp_ring.c (reduce-scatter, then all-gather, chunk c of the buffer summed on rank c)
 * sends half the buffer each way at once on 2 ranks and splits the adds between the ranks; on
 * p ranks each rank sends and adds (p-1)/p of the buffer. Each chunk's sum is computed on one
 * rank and copied to the others, so every rank holds the same bits (the tp activations must
 * stay identical on every rank); on 2 ranks they are also MPI's bits (a + b = b + a).
 *
 * Progress: the rings move only inside mpt_tp_sums_progress (the MPI_Test calls the overlapped
 * GEMMs already make between their chunks, where the OpenMP team is idle) and the final wait;
 * no thread is added. Scratch: each ring's reduce phase needs ceil(n/p) elements, carved from
 * one malloc per set of sums (libnbc mallocs a whole copy of the buffer per call instead). */
#include "parallel/tp.h"

#include <stdlib.h>
#include <string.h>

#define TAG_TP_RING_ 7210 /* + the ring's index in its set; the sp messages use 7201-7203 */

mpt_status mpt_tp_sums_begin(mpt_tp_sums *s, mpt_comm *tp, size_t n_total, size_t k,
                             mpt_error *err) {
    memset(s, 0, sizeof *s);
    s->tp = tp;
    if (k > MPT_TP_OVERLAP_MAX_CHUNKS)
        return mpt_fail(err, MPT_ERR_RUN, "tp sums: %zu rings at once, at most %d", k,
                        MPT_TP_OVERLAP_MAX_CHUNKS);
    if (!tp || tp->size <= 1 || !MPT_TP_RING_SUMS) return MPT_OK;
    s->cap = n_total / (size_t)tp->size + k; /* sum over the rings of ceil(n_i / p) */
    s->tmp = malloc((s->cap ? s->cap : 1) * sizeof *s->tmp);
    if (!s->tmp)
        return mpt_fail(err, MPT_ERR_RUN, "out of memory for the tensor-parallel sums (%zu floats)",
                        s->cap);
    return MPT_OK;
}

mpt_status mpt_tp_sums_start(mpt_tp_sums *s, float *buf, size_t n, mpt_error *err) {
    if (!s->tp || s->tp->size <= 1) return MPT_OK;
    if (!MPT_TP_RING_SUMS) { /* MPI's all-reduce */
        if (s->k >= MPT_TP_OVERLAP_MAX_CHUNKS)
            return mpt_fail(err, MPT_ERR_RUN, "tp sums: more sums than begun with");
        mpt_status st = mpt_iallreduce_sum(s->tp, buf, n, &s->req[s->k], err);
        if (!st) s->k++;
        return st;
    }
    size_t w = (n + (size_t)s->tp->size - 1) / (size_t)s->tp->size;
    if (s->k >= MPT_TP_OVERLAP_MAX_CHUNKS || s->used + w > s->cap)
        return mpt_fail(err, MPT_ERR_RUN, "tp sums: more rings or elements than begun with");
    mpt_status st = mpt_ring_start_any(&s->ring[s->k], s->tp, MPT_RING_ALLREDUCE, buf, n,
                                       s->tmp + s->used, TAG_TP_RING_ + (int)s->k, err);
    if (st) return st;
    s->k++;
    s->used += w;
    return MPT_OK;
}

mpt_status mpt_tp_sums_progress(mpt_tp_sums *s, mpt_error *err) {
    for (size_t i = 0; i < s->k; i++) {
        int done = 0;
        mpt_status st = MPT_TP_RING_SUMS ? mpt_ring_progress(&s->ring[i], &done, err)
                                         : mpt_test(&s->req[i], &done, err);
        if (st) return st;
    }
    return MPT_OK;
}

mpt_status mpt_tp_sums_done(mpt_tp_sums *s, size_t i, int *done, mpt_error *err) {
    *done = 1;
    if (i >= s->k) return MPT_OK; /* never started (tp of one rank): nothing to wait for */
    if (!MPT_TP_RING_SUMS) return mpt_test(&s->req[i], done, err);
    mpt_status st = mpt_ring_progress(&s->ring[i], done, err);
    if (!st) *done = !s->ring[i].active;
    return st;
}

mpt_status mpt_tp_sums_wait_one(mpt_tp_sums *s, size_t i, mpt_error *err) {
    if (i >= s->k) return MPT_OK;
    if (!MPT_TP_RING_SUMS) return mpt_wait(&s->req[i], err);
    mpt_status st = MPT_OK;
    while (!st && s->ring[i].active) { /* the other rings move as messages complete */
        st = mpt_ring_wait_some(&s->ring[i], err);
        if (!st) st = mpt_tp_sums_progress(s, err);
    }
    return st;
}

mpt_status mpt_tp_sums_end(mpt_tp_sums *s, mpt_error *err) {
    /* every ring moves whenever any message completes: one blocking wait on the first ring
     * not done, then all are progressed (waiting ring by ring would leave the later rings'
     * next steps unposted behind the first's) */
    mpt_status st = MPT_OK;
    if (!MPT_TP_RING_SUMS && s->k) st = mpt_waitall(s->req, s->k, err);
    for (size_t first = 0; MPT_TP_RING_SUMS && first < s->k && !st;) {
        if (!s->ring[first].active) {
            first++;
            continue;
        }
        st = mpt_ring_wait_some(&s->ring[first], err);
        if (!st) st = mpt_tp_sums_progress(s, err);
    }
    /* after a failure a ring may still have a receive posted into tmp: keep it (the job ends) */
    if (!st) free(s->tmp);
    s->tmp = NULL;
    s->k = 0;
    return st;
}

mpt_status mpt_tp_ring_sum(mpt_comm *tp, float *buf, size_t n, mpt_error *err) {
    mpt_tp_sums s;
    mpt_status st = mpt_tp_sums_begin(&s, tp, n, 1, err);
    if (!st) st = mpt_tp_sums_start(&s, buf, n, err);
    mpt_status we = mpt_tp_sums_end(&s, err);
    return st ? st : we;
}
