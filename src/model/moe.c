/* moe.c — the Mixture-of-Experts MLP of one block: routing, capacity, expert GEMMs on
 * contiguous runs, combine, aux and z-losses, and backward (see moe.h). */
#include "model/moe.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/kernels.h"

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

/* Routing: probs, lse, top-K idx and gates, then capacity and the send order (pos, sexp).
 * *S = rows sent; adds the per-expert counts and drops to stats. cntg (act) keeps the counts
 * f of the aux loss: summed over cp when the sequence is split (every cp rank calls). */
static mpt_status route_(const mpt_moe_block *b, const lay_ *l, const float *x, float *act,
                         float *work, float weight, mpt_moe_stats *stats, size_t *S_out,
                         mpt_error *err) {
    const mpt_config *c = b->cfg;
    size_t N = l->N, E = l->E, K = l->K;
    float *probs = act + l->probs, *lse = act + l->lse, *gates = act + l->gates;
    int32_t *idx = ints_(act + l->idx), *pos = ints_(act + l->pos), *sexp = ints_(act + l->sexp);
    mpt_matmul_forward(probs, x, b->w[0], NULL, N, (int)l->D, (int)E); /* logits first */
    double Pm[MPT_MAX_EXPERTS], cnt[MPT_MAX_EXPERTS], zsum = 0.0;
    for (size_t e = 0; e < E; e++) Pm[e] = cnt[e] = 0.0;
    for (size_t t = 0; t < N; t++) {
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
        zsum += (double)lse[t] * lse[t];
        for (size_t e = 0; e < E; e++) {
            z[e] = expf(z[e] - lse[t]);
            Pm[e] += z[e];
        }
        for (size_t k = 0; k < K; k++) cnt[id[k]] += 1.0;
    }
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
    return MPT_OK;
}

/* rows (n, D) to the ranks of their experts (ep > 1) or a local copy: recv (R, D) and each
 * received row's local expert in rexp; returns R through *nr. */
