/* tp_overlap_sp.c — sequence parallelism's all-gather and reduce-scatter overlapped with the
 * GEMMs beside them (see tp.h): the sp form of Megatron's tp-comm-overlap.
 *
 * Under --sp each of the tp ranks keeps the Nl = N/tp rows of one block of the N token rows.
 *   gather (before a column-parallel layer, or the output gradient of a row-parallel one): the
 *     rank's own block is multiplied while the other blocks travel; each other block is
 *     multiplied as soon as it has arrived, in the order r+1, r+2, ... (rank r+1 sends to r
 *     first). Every block goes straight from its owner to every other rank (tp-1 sends and
 *     tp-1 receives of Nl rows per rank, the bytes of a ring all-gather).
 *   reduce-scatter (after a row-parallel layer, or the input gradient of a column-parallel
 *     one): the partial rows of the other ranks' blocks are computed first, r+1, r+2, ..., and
 *     each is sent to its owner as soon as it is done; the own block is computed while they
 *     travel, then an optional "rest" of work (the weight gradient's GEMM in the backward);
 *     the sum of the own block's tp partials is then taken in rank order, vectorised. The
 *     weight gradient's input, when it is sequence-split (c_fc's ln_2, c_attn's ln_1), is
 *     all-gathered by the same direct messages beside those GEMMs and waited for before rest,
 *     instead of a blocking all-gather before them.
 * Progress: no thread is taken from the GEMMs' OpenMP team and none is added. The requests are
 * started from the calling thread between GEMMs and completed by the waits, which each rank
 * reaches only when the rows it needs next are due; on one node's shared memory (OpenMPI's
 * vader with single-copy CMA) a receive copies the whole block in its wait, so what leaves the
 * critical path is the waiting for the slower rank of the group and the reduction's extra
 * collective step, not the copy itself.
 * Order: every rank of the tp group calls the same entries in the same order (the model's
 * forward and backward are the same code on every rank); the messages of one call use one tag
 * per kind and are matched in order between each pair of ranks. */
#include "parallel/tp.h"

#include <string.h>

#define TAG_GATHER_ 7201
#define TAG_SCATTER_ 7202
#define TAG_XGATHER_ 7203

static void add_rows_(float *dst, const float *a, const float *b, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] = a[i] + b[i];
}

mpt_status mpt_tp_gather_seq_rows(void *ctx, const float *local, float *full, size_t Nl,
                                  size_t C, mpt_rows_fn fn, void *fctx, mpt_error *err) {
    mpt_comm *tp = ctx;
    int p = tp->size, r = tp->rank;
    size_t n = Nl * C;
    mpt_status st;
    if (p > MPT_TP_SP_MAX_RANKS) { /* beyond the request arrays: the plain all-gather */
        if ((st = mpt_allgather(tp, local, full, n, err))) return st;
        fn(fctx, 0, (size_t)p * Nl);
        return MPT_OK;
    }
    mpt_req rq[MPT_TP_SP_MAX_RANKS], sq[MPT_TP_SP_MAX_RANKS];
    memset(rq, 0, sizeof rq);
    memset(sq, 0, sizeof sq);
    /* the own block is sent from its place in full, so that local may be overwritten by fn
     * (the bf16 staging buffer holds ln_2 and then the GELU output) */
    float *own = full + (size_t)r * n;
    if (own != local) memcpy(own, local, n * sizeof *own);
    for (int s = 1; s < p; s++) {
        int from = (r + s) % p, to = (r - s + p) % p;
        if ((st = mpt_irecv(tp, full + (size_t)from * n, n, from, TAG_GATHER_, &rq[s], err)))
            return st;
        if ((st = mpt_isend(tp, own, n, to, TAG_GATHER_, &sq[s], err))) return st;
    }
    fn(fctx, (size_t)r * Nl, Nl);
    for (int s = 1; s < p; s++) {
        int from = (r + s) % p;
        if ((st = mpt_wait(&rq[s], err))) return st;
        fn(fctx, (size_t)from * Nl, Nl);
    }
    return p > 1 ? mpt_waitall(sq + 1, (size_t)(p - 1), err) : MPT_OK;
}

