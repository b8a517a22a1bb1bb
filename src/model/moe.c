/* moe.c — the Mixture-of-Experts MLP of one block: routing, capacity, expert GEMMs on
 * contiguous runs, combine, aux and z-losses, and backward (see moe.h). */
#include "model/moe.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/kernels.h"
#include "model/moe_experts.h"

/* Where each saved field and each scratch field sits in the float buffers. Integers (idx, pos,
 * send expert, perm, header) are int32 in float-sized slots. */
typedef struct lay_ {
    size_t N, D, F, E, K, El, S, R; /* S = N*K rows sent at most, R = rows received at most */
    /* act */
    size_t probs, lse, gates, cntg, idx, pos, sexp, perm, hdr, ysend, xr, h, hg, act_n;
    /* act, split backward only: the output gradients W needs, kept from B */
    size_t dyr, dhs, dls, split_n;
    /* work */
    size_t xs, b1, b2, b3, rexp, sortk, dh, dhg, dlog, dgate, work_n;
} lay_;

static int add_(size_t *at, size_t n, size_t *field) {
    *field = *at;
    if (*at > SIZE_MAX - n) return 0;
    *at += n;
    return 1;
}

static int layout_(const mpt_config *c, size_t N, int ep, int training, lay_ *l) {
    memset(l, 0, sizeof *l);
    if (ep < 1) ep = 1;
    l->N = N;
    l->D = (size_t)c->d_model;
    l->F = (size_t)c->ffn;
    l->E = (size_t)c->experts;
    l->K = (size_t)c->top_k;
    l->El = l->E / (size_t)ep;
    l->R = mpt_moe_max_rows(c, N, ep);
    size_t NE, NK, SD, RD, RF;
    if (!l->R || !mpt_size_mul(N, l->E, &NE) || !mpt_size_mul(N, l->K, &NK) ||
        !mpt_size_mul(NK, l->D, &SD) || !mpt_size_mul(l->R, l->D, &RD) ||
        !mpt_size_mul(l->R, l->F, &RF))
        return 0;
    l->S = NK;
    size_t a = 0;
    if (!add_(&a, NE, &l->probs) || !add_(&a, N, &l->lse) || !add_(&a, NK, &l->gates) ||
        !add_(&a, l->E, &l->cntg) ||
        !add_(&a, NK, &l->idx) || !add_(&a, NK, &l->pos) || !add_(&a, NK, &l->sexp) ||
        !add_(&a, l->R, &l->perm) || !add_(&a, 3 + l->El, &l->hdr) || !add_(&a, SD, &l->ysend) ||
        !add_(&a, RD, &l->xr) || !add_(&a, RF, &l->h) || !add_(&a, RF, &l->hg))
        return 0;
    l->act_n = a;
    if (!add_(&a, RD, &l->dyr) || !add_(&a, RF, &l->dhs) || !add_(&a, NE, &l->dls)) return 0;
    l->split_n = a;
    a = 0;
    if (!add_(&a, SD, &l->xs) || !add_(&a, RD, &l->b1) || !add_(&a, RD, &l->b2) ||
        !add_(&a, l->R, &l->rexp) || !add_(&a, 2 * NK, &l->sortk))
        return 0;
    if (training && (!add_(&a, RD, &l->b3) || !add_(&a, RF, &l->dh) || !add_(&a, RF, &l->dhg) ||
                     !add_(&a, NE, &l->dlog) || !add_(&a, NK, &l->dgate)))
        return 0;
    l->work_n = a;
    return 1;
}

size_t mpt_moe_max_rows(const mpt_config *c, size_t N, int ep) {
    size_t e = (size_t)(ep > 1 ? ep : 1), NK, R;
    if (c->experts <= 0 || !mpt_size_mul(N, (size_t)c->top_k, &NK) || !mpt_size_mul(NK, e, &R))
        return 0;
    if (c->capacity_factor > 0) {
        double cap = ceil((double)c->capacity_factor * (double)NK / (double)c->experts);
        double bound = cap * (double)(c->experts / (int)e) * (double)e;
        if (bound < (double)R) R = (size_t)bound;
    } else if (c->dropless_bound > 0 && c->dropless_bound < (float)e) {
        double bound = ceil((double)c->dropless_bound * (double)NK);
        if (bound < (double)R) R = (size_t)bound;
    }
    return R ? R : 1;
}