static mpt_status dispatch_(const mpt_moe_block *b, const lay_ *l, const float *rows,
                            const int32_t *sexp, size_t n, float *recv, int32_t *rexp,
                            size_t *nr, mpt_error *err) {
    if (b->ep <= 1) {
        memcpy(recv, rows, n * l->D * sizeof *recv);
        memcpy(rexp, sexp, n * sizeof *rexp);
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

mpt_status mpt_moe_forward(const mpt_moe_block *b, float *out, const float *x, size_t N,
                           float *act, float *work, float weight, mpt_moe_stats *stats,
                           mpt_error *err) {
    lay_ l;
    if (!layout_(b->cfg, N, b->ep, 0, &l))
        return mpt_fail(err, MPT_ERR_RUN, "moe: %zu tokens overflow the buffers", N);
    size_t D = l.D, F = l.F, K = l.K, El = l.El;
    size_t S = 0;
    mpt_status st = route_(b, &l, x, act, work, weight, stats, &S, err);
    if (st) return st;
    const int32_t *pos = ints_(act + l.pos), *sexp = ints_(act + l.sexp);
    int32_t *perm = ints_(act + l.perm), *hdr = ints_(act + l.hdr), *rexp = ints_(work + l.rexp);
    float *xs = work + l.xs, *b1 = work + l.b1, *b2 = work + l.b2;
    for (size_t a = 0; a < N * K; a++)
        if (pos[a] >= 0) memcpy(xs + (size_t)pos[a] * D, x + a / K * D, D * sizeof *xs);
    size_t R = 0;
    if ((st = dispatch_(b, &l, xs, sexp, S, b1, rexp, &R, err))) return st;
    /* received rows sorted by local expert (stable): runs [off[j], off[j+1]) */
    int32_t *off = hdr + 2;
    hdr[0] = (int32_t)S;
    hdr[1] = (int32_t)R;
    for (size_t j = 0; j <= El; j++) off[j] = 0;
    for (size_t r = 0; r < R; r++) off[rexp[r] + 1]++; /* local expert indices */
    for (size_t j = 0; j < El; j++) off[j + 1] += off[j];
    float *xr = act + l.xr, *h = act + l.h, *hg = act + l.hg;
    {
        size_t next[MPT_MAX_EXPERTS];
        for (size_t j = 0; j < El; j++) next[j] = (size_t)off[j];
        for (size_t r = 0; r < R; r++) {
            size_t s = next[rexp[r]]++;
            perm[s] = (int32_t)r;
            memcpy(xr + s * D, b1 + r * D, D * sizeof *xr);
        }
    }
    for (size_t j = 0; j < El; j++) {
        size_t o = (size_t)off[j], n = (size_t)off[j + 1] - o;
        if (!n) continue;
        float *const *w = b->w + 1 + 4 * j;
        mpt_matmul_forward(h + o * F, xr + o * D, w[0], w[1], n, (int)D, (int)F);
        mpt_gelu_forward(hg + o * F, h + o * F, n * F);
        mpt_matmul_forward(b2 + o * D, hg + o * F, w[2], w[3], n, (int)F, (int)D);
    }
    for (size_t s = 0; s < R; s++) memcpy(b1 + (size_t)perm[s] * D, b2 + s * D, D * sizeof *b1);
    float *ysend = act + l.ysend;
    if ((st = combine_(b, &l, b1, R, ysend, S, err))) return st;
    const float *gates = act + l.gates;
    memset(out, 0, N * D * sizeof *out);
    for (size_t a = 0; a < N * K; a++) {
        if (pos[a] < 0) continue;
        float g = gates[a], *o = out + a / K * D;
        const float *y = ysend + (size_t)pos[a] * D;
        for (size_t i = 0; i < D; i++) o[i] += g * y[i];
    }
    return MPT_OK;
}

mpt_status mpt_moe_backward(const mpt_moe_block *b, float *dx, const float *dy, const float *x,
                            size_t N, float *act, float *work, float weight, int split,
                            mpt_error *err) {
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
    int32_t *rexp = ints_(work + l.rexp);
    /* gates: dgate = <dy_t, y_a>; the rows sent back to the experts: g * dy_t */
    for (size_t a = 0; a < NK; a++) {
        dgate[a] = 0.0f;
        if (pos[a] < 0) continue;
        const float *d = dy + a / K * D, *y = ysend + (size_t)pos[a] * D;
        float *o = xs + (size_t)pos[a] * D, g = gates[a], s = 0.0f;
        for (size_t i = 0; i < D; i++) {
            s += d[i] * y[i];
            o[i] = g * d[i];
        }
        dgate[a] = s;
    }
    size_t nr = 0;
    mpt_status st = dispatch_(b, &l, xs, sexp, S, b1, rexp, &nr, err);
    if (st) return st;
    if (nr != R)
        return mpt_fail(err, MPT_ERR_RUN, "moe backward: %zu rows received, forward had %zu", nr,
                        R);
    for (size_t s = 0; s < R; s++) memcpy(b2 + s * D, b1 + (size_t)perm[s] * D, D * sizeof *b2);
    for (size_t j = 0; j < El; j++) {
        size_t o = (size_t)off[j], n = (size_t)off[j + 1] - o;
        if (!n) continue;
        float *const *w = b->w + 1 + 4 * j, *const *g = b->g + 1 + 4 * j;
        memset(dhg + o * F, 0, n * F * sizeof *dhg);
        mpt_matmul_backward(dhg + o * F, split ? NULL : g[2], split ? NULL : g[3], b2 + o * D,
                            hg + o * F, w[2], n, (int)F, (int)D);
        memset(dh + o * F, 0, n * F * sizeof *dh);
        mpt_gelu_backward(dh + o * F, h + o * F, dhg + o * F, n * F);
        memset(b3 + o * D, 0, n * D * sizeof *b3);
        mpt_matmul_backward(b3 + o * D, split ? NULL : g[0], split ? NULL : g[1], dh + o * F,
                            xr + o * D, w[0], n, (int)D, (int)F);
    }
    for (size_t s = 0; s < R; s++) memcpy(b1 + (size_t)perm[s] * D, b3 + s * D, D * sizeof *b1);
    if ((st = combine_(b, &l, b1, R, xs, S, err))) return st;
    for (size_t a = 0; a < NK; a++) {
        if (pos[a] < 0) continue;
        float *o = dx + a / K * D;
        const float *d = xs + (size_t)pos[a] * D;
        for (size_t i = 0; i < D; i++) o[i] += d[i];
    }
    /* router logits: gate softmax over the K chosen, then the aux and z-loss terms (each token's
     * share of the micro-batch's weight is weight / N; f from the counts forward kept) */
    const float *cntg = act + l.cntg;
    double cnt[MPT_MAX_EXPERTS], NKg = 0.0;
    for (size_t e = 0; e < E; e++) NKg += cnt[e] = cntg[e];
    float fa = weight / (float)N * c->aux_loss_coef * (float)E / (float)NKg;
    float fz = weight / (float)N * 2.0f * c->z_loss_coef;
    for (size_t t = 0; t < N; t++) {
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
    mpt_matmul_backward(dx, split ? NULL : b->g[0], NULL, dlog, x, b->w[0], N, (int)D, (int)E);
    return MPT_OK;
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
    for (size_t j = 0; j < El; j++) { /* dW = X^T dY, db = sum dY, as the unsplit backward */
        size_t o = (size_t)off[j], n = (size_t)off[j + 1] - o;
        if (!n) continue;
        float *const *g = b->g + 1 + 4 * j;
        mpt_matmul_backward(NULL, g[2], g[3], dyr + o * D, hg + o * F, NULL, n, (int)F, (int)D);
        mpt_matmul_backward(NULL, g[0], g[1], dhs + o * F, xr + o * D, NULL, n, (int)D, (int)F);
    }
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
    memset(dx, 0, N * (size_t)m->cfg.d_model * sizeof *dx);
    mpt_status st = m->split_w ? MPT_OK : moe_tp_grads_(m, l, 0, err); /* split: W writes them */
    if (!st)
        st = mpt_moe_backward(&b, dx, dy, x, N, moe_act_(m, l), m->work[MPT_WORK_MOE],
                              m->moe_weight, m->split_w, err);
    return st || m->split_w ? st : moe_tp_grads_(m, l, 1, err);
}

mpt_status mpt_gpt_moe_backward_weights(mpt_gpt *m, int l, const float *x, size_t N,
                                        mpt_error *err) {
    mpt_moe_block b = moe_block_(m, l, 1);
    mpt_status st = moe_tp_grads_(m, l, 0, err);
    if (!st) st = mpt_moe_backward_weights(&b, x, N, moe_act_(m, l), err);
    return st ? st : moe_tp_grads_(m, l, 1, err);
}