mpt_status mpt_tp_rows_scatter_seq(void *ctx, float *buf, size_t Nl, size_t C, float *recv,
                                   mpt_rows_fn fn, mpt_rows_fn rest, void *fctx,
                                   const float *xlocal, float *xfull, size_t xC,
                                   mpt_error *err) {
    mpt_comm *tp = ctx;
    int p = tp->size, r = tp->rank;
    size_t n = Nl * C, xn = Nl * xC;
    mpt_status st;
    if (p > MPT_TP_SP_MAX_RANKS) { /* beyond the request arrays: the plain reduce-scatter */
        fn(fctx, 0, (size_t)p * Nl);
        if (xlocal && (st = mpt_allgather(tp, xlocal, xfull, xn, err))) return st;
        if (rest) rest(fctx, 0, 0);
        return mpt_reduce_scatter_sum(tp, NULL, buf, n, err);
    }
    mpt_req rq[MPT_TP_SP_MAX_RANKS], sq[MPT_TP_SP_MAX_RANKS];
    mpt_req xr[MPT_TP_SP_MAX_RANKS], xs[MPT_TP_SP_MAX_RANKS];
    memset(rq, 0, sizeof rq);
    memset(sq, 0, sizeof sq);
    memset(xr, 0, sizeof xr);
    memset(xs, 0, sizeof xs);
    if (xlocal) { /* the side all-gather: own block in place, sent from there (xlocal may be a
                   * staging buffer that fn overwrites) */
        float *own = xfull + (size_t)r * xn;
        if (own != xlocal) memcpy(own, xlocal, xn * sizeof *own);
        for (int s = 1; s < p; s++) {
            int from = (r + s) % p, to = (r - s + p) % p;
            if ((st = mpt_irecv(tp, xfull + (size_t)from * xn, xn, from, TAG_XGATHER_, &xr[s],
                                err)))
                return st;
            if ((st = mpt_isend(tp, own, xn, to, TAG_XGATHER_, &xs[s], err))) return st;
        }
    }
    /* recv slot s-1 gets rank (r - s)'s partial of block r; posted before any GEMM */
    for (int s = 1; s < p; s++) {
        int from = (r - s + p) % p;
        if ((st = mpt_irecv(tp, recv + (size_t)(s - 1) * n, n, from, TAG_SCATTER_, &rq[s], err)))
            return st;
    }
    for (int s = 1; s < p; s++) { /* the others' blocks, each sent as soon as it is computed */
        int to = (r + s) % p;
        fn(fctx, (size_t)to * Nl, Nl);
        if ((st = mpt_isend(tp, buf + (size_t)to * n, n, to, TAG_SCATTER_, &sq[s], err)))
            return st;
    }
    fn(fctx, (size_t)r * Nl, Nl);
    if (xlocal && p > 1 && (st = mpt_waitall(xr + 1, (size_t)(p - 1), err))) return st;
    if (rest) rest(fctx, 0, 0);
    if (p == 1) return MPT_OK;
    if (xlocal && (st = mpt_waitall(xs + 1, (size_t)(p - 1), err))) return st;
    if ((st = mpt_waitall(rq + 1, (size_t)(p - 1), err))) return st;
    if ((st = mpt_waitall(sq + 1, (size_t)(p - 1), err))) return st; /* buf is free again */
    /* buf[0 .. n) = the partials of block r summed in rank order 0, 1, ..., p-1 */
    const float *part[MPT_TP_SP_MAX_RANKS];
    for (int j = 0; j < p; j++)
        part[j] = j == r ? buf + (size_t)r * n : recv + (size_t)((r - j + p) % p - 1) * n;
    add_rows_(buf, part[0], part[1], n);
    for (int j = 2; j < p; j++) add_rows_(buf, buf, part[j], n);
    return MPT_OK;
}