size_t mpt_moe_act_elems(const mpt_config *c, size_t N, int ep) {
    lay_ l;
    return layout_(c, N, ep, 1, &l) ? l.act_n : 0;
}

size_t mpt_moe_split_elems(const mpt_config *c, size_t N, int ep) {
    lay_ l;
    return layout_(c, N, ep, 1, &l) ? l.split_n - l.act_n : 0;
}

size_t mpt_moe_work_elems(const mpt_config *c, size_t N, int ep, int training) {
    lay_ l;
    return layout_(c, N, ep, training, &l) ? l.work_n : 0;
}

static int32_t *ints_(float *p) { return (int32_t *)(void *)p; }

typedef struct cand_ {
    float gate;
    int32_t a; /* assignment t*K + k */
} cand_;

/* Highest gate first, then the earlier assignment (a total order: deterministic). */
static int cand_cmp_(const void *pa, const void *pb) {
    const cand_ *x = pa, *y = pb;
    if (x->gate != y->gate) return x->gate > y->gate ? -1 : 1;
    return (x->a > y->a) - (x->a < y->a);
}

/* Per-phase timing (moe.h, mpt_moe_prof): *t is the clock at the last tick. */
static double prof_start_(const mpt_moe_prof *p) { return p ? p->clock() : 0.0; }
static void prof_tick_(mpt_moe_prof *p, int phase, double *t) {
    if (!p) return;
    double now = p->clock();
    p->t[phase] += now - *t;
    *t = now;
}

/* Routing: probs, lse, top-K idx and gates, then capacity and the send order (pos, sexp).
 * *S = rows sent; adds the per-expert counts and drops to stats. cntg (act) keeps the counts
 * f of the aux loss: summed over cp when the sequence is split (every cp rank calls). */
