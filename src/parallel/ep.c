/* ep.c — expert parallelism: dispatch and combine over the ep group with MPI_Alltoallv, and
 * the expert gradients' buffer and reduction (see ep.h). */
#include "parallel/ep.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/adamw.h"

/* cnt layout: [0,n) send rows, [n,2n) send displs, [2n,3n) recv rows, [3n,4n) recv displs,
 * [4n,8n) the same four in elements, [8n, 8n + n*n) every rank's send rows */
#define SC_(ep) ((ep)->cnt)
#define SD_(ep) ((ep)->cnt + (ep)->n)
#define RC_(ep) ((ep)->cnt + 2 * (ep)->n)
#define RD_(ep) ((ep)->cnt + 3 * (ep)->n)
#define EL_(ep, k) ((ep)->cnt + (4 + (k)) * (ep)->n)

mpt_status mpt_ep_init(mpt_ep *ep, mpt_comm *comm, int experts, mpt_error *err) {
    memset(ep, 0, sizeof *ep);
    ep->comm = comm;
    ep->n = comm->size;
    ep->rank = comm->rank;
    if (experts <= 0 || experts % ep->n != 0)
        return mpt_fail(err, MPT_ERR_INPUT, "--ep %d must divide --experts %d", ep->n, experts);
    ep->El = experts / ep->n;
    ep->cnt = calloc(8 * (size_t)ep->n + (size_t)ep->n * (size_t)ep->n, sizeof *ep->cnt);
    if (!ep->cnt) return mpt_fail(err, MPT_ERR_RUN, "out of memory for the ep counts");
    return MPT_OK;
}

void mpt_ep_free(mpt_ep *ep) {
    if (!ep) return;
    if (ep->arena && ep->grads)
        mpt_arena_release(ep->arena, MPT_MEM_GRADS, ep->grads, ep->grads_n, MPT_F32);
    free(ep->cnt);
    memset(ep, 0, sizeof *ep);
}

/* Row counts and displacements times D into element slots k0 (counts), k0+1 (displs). */
static mpt_status scale_(mpt_ep *ep, const int *c, int k0, int D, mpt_error *err) {
    int *ce = EL_(ep, k0), *de = EL_(ep, k0 + 1);
    long long at = 0;
    for (int q = 0; q < ep->n; q++) {
        long long n = (long long)c[q] * D;
        if (n > INT_MAX || at > INT_MAX)
            return mpt_fail(err, MPT_ERR_RUN, "expert dispatch: %lld elements exceed an MPI "
                            "count", n > at ? n : at);
        ce[q] = (int)n;
        de[q] = (int)at;
        at += n;
    }
    return MPT_OK;
}

static mpt_status dispatch_(void *ctx, const float *x, const int32_t *expert, size_t n, int D,
                            size_t max_recv, float *recv, int32_t *recv_expert, size_t *n_recv,
                            mpt_error *err) {
    mpt_ep *ep = ctx;
    int *sc = SC_(ep), *sd = SD_(ep), *rc = RC_(ep), *rd = RD_(ep);
    if (n > INT_MAX) return mpt_fail(err, MPT_ERR_RUN, "expert dispatch: %zu rows", n);
    for (int q = 0; q < ep->n; q++) sc[q] = 0;
    for (size_t i = 0; i < n; i++) {
        int q = expert[i] / ep->El;
        if (q < 0 || q >= ep->n || (i > 0 && expert[i] < expert[i - 1]))
            return mpt_fail(err, MPT_ERR_RUN, "expert dispatch: row %zu (expert %d) is out of "
                            "order or range", i, (int)expert[i]);
        sc[q]++;
    }
    /* the counts first: every rank learns how many rows each rank sends to each (an all-gather
     * of the n x n matrix, so every rank knows every rank's total and all reach the same
     * verdict on the bound before any row moves) */
    int *all = ep->cnt + 8 * (size_t)ep->n; /* all[src * n + dst] */
    mpt_status st = mpt_allgather_dt(ep->comm, sc, all, (size_t)ep->n, MPT_I32, err);
    if (st) return st;
    for (int d = 0; d < ep->n; d++) {
        size_t got = 0;
        for (int q = 0; q < ep->n; q++) got += (size_t)all[(size_t)q * ep->n + d];
        if (got > max_recv)
            return mpt_fail(err, MPT_ERR_RUN, "expert dispatch: the experts of ep rank %d would "
                            "receive %zu token rows, more than the %zu the memory plan holds "
                            "(the dropless bound): raise --moe-dropless-bound (at "
                            "most --ep, the worst case) or set --capacity-factor", d, got,
                            max_recv);
        if (d == ep->rank)
            for (int q = 0; q < ep->n; q++) rc[q] = all[(size_t)q * ep->n + d];
    }
    size_t total = 0;
    for (int q = 0, a = 0, b = 0; q < ep->n; q++) {
        sd[q] = a, a += sc[q];
        rd[q] = b, b += rc[q];
        total += (size_t)rc[q];
    }
    *n_recv = total;
    if ((st = scale_(ep, sc, 0, D, err)) || (st = scale_(ep, rc, 2, D, err))) return st;
    if ((st = mpt_alltoallv(ep->comm, x, EL_(ep, 0), EL_(ep, 1), recv, EL_(ep, 2), EL_(ep, 3),
                            err)))
        return st;
    if (!recv_expert) return MPT_OK; /* the backward: its forward kept the order */
    if ((st = mpt_alltoallv_dt(ep->comm, expert, sc, sd, recv_expert, rc, rd, MPT_I32, err)))
        return st;
    for (size_t r = 0; r < total; r++) recv_expert[r] -= ep->rank * ep->El; /* local index */
    return MPT_OK;
}