static mpt_status route_(const mpt_moe_block *b, const lay_ *l, const float *x, float *act,
                         float *work, float weight, mpt_moe_stats *stats, size_t *S_out,
                         double *tick, mpt_error *err) {
    const mpt_config *c = b->cfg;
    size_t N = l->N, E = l->E, K = l->K;
    float *probs = act + l->probs, *lse = act + l->lse, *gates = act + l->gates;
    int32_t *idx = ints_(act + l->idx), *pos = ints_(act + l->pos), *sexp = ints_(act + l->sexp);
    mpt_matmul_forward(probs, x, b->w[0], NULL, N, (int)l->D, (int)E); /* logits first */
    prof_tick_(b->prof, MPT_MOE_F_ROUTER, tick);
    double Pm[MPT_MAX_EXPERTS], cnt[MPT_MAX_EXPERTS], zsum = 0.0;
    for (size_t e = 0; e < E; e++) Pm[e] = cnt[e] = 0.0;
    /* each token on its own (threaded); the sums over tokens after, in token order, so the
     * results do not depend on the thread count */
#pragma omp parallel for schedule(static)
    for (long tl = 0; tl < (long)N; tl++) {
        size_t t = (size_t)tl;
        float *z = probs + t * E;
        int32_t *id = idx + t * K;
        float *g = gates + t * K;
        for (size_t k = 0; k < K; k++) { /* k-th largest, ties to the lower index */
            int32_t best = -1;
            for (size_t e = 0; e < E; e++) {
                int taken = 0;
                for (size_t j = 0; j < k; j++) taken |= id[j] == (int32_t)e;
                if (!taken && (best < 0 || z[e] > z[best])) best = (int32_t)e;
            }
            id[k] = best;
        }
        float zmax = z[id[0]], gs = 0.0f;
        for (size_t k = 0; k < K; k++) gs += g[k] = expf(z[id[k]] - zmax);
        for (size_t k = 0; k < K; k++) g[k] /= gs;
        float mx = z[0];
        for (size_t e = 1; e < E; e++) mx = z[e] > mx ? z[e] : mx;
        double s = 0.0;
        for (size_t e = 0; e < E; e++) s += exp((double)(z[e] - mx));
        lse[t] = mx + (float)log(s);
        for (size_t e = 0; e < E; e++) z[e] = expf(z[e] - lse[t]);
    }
    for (size_t t = 0; t < N; t++) {
        const float *z = probs + t * E;
        zsum += (double)lse[t] * lse[t];
        for (size_t e = 0; e < E; e++) Pm[e] += z[e];
        for (size_t k = 0; k < K; k++) cnt[idx[t * K + k]] += 1.0;
    }
    prof_tick_(b->prof, MPT_MOE_F_TOPK, tick);
    /* capacity: per expert, keep the cap assignments of the highest gates */
    size_t NK = N * K, cap = NK;
    if (c->capacity_factor > 0)
        cap = (size_t)ceil((double)c->capacity_factor * (double)NK / (double)E);
    for (size_t a = 0; a < NK; a++) pos[a] = 0; /* 0 kept, -1 dropped (until numbered) */
    size_t dropped = 0;
    if (cap < NK) {
        cand_ *cs = (cand_ *)(void *)(work + l->sortk);
        for (size_t e = 0; e < E; e++) {
            if (cnt[e] <= (double)cap) continue;
            size_t n = 0;
            for (size_t a = 0; a < NK; a++)
                if (idx[a] == (int32_t)e) cs[n++] = (cand_){gates[a], (int32_t)a};
            qsort(cs, n, sizeof *cs, cand_cmp_);
            for (size_t j = cap; j < n; j++) pos[cs[j].a] = -1;
            dropped += n - cap;
        }
    }
    /* send order: kept assignments sorted by expert, then by assignment (token order) */
    size_t off[MPT_MAX_EXPERTS + 1];
    for (size_t e = 0; e <= E; e++) off[e] = 0;
    for (size_t a = 0; a < NK; a++)
        if (pos[a] == 0) off[idx[a] + 1]++;
    for (size_t e = 0; e < E; e++) off[e + 1] += off[e];
    size_t S = off[E];
    for (size_t a = 0; a < NK; a++) {
        if (pos[a] < 0) continue;
        size_t p = off[idx[a]]++;
        pos[a] = (int32_t)p;
        sexp[p] = idx[a];
    }
    float *cntg = act + l->cntg;
    for (size_t e = 0; e < E; e++) cntg[e] = (float)cnt[e]; /* exact: counts < 2^24 */
    if (b->ops && b->ops->cp_count_sum) {
        mpt_status st = b->ops->cp_count_sum(b->ops->cp_ctx, cntg, E, err);
        if (st) return st;
    }
    if (b->tp_sum) { /* sp: the other tp ranks' rows of the micro-batch */
        mpt_status st = b->ops->reduce_from_tp(b->ops->ctx, cntg, E, err);
        if (st) return st;
    }
    double NKg = 0.0, aux = 0.0;
    for (size_t e = 0; e < E; e++) NKg += cntg[e];
    for (size_t e = 0; e < E; e++) aux += cntg[e] / NKg * (Pm[e] / (double)N);
    aux *= (double)c->aux_loss_coef * (double)E;
    if (stats) {
        stats->aux_loss += weight * aux;
        stats->z_loss += weight * (double)c->z_loss_coef * zsum / (double)N;
        stats->dropped += (double)dropped;
        stats->assignments += (double)NK;
        for (size_t e = 0; e < E; e++) stats->tokens[e] += cnt[e];
    }
    *S_out = S;
    prof_tick_(b->prof, MPT_MOE_F_COUNTS, tick);
    return MPT_OK;
}

/* rows (n, D) to the ranks of their experts (ep > 1) or a local copy: recv (R, D) and each
 * received row's local expert in rexp (NULL: not sent; every ep rank alike); R in *nr. */
static mpt_status dispatch_(const mpt_moe_block *b, const lay_ *l, const float *rows,
                            const int32_t *sexp, size_t n, float *recv, int32_t *rexp,
                            size_t *nr, mpt_error *err) {
    if (b->ep <= 1) {
        memcpy(recv, rows, n * l->D * sizeof *recv);
        if (rexp) memcpy(rexp, sexp, n * sizeof *rexp);
        *nr = n;
        return MPT_OK;
    }
    if (!b->ops || !b->ops->expert_dispatch)
        return mpt_fail(err, MPT_ERR_RUN, "expert parallelism needs the expert_dispatch entry "
                        "of the parallel operations (parallel/ep.c)");
    return b->ops->expert_dispatch(b->ops->ep_ctx, rows, sexp, n, (int)l->D, l->R, recv, rexp,
                                   nr, err);
}

static mpt_status combine_(const mpt_moe_block *b, const lay_ *l, const float *out, size_t nr,
                           float *y, size_t n, mpt_error *err) {
    if (b->ep <= 1) {
        memcpy(y, out, n * l->D * sizeof *y);
        return MPT_OK;
    }
    if (!b->ops->expert_combine)
        return mpt_fail(err, MPT_ERR_RUN, "expert parallelism needs the expert_combine entry "
                        "of the parallel operations (parallel/ep.c)");
    return b->ops->expert_combine(b->ops->ep_ctx, out, nr, y, n, (int)l->D, err);
}

/* dst row pos[a] = src row a / K for every kept assignment a < NK (threaded; the rows written
 * are distinct). */
static void gather_rows_(float *dst, const float *src, const int32_t *pos, size_t NK, size_t K,
                         size_t D) {
#pragma omp parallel for schedule(static)
    for (long al = 0; al < (long)NK; al++) {
        size_t a = (size_t)al;
        if (pos[a] >= 0) memcpy(dst + (size_t)pos[a] * D, src + a / K * D, D * sizeof *dst);
    }
}

/* dst row perm[s] = src row s (un-sort, to = 0) or dst row s = src row perm[s] (sort, to = 1),
 * for s < n (threaded). */
static void permute_rows_(float *dst, const float *src, const int32_t *perm, size_t n, size_t D,
                          int to) {
#pragma omp parallel for schedule(static)
    for (long sl = 0; sl < (long)n; sl++) {
        size_t s = (size_t)sl, p = (size_t)perm[s];
        if (to) memcpy(dst + s * D, src + p * D, D * sizeof *dst);
        else memcpy(dst + p * D, src + s * D, D * sizeof *dst);
    }
}

mpt_status mpt_moe_forward(const mpt_moe_block *b, float *out, const float *x, size_t N,
                           float *act, float *work, float weight, mpt_moe_stats *stats,
                           mpt_error *err) {
    lay_ l;
    if (!layout_(b->cfg, N, b->ep, 0, &l))
        return mpt_fail(err, MPT_ERR_RUN, "moe: %zu tokens overflow the buffers", N);
    size_t D = l.D, F = l.F, K = l.K, El = l.El, NK = N * K;
    size_t S = 0, R = 0;
    double tick = prof_start_(b->prof);
    mpt_status st = route_(b, &l, x, act, work, weight, stats, &S, &tick, err);
    if (st) return st;
    const int32_t *pos = ints_(act + l.pos), *sexp = ints_(act + l.sexp);
    int32_t *perm = ints_(act + l.perm), *hdr = ints_(act + l.hdr), *rexp = ints_(work + l.rexp);
    float *xs = work + l.xs, *b1 = work + l.b1, *b2 = work + l.b2;
    float *xr = act + l.xr, *h = act + l.h, *hg = act + l.hg, *ysend = act + l.ysend;
    /* received rows sorted by local expert (stable): runs [off[j], off[j+1]) */
    int32_t *off = hdr + 2;
    hdr[0] = (int32_t)S;
    for (size_t j = 0; j <= El; j++) off[j] = 0;
    if (b->ep <= 1) {
        /* one rank: the send order is already sorted by expert, so the token rows go straight
         * into the experts' runs and their outputs straight into ysend (perm = identity) */
        gather_rows_(xr, x, pos, NK, K, D);
        R = S;
        for (size_t r = 0; r < R; r++) off[sexp[r] + 1]++, perm[r] = (int32_t)r;
        for (size_t j = 0; j < El; j++) off[j + 1] += off[j];
        prof_tick_(b->prof, MPT_MOE_F_GATHER, &tick);
        mpt_moe_experts_forward(ysend, h, hg, xr, b->w + 1, off, El, D, F);
        prof_tick_(b->prof, MPT_MOE_F_EXPERTS, &tick);
    } else {
        gather_rows_(xs, x, pos, NK, K, D);
        prof_tick_(b->prof, MPT_MOE_F_GATHER, &tick);
        if ((st = dispatch_(b, &l, xs, sexp, S, b1, rexp, &R, err))) return st;
        for (size_t r = 0; r < R; r++) off[rexp[r] + 1]++; /* local expert indices */
        for (size_t j = 0; j < El; j++) off[j + 1] += off[j];
        size_t next[MPT_MAX_EXPERTS];
        for (size_t j = 0; j < El; j++) next[j] = (size_t)off[j];
        for (size_t r = 0; r < R; r++) perm[next[rexp[r]]++] = (int32_t)r;
        permute_rows_(xr, b1, perm, R, D, 1);
        prof_tick_(b->prof, MPT_MOE_F_DISPATCH, &tick);
        mpt_moe_experts_forward(b2, h, hg, xr, b->w + 1, off, El, D, F);
        prof_tick_(b->prof, MPT_MOE_F_EXPERTS, &tick);
        permute_rows_(b1, b2, perm, R, D, 0);
        if ((st = combine_(b, &l, b1, R, ysend, S, err))) return st;
        prof_tick_(b->prof, MPT_MOE_F_COMBINE, &tick);
    }
    hdr[1] = (int32_t)R;
    const float *gates = act + l.gates;
#pragma omp parallel for schedule(static)
    for (long tl = 0; tl < (long)N; tl++) { /* each token's kept assignments, in order k */
        size_t t = (size_t)tl;
        float *o = out + t * D;
        memset(o, 0, D * sizeof *o);
        for (size_t k = 0; k < K; k++) {
            size_t a = t * K + k;
            if (pos[a] < 0) continue;
            float g = gates[a];
            const float *y = ysend + (size_t)pos[a] * D;
#pragma omp simd
            for (size_t i = 0; i < D; i++) o[i] += g * y[i];
        }
    }
    prof_tick_(b->prof, MPT_MOE_F_WSUM, &tick);
    return MPT_OK;
}