static mpt_status combine_(void *ctx, const float *out, size_t n_out, float *y, size_t n, int D,
                           mpt_error *err) {
    mpt_ep *ep = ctx;
    size_t got = 0, sent = 0;
    for (int q = 0; q < ep->n; q++) got += (size_t)RC_(ep)[q], sent += (size_t)SC_(ep)[q];
    if (got != n_out || sent != n)
        return mpt_fail(err, MPT_ERR_RUN, "expert combine: %zu / %zu rows do not match the "
                        "dispatch's %zu / %zu", n_out, n, got, sent);
    (void)D; /* the element counts of the dispatch already hold D */
    return mpt_alltoallv(ep->comm, out, EL_(ep, 2), EL_(ep, 3), y, EL_(ep, 0), EL_(ep, 1), err);
}

void mpt_ep_ops(mpt_par_ops *ops, mpt_ep *ep) {
    ops->ep_ctx = ep;
    ops->expert_dispatch = dispatch_;
    ops->expert_combine = combine_;
}

size_t mpt_ep_expert_elems(const mpt_param_table *pt) {
    size_t n = 0;
    for (size_t i = 0; i < pt->n; i++)
        if (pt->t[i].expert >= 0) n += pt->t[i].numel;
    return n;
}

mpt_status mpt_ep_grads_init(mpt_ep *ep, mpt_gpt *model, mpt_comm *edp, mpt_arena *arena,
                             mpt_error *err) {
    ep->model = model;
    ep->edp = edp && edp->size > 1 ? edp : NULL;
    ep->arena = arena;
    ep->grads_n = mpt_ep_expert_elems(&model->pt);
    if (!ep->grads_n) return MPT_OK;
    mpt_status st = mpt_arena_alloc(arena, MPT_MEM_GRADS, ep->grads_n, MPT_F32, &ep->grads, err);
    if (st) return st;
    const mpt_param_table *pt = &model->pt;
    for (size_t i = 0, at = 0; i < pt->n; i++)
        if (pt->t[i].expert >= 0) {
            model->g[i] = ep->grads + at;
            at += pt->t[i].numel;
        }
    return MPT_OK;
}

void mpt_ep_grads_zero(mpt_ep *ep) {
    if (ep->grads) memset(ep->grads, 0, ep->grads_n * sizeof *ep->grads);
}

mpt_status mpt_ep_grads_finish(mpt_ep *ep, mpt_error *err) {
    if (!ep->grads) return MPT_OK;
    mpt_status st = ep->edp ? mpt_allreduce_sum(ep->edp, ep->grads, ep->grads_n, err) : MPT_OK;
    if (st) return st;
    const mpt_param_table *pt = &ep->model->pt;
    for (size_t i = 0, at = 0; i < pt->n; i++)
        if (pt->t[i].expert >= 0) {
            memcpy(ep->model->grads + pt->t[i].offset, ep->grads + at,
                   pt->t[i].numel * sizeof *ep->grads);
            at += pt->t[i].numel;
        }
    return MPT_OK;
}

mpt_status mpt_ep_fix_norm(mpt_ep *ep, mpt_comm *tp, mpt_comm *pp, double *norm, mpt_error *err) {
    /* this rank's experts as the dp module counted them: on tp rank 0, over every stage */
    double mine = 0.0;
    if (ep->grads && (!tp || tp->rank == 0)) mine = mpt_sum_squares(ep->grads, ep->grads_n);
    mpt_status st = MPT_OK;
    if (tp && tp->size > 1) st = mpt_allreduce_sum_f64(tp, &mine, 1, err);
    if (!st && pp && pp->size > 1) st = mpt_allreduce_sum_f64(pp, &mine, 1, err);
    double all = mine;
    if (!st && ep->n > 1) st = mpt_allreduce_sum_f64(ep->comm, &all, 1, err);
    if (st) return st;
    double sq = *norm * *norm - mine + all;
    *norm = sqrt(sq > 0.0 ? sq : 0.0);
    return MPT_OK;
}