/* mpt_moe_backward; dx_set: dx is overwritten (=) rather than accumulated, which spares the
 * caller a zeroing pass (the engine's blocks). */
static mpt_status backward_(const mpt_moe_block *b, float *dx, const float *dy, const float *x,
                            size_t N, float *act, float *work, float weight, int split,
                            int dx_set, mpt_error *err) {
    lay_ l;
    if (!layout_(b->cfg, N, b->ep, 1, &l))
        return mpt_fail(err, MPT_ERR_RUN, "moe: %zu tokens overflow the buffers", N);
    const mpt_config *c = b->cfg;
    size_t D = l.D, F = l.F, K = l.K, E = l.E, El = l.El, NK = N * K;
    const int32_t *idx = ints_(act + l.idx), *pos = ints_(act + l.pos);
    const int32_t *sexp = ints_(act + l.sexp), *perm = ints_(act + l.perm);
    const int32_t *hdr = ints_(act + l.hdr), *off = hdr + 2;
    size_t S = (size_t)hdr[0], R = (size_t)hdr[1];
    const float *gates = act + l.gates, *ysend = act + l.ysend, *probs = act + l.probs;
    const float *lse = act + l.lse, *xr = act + l.xr, *h = act + l.h, *hg = act + l.hg;
    float *xs = work + l.xs, *b1 = work + l.b1, *b3 = work + l.b3;
    float *dhg = work + l.dhg, *dgate = work + l.dgate;
    /* split: the expert rows' output gradients (b2, dh) and the router's (dlog) stay for W */
    float *b2 = split ? act + l.dyr : work + l.b2, *dh = split ? act + l.dhs : work + l.dh;
    float *dlog = split ? act + l.dls : work + l.dlog;
    int local = b->ep <= 1; /* one rank: send order = the experts' runs (perm = identity) */
    double tick = prof_start_(b->prof);
    /* gates: dgate = <dy_t, y_a>; the rows sent back to the experts: g * dy_t */
    float *rows = local ? b2 : xs;
#pragma omp parallel for schedule(static)
    for (long al = 0; al < (long)NK; al++) {
        size_t a = (size_t)al;
        dgate[a] = 0.0f;
        if (pos[a] < 0) continue;
        const float *d = dy + a / K * D, *y = ysend + (size_t)pos[a] * D;
        float *o = rows + (size_t)pos[a] * D, g = gates[a], s = 0.0f;
        for (size_t i = 0; i < D; i++) {
            s += d[i] * y[i];
            o[i] = g * d[i];
        }
        dgate[a] = s;
    }
    prof_tick_(b->prof, MPT_MOE_B_GATE, &tick);
    if (!local) {
        size_t nr = 0;
        mpt_status st = dispatch_(b, &l, xs, sexp, S, b1, NULL, &nr, err); /* perm kept */
        if (st) return st;
        if (nr != R)
            return mpt_fail(err, MPT_ERR_RUN, "moe backward: %zu rows received, forward had %zu",
                            nr, R);
        permute_rows_(b2, b1, perm, R, D, 1);
        prof_tick_(b->prof, MPT_MOE_B_DISPATCH, &tick);
    }
    float *dxr = local ? xs : b3; /* one rank: the input-gradient rows land in send order */
    mpt_moe_experts_backward(dxr, dh, dhg, b2, xr, h, hg, b->w + 1, off, El, D, F);
    prof_tick_(b->prof, MPT_MOE_B_EXPERTS, &tick);
    if (!split) {
        mpt_moe_experts_weights(b->g + 1, b2, dh, xr, hg, off, El, D, F);
        prof_tick_(b->prof, MPT_MOE_B_WEIGHTS, &tick);
    }
    if (!local) {
        permute_rows_(b1, b3, perm, R, D, 0);
        mpt_status st = combine_(b, &l, b1, R, xs, S, err);
        if (st) return st;
        prof_tick_(b->prof, MPT_MOE_B_COMBINE, &tick);
    }
#pragma omp parallel for schedule(static)
    for (long tl = 0; tl < (long)N; tl++) { /* each token's kept assignments, in order k */
        size_t t = (size_t)tl;
        float *o = dx + t * D;
        if (dx_set) memset(o, 0, D * sizeof *o);
        for (size_t k = 0; k < K; k++) {
            size_t a = t * K + k;
            if (pos[a] < 0) continue;
            const float *d = xs + (size_t)pos[a] * D;
#pragma omp simd
            for (size_t i = 0; i < D; i++) o[i] += d[i];
        }
    }
    prof_tick_(b->prof, MPT_MOE_B_SCATTER, &tick);
    /* router logits: gate softmax over the K chosen, then the aux and z-loss terms (each token's
     * share of the micro-batch's weight is weight / N; f from the counts forward kept) */
    const float *cntg = act + l.cntg;
    double cnt[MPT_MAX_EXPERTS], NKg = 0.0;
    for (size_t e = 0; e < E; e++) NKg += cnt[e] = cntg[e];
    float fa = weight / (float)N * c->aux_loss_coef * (float)E / (float)NKg;
    float fz = weight / (float)N * 2.0f * c->z_loss_coef;
#pragma omp parallel for schedule(static)
    for (long tl = 0; tl < (long)N; tl++) {
        size_t t = (size_t)tl;
        float *d = dlog + t * E;
        const float *p = probs + t * E;
        double pf = 0.0;
        for (size_t e = 0; e < E; e++) pf += (double)p[e] * cnt[e];
        for (size_t e = 0; e < E; e++)
            d[e] = fa * p[e] * (float)(cnt[e] - pf) + fz * lse[t] * p[e];
        const float *g = gates + t * K, *dg = dgate + t * K;
        float gd = 0.0f;
        for (size_t k = 0; k < K; k++) gd += g[k] * dg[k];
        for (size_t k = 0; k < K; k++) d[idx[t * K + k]] += g[k] * (dg[k] - gd);
    }
    prof_tick_(b->prof, MPT_MOE_B_ROUTER, &tick);
    mpt_matmul_backward(dx, split ? NULL : b->g[0], NULL, dlog, x, b->w[0], N, (int)D, (int)E);
    prof_tick_(b->prof, MPT_MOE_B_ROUTER_GEMM, &tick);
    return MPT_OK;
}

mpt_status mpt_moe_backward(const mpt_moe_block *b, float *dx, const float *dy, const float *x,
                            size_t N, float *act, float *work, float weight, int split,
                            mpt_error *err) {
    return backward_(b, dx, dy, x, N, act, work, weight, split, 0, err);
}

mpt_status mpt_moe_backward_weights(const mpt_moe_block *b, const float *x, size_t N,
                                    const float *act, mpt_error *err) {
    lay_ l;
    if (!layout_(b->cfg, N, b->ep, 1, &l))
        return mpt_fail(err, MPT_ERR_RUN, "moe: %zu tokens overflow the buffers", N);
    size_t D = l.D, F = l.F, E = l.E, El = l.El;
    const int32_t *off = ints_((float *)(uintptr_t)(act + l.hdr)) + 2;
    const float *xr = act + l.xr, *hg = act + l.hg;
    const float *dyr = act + l.dyr, *dhs = act + l.dhs, *dls = act + l.dls;
    /* dW = X^T dY, db = sum dY, as the unsplit backward */
    mpt_moe_experts_weights(b->g + 1, dyr, dhs, xr, hg, off, El, D, F);
    mpt_matmul_backward(NULL, b->g[0], NULL, dls, x, NULL, N, (int)D, (int)E);
    return MPT_OK;
}

/* ------------------------------------------------------------ the engine's MoE blocks */

#include "model/gpt.h"

size_t mpt_gpt_router(const mpt_gpt *m, int l) {
    size_t i = m->pt.layer[(size_t)l * MPT_LAYER_SLOTS + MPT_FC_W];
    return m->pt.t[i].expert >= 0 ? i - 1 : SIZE_MAX; /* the router precedes expert 0's c_fc */
}

/* Block l's share of the MoE activation slot (one share when recomputed). */
static float *moe_act_(const mpt_gpt *m, int l) {
    size_t layers = (size_t)m->slot_layers[MPT_ACT_MOE];
    return m->cur->a[MPT_ACT_MOE] +
           (layers > 1 ? (size_t)l * (m->act_n[MPT_ACT_MOE] / layers) : 0);
}

/* The block's router and this rank's experts (its table holds only those). */
static mpt_moe_block moe_block_(const mpt_gpt *m, int l, int grads) {
    size_t r = mpt_gpt_router(m, l);
    mpt_moe_block b = {.cfg = &m->cfg, .ops = &m->ops, .ep = m->ep, .ep_rank = m->ep_rank,
                       .tp_sum = m->sp, .w = m->w + r, .g = grads ? m->g + r : NULL};
    return b;
}

/* sp: the router and expert gradients of block l around a pass that adds (+=) this tp rank's
 * rows' part to them. Before (after = 0) each is scaled by 1/tp, after (after = 1) summed over
 * tp: the tp ranks held the same accumulated gradient G (replicated tensors), so the sum is
 * G + the parts of every rank's rows, with no buffer for the parts (x/tp summed tp times is
 * exactly x when tp is a power of two; otherwise within an ulp). Every tp rank calls. */
static mpt_status moe_tp_grads_(mpt_gpt *m, int l, int after, mpt_error *err) {
    if (!m->sp) return MPT_OK;
    size_t r = mpt_gpt_router(m, l), n_t = 1 + 4 * (size_t)(m->cfg.experts / m->ep);
    float s = 1.0f / (float)m->tp;
    for (size_t i = r; i < r + n_t; i++) {
        float *g = m->g[i];
        size_t n = m->pt.t[i].numel;
        if (after) {
            mpt_status st = m->ops.reduce_from_tp(m->ops.ctx, g, n, err);
            if (st) return st;
        } else {
            for (size_t k = 0; k < n; k++) g[k] *= s;
        }
    }
    return MPT_OK;
}

mpt_status mpt_gpt_moe_forward(mpt_gpt *m, int l, float *out, const float *x, size_t N,
                               mpt_error *err) {
    mpt_moe_block b = moe_block_(m, l, 0);
    return mpt_moe_forward(&b, out, x, N, moe_act_(m, l), m->work[MPT_WORK_MOE], m->moe_weight,
                           m->moe_stats_on ? (m->moe_to ? m->moe_to : &m->moe) : NULL, err);
}

mpt_status mpt_gpt_moe_backward(mpt_gpt *m, int l, float *dx, const float *dy, const float *x,
                                size_t N, mpt_error *err) {
    mpt_moe_block b = moe_block_(m, l, 1);
    mpt_status st = m->split_w ? MPT_OK : moe_tp_grads_(m, l, 0, err); /* split: W writes them */
    if (!st) /* dx overwritten: no zeroing pass */
        st = backward_(&b, dx, dy, x, N, moe_act_(m, l), m->work[MPT_WORK_MOE], m->moe_weight,
                       m->split_w, 1, err);
    return st || m->split_w ? st : moe_tp_grads_(m, l, 1, err);
}

mpt_status mpt_gpt_moe_backward_weights(mpt_gpt *m, int l, const float *x, size_t N,
                                        mpt_error *err) {
    mpt_moe_block b = moe_block_(m, l, 1);
    mpt_status st = moe_tp_grads_(m, l, 0, err);
    if (!st) st = mpt_moe_backward_weights(&b, x, N, moe_act_(m, l), err);
    return st ? st : moe_tp_grads_(m, l, 1, err);
}
