/* cost.c — FLOPs, bytes and seconds of one stage's operations and of collectives (see cost.h). */
#include "plan/cost.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include "model/gpt.h"
#include "parallel/mesh.h"
#include "parallel/tp.h"
#include "plan/cost_moe.h"

double mpt_cost_elem_bytes(int precision) { return precision == MPT_PREC_BF16 ? 2.0 : 4.0; }

static double peak_(const mpt_cluster *c, int precision) {
    return precision == MPT_PREC_BF16 ? c->peak_bf16 : c->peak_fp32;
}

static double link_bw_(const mpt_cluster *c, int inter) {
    return inter ? c->inter_bw * c->inter_eff : c->intra_bw * c->intra_eff;
}

double mpt_cost_collective(const mpt_cluster *c, int op, int n, double bytes, int inter) {
    if (n <= 1 || bytes <= 0) return 0.0;
    double bw = link_bw_(c, inter), a = inter ? c->inter_lat : c->intra_lat;
    double frac = (double)(n - 1) / n;
    if (op == MPT_COLL_ALLREDUCE) {
        double ring = 2.0 * (n - 1) * a + 2.0 * frac * bytes / bw;
        double tree = 2.0 * ceil(log2((double)n)) * a + 2.0 * bytes / bw;
        return ring < tree ? ring : tree;
    }
    return (n - 1) * a + frac * bytes / bw;
}

double mpt_cost_p2p(const mpt_cluster *c, double bytes, int inter) {
    if (bytes <= 0) return 0.0;
    return (inter ? c->inter_lat : c->intra_lat) + bytes / link_bw_(c, inter);
}

int mpt_cost_group_inter(const mpt_cluster *c, const mpt_plan_layout *l, int dim) {
    long stride = 1, size = 1;
    if (dim == MPT_DIM_TP) size = l->tp;
    else if (dim == MPT_DIM_CP) stride = l->tp, size = l->cp;
    else if (dim == MPT_DIM_DP) stride = (long)l->tp * l->cp, size = l->dp;
    else if (dim == MPT_DIM_PP) stride = (long)l->tp * l->cp * l->dp, size = l->pp;
    return size > 1 && stride * size > c->per_node;
}

/* Accumulates seconds and FLOPs of one phase (forward, B or W). */
typedef struct acc_ {
    const mpt_cluster *c;
    double peak, es;
    double t, flops;
    double meets; /* blocking tensor-parallel meetings (a rank waits for its group) */
} acc_;

/* A GEMM (M x K) times (K x N): roofline plus launch. */
static void gemm_(acc_ *a, double M, double N, double K, double batch) {
    double flops = 2.0 * M * N * K * batch;
    double bytes = a->es * (M * K + K * N + M * N) * batch;
    double tc = flops / (a->peak * mpt_cluster_gemm_eff(a->c, M, N, K)), tm = bytes / (a->c->mem_bw * a->c->mem_eff);
    a->t += (tc > tm ? tc : tm) + a->c->launch;
    a->flops += flops;
}

/* An element-wise / normalisation kernel moving `elems` elements in and out in total. */
static void mem_(acc_ *a, double elems) {
    a->t += a->es * elems / (a->c->mem_bw * a->c->mem_eff) + a->c->launch;
}

/* A kernel with a measured cost per element (cpu-here: cluster.h's ew_*), else the roofline's
 * `elems` moved. */
static void ew_(acc_ *a, double per_elem, double n, double elems) {
    if (per_elem > 0) a->t += per_elem * n + a->c->launch;
    else mem_(a, elems);
}

/* The Tq x Tk products of attention (4 B H Tq Tk hs FLOPs forward, 8 backward, whole; Tq = Tk
 * = T without cp, Tq = T/cp queries against all T keys with it): the fused kernel's measured
 * rate (cpu-here), else the batched GEMMs and the softmax's traffic. Returns the seconds. */
static double attn_fwd_(acc_ *a, double Tq, double Tk, double hd, double BH) {
    double t0 = a->t;
    if (a->c->attn_f > 0) {
        double flops = 4.0 * BH * Tq * Tk * hd;
        a->t += flops / a->c->attn_f + a->c->launch;
        a->flops += flops;
        return a->t - t0;
    }
    gemm_(a, Tq, Tk, hd, BH);  /* scores */
    mem_(a, 2 * BH * Tq * Tk); /* causal softmax */
    gemm_(a, Tq, hd, Tk, BH);  /* probabilities x values */
    return a->t - t0;
}
static double attn_bwd_(acc_ *a, double Tq, double Tk, double hd, double BH) {
    double t0 = a->t;
    if (a->c->attn_b > 0) {
        double flops = 8.0 * BH * Tq * Tk * hd;
        a->t += flops / a->c->attn_b + a->c->launch;
        a->flops += flops;
        return a->t - t0;
    }
    gemm_(a, Tq, Tk, hd, BH);  /* dP = dO V^T */
    gemm_(a, Tq, hd, Tk, BH);  /* dV = P^T dO */
    mem_(a, 3 * BH * Tq * Tk); /* softmax backward */
    gemm_(a, Tq, hd, Tk, BH);  /* dQ */
    gemm_(a, Tq, hd, Tk, BH);  /* dK */
    return a->t - t0;
}

typedef struct shape_ {
    const mpt_cluster *c;
    const mpt_plan_layout *l;
    double N, Ns, T, Tq, Bm, D, Dl, Hl, hd, Fl, Vl, es;
    int tp, inter;
    int cp, cp_inter;       /* context parallelism: the ring's size and links */
    double ring_time;       /* seconds of ring messages not hidden behind attention */
    double tp_bytes, tp_time;
    int moe;                /* an MoE block: its MLP is cost_moe.c's, not the dense one */
} shape_;

/* A tensor-parallel collective: the MPI library's (cpu-here: its measured bandwidth per kind,
 * cluster.h's mpi_*_bw, when given), else the link's. */
static double lib_collective_(const mpt_cluster *c, int op, int n, double bytes, int inter) {
    double bw = op == MPT_COLL_ALLREDUCE        ? c->mpi_allreduce_bw
                : op == MPT_COLL_REDUCE_SCATTER ? c->mpi_reduce_scatter_bw
                                                : c->mpi_allgather_bw;
    if (inter || !(bw > 0)) return mpt_cost_collective(c, op, n, bytes, inter);
    mpt_cluster m = *c;
    m.intra_bw = bw, m.intra_eff = 1.0;
    return mpt_cost_collective(&m, op, n, bytes, inter);
}

static void coll_(shape_ *s, acc_ *a, int op, double bytes) {
    if (s->tp < 2) return;
    double t = lib_collective_(s->c, op, s->tp, bytes, s->inter);
    a->t += t;
    a->meets += 1;
    s->tp_time += t;
    /* what one rank sends in a ring: (tp-1)/tp of the buffer, twice for an all-reduce */
    s->tp_bytes += bytes * (op == MPT_COLL_ALLREDUCE ? 2.0 : 1.0) * (s->tp - 1) / s->tp;
}

/* The output all-reduce of a row-parallel layer (or reduce-scatter with sp) and, with sp, the
 * all-gather before a column-parallel one: the MPI library's collectives (without sp; under sp
 * the embedding's and the head backward's blocking ones). */
static void row_out_(shape_ *s, acc_ *a) {
    coll_(s, a, s->l->sp ? MPT_COLL_REDUCE_SCATTER : MPT_COLL_ALLREDUCE, s->es * s->N * s->D);
}
static void col_in_(shape_ *s, acc_ *a) {
    if (s->l->sp) coll_(s, a, MPT_COLL_ALLGATHER, s->es * s->N * s->D);
}

/* sp's overlapped path (parallel/tp_overlap_sp.c, model/gpt_sp.h: every block's linear layers
 * under sp with tp <= MPT_TP_SP_MAX_RANKS), priced by what it does, not as MPI collectives:
 *  - a gather of this rank's (Ns, C) rows: the own block copied into the gather workspace
 *    (read and write, the copy bandwidth), then tp-1 blocks received by direct messages, each
 *    copied by the receiver in its wait (vader's single copy: one Isend/Irecv pair, intra_lat +
 *    bytes / intra_bw, the ping-pong's figures);
 *  - a reduce-scatter: tp-1 partial blocks received the same way, then summed into the own
 *    block (tp-1 passes of dst = a + b over Ns x C: the residual add's measured rate);
 *  - the layer's GEMM of N rows computed as tp GEMMs of Ns rows (the efficiency curve at the
 *    block's shape; the weight gradients stay one GEMM over all N rows).
 * What these do not price: a rank waiting in a receive for its slower partner (the pair is
 * taken as equally fast, as everywhere in the replay). */
static int sp_ov_(const shape_ *s) {
    return s->l->sp && s->tp > 1 && s->tp <= MPT_TP_SP_MAX_RANKS;
}
static void sp_recv_(shape_ *s, acc_ *a, double C) {
    if (s->tp > 1) a->meets += 1; /* the receives from the group are waited for */
    for (int k = 1; k < s->tp; k++) {
        double t = mpt_cost_p2p(s->c, s->es * s->Ns * C, s->inter);
        a->t += t;
        s->tp_time += t;
        s->tp_bytes += s->es * s->Ns * C;
    }
}
static void sp_gather_(shape_ *s, acc_ *a, double C) {
    if (!sp_ov_(s)) {
        col_in_(s, a);
        return;
    }
    mem_(a, 2 * s->Ns * C); /* own block into the workspace */
    sp_recv_(s, a, C);
}
static void sp_scatter_(shape_ *s, acc_ *a, double C) {
    if (!sp_ov_(s)) {
        row_out_(s, a);
        return;
    }
    sp_recv_(s, a, C);
    for (int k = 1; k < s->tp; k++) ew_(a, s->c->ew_add, s->Ns * C, 3 * s->Ns * C);
}
/* A GEMM of the N rows (M = N) beside sp's messages: tp blocks of Ns rows; else one GEMM. */
static void gemm_rows_(shape_ *s, acc_ *a, double N, double K) {
    if (!sp_ov_(s)) {
        gemm_(a, s->N, N, K, 1);
        return;
    }
    for (int k = 0; k < s->tp; k++) gemm_(a, s->Ns, N, K, 1);
}

/* The head's logits (N x Vl) and the cross-entropy with its gradient. tp = 1: one GEMM and the
 * fused kernel (ew_xent). tp > 1: parallel/tp_vocab.c's vocabulary-parallel loss, priced by
 * what it does: the N rows in k = mpt_tp_overlap_chunks(N, Vl) chunks of n rows; per chunk the
 * head GEMM's rows (without sp; under sp the logits come whole from sp's row blocks first) and
 * the slice's statistics (row max and sum of exponentials: two of the fused kernel's three
 * passes over the logits, 2/3 of ew_xent per element), then an all-gather over tp of the
 * chunk's [max | sum-exp | target] (3n floats per rank, tp x 3n gathered: the MPI library's
 * all-gather) that travels while the next chunks compute; after the last chunk, chunk by
 * chunk: wait for its gather, merge (the tp x 3n statistics read), the gradient pass (the
 * third pass, 1/3 of ew_xent). The gathers go one after the other on the link; what they add
 * beyond the compute is replayed below, as the runtime's loop orders it. */
static void vocab_ce_(shape_ *s, acc_ *a) {
    const mpt_cluster *c = s->c;
    if (s->tp < 2) {
        gemm_rows_(s, a, s->Vl, s->D);
        ew_(a, c->ew_xent, s->N * s->Vl, 3 * s->N * s->Vl);
        return;
    }
    if (s->l->sp) gemm_rows_(s, a, s->Vl, s->D); /* sp: the logits by sp's row blocks, first */
    double k = (double)mpt_tp_overlap_chunks((size_t)s->N, s->Vl > INT_MAX ? INT_MAX : (int)s->Vl);
    double n = s->N / k;
    acc_ h = {c, a->peak, a->es, 0, 0, 0}, post = h; /* one chunk's compute before / after */
    if (!s->l->sp) gemm_(&h, n, s->Vl, s->D, 1);
    ew_(&h, c->ew_xent > 0 ? c->ew_xent * 2.0 / 3.0 : 0, n * s->Vl, 2 * n * s->Vl);
    mem_(&post, 3.0 * s->tp * n + 3 * n); /* the merge */
    ew_(&post, c->ew_xent > 0 ? c->ew_xent / 3.0 : 0, n * s->Vl, 2 * n * s->Vl);
    double g = lib_collective_(c, MPT_COLL_ALLGATHER, s->tp, 4.0 * 3 * n * s->tp, s->inter);
    double t = 0, link = 0, end[MPT_TP_OVERLAP_MAX_CHUNKS];
    int kk = (int)k;
    for (int i = 0; i < kk; i++) { /* chunk i: compute, then its gather behind the earlier */
        t += h.t;
        link = (link > t ? link : t) + g;
        end[i] = link;
    }
    for (int i = 0; i < kk; i++) t = (t > end[i] ? t : end[i]) + post.t;
    double compute = k * (h.t + post.t);
    a->t += t;
    a->flops += k * (h.flops + post.flops);
    a->meets += 1; /* the gathers, waited for after the last chunk */
    s->tp_time += t - compute; /* the gathers' exposed seconds */
    s->tp_bytes += k * 4.0 * 3 * n * (s->tp - 1); /* what one rank sends: its block to tp-1 */
}

/* cp: K||V of the rank's T/cp rows goes cp-1 hops around the ring (backward: K||V and the
 * dK||dV accumulators, cp hops), each hop posted before the local block's compute and waited
 * after it (parallel/cp.h): what the attention's `compute` seconds do not hide is added. */
static void ring_(shape_ *s, acc_ *a, double compute, int backward) {
    if (s->cp < 2) return;
    double kv = s->es * s->Bm * s->Tq * 2 * s->Dl;
    double hops = backward ? s->cp : s->cp - 1;
    double t = hops * mpt_cost_p2p(s->c, backward ? 2 * kv : kv, s->cp_inter);
    double per_hop = compute / s->cp;
    double exposed = t - (hops * per_hop);
    if (exposed > 0) {
        a->t += exposed;
        s->ring_time += exposed;
    }
}

/* One block's forward (also its full recompute). */
static void block_forward_(shape_ *s, acc_ *a) {
    double N = s->N, Ns = s->Ns, D = s->D;
    const mpt_cluster *c = s->c;
    ew_(a, c->ew_ln_f, Ns * D, 2 * Ns * D);      /* ln_1 */
    sp_gather_(s, a, D);
    gemm_rows_(s, a, 3 * s->Dl, D);              /* c_attn */
    double ta = attn_fwd_(a, s->Tq, s->T, s->hd, s->Bm * s->Hl); /* scores, softmax, P x V */
    ring_(s, a, ta, 0);
    gemm_rows_(s, a, D, s->Dl);                  /* attn c_proj */
    sp_scatter_(s, a, D);
    ew_(a, c->ew_add, Ns * D, 3 * Ns * D);       /* residual */
    ew_(a, c->ew_ln_f, Ns * D, 2 * Ns * D);      /* ln_2 */
    if (!s->moe) {
    sp_gather_(s, a, D);
    gemm_rows_(s, a, s->Fl, D);                  /* c_fc */
    ew_(a, c->ew_gelu_f, N * s->Fl, 2 * N * s->Fl); /* gelu */
    gemm_rows_(s, a, D, s->Fl);                  /* mlp c_proj */
    sp_scatter_(s, a, D);
    }
    ew_(a, c->ew_add, Ns * D, 3 * Ns * D);       /* residual */
}

/* One block's backward: input-gradient part into b, weight-gradient part into w. */
static void block_backward_(shape_ *s, acc_ *b, acc_ *w) {
    double N = s->N, Ns = s->Ns, D = s->D;
    const mpt_cluster *c = s->c;
    /* mlp */
    ew_(b, c->ew_add, Ns * D, 3 * Ns * D);       /* residual gradient */
    if (!s->moe) {
    sp_gather_(s, b, D);                         /* sp: gather the gradient rows */
    gemm_rows_(s, b, s->Fl, D);                  /* d(gelu out) = dy W^T */
    gemm_(w, s->Fl, D, N, 1);                    /* dW_proj */
    ew_(b, c->ew_gelu_b, N * s->Fl, 3 * N * s->Fl); /* gelu backward */
    sp_gather_(s, b, D);                         /* sp: ln_2's saved rows, all of them */
    gemm_rows_(s, b, D, s->Fl);                  /* d(ln_2 out) */
    gemm_(w, D, s->Fl, N, 1);                    /* dW_fc */
    sp_scatter_(s, b, D);                        /* column-parallel input gradient */
    }
    ew_(b, c->ew_ln_b, Ns * D, 5 * Ns * D);      /* ln_2 backward */
    /* attention */
    sp_gather_(s, b, D);
    gemm_rows_(s, b, s->Dl, D);                  /* d(att out) */
    gemm_(w, s->Dl, D, N, 1);                    /* dW attn proj */
    double ta = attn_bwd_(b, s->Tq, s->T, s->hd, s->Bm * s->Hl); /* dP, dV, dQ, dK */
    ring_(s, b, ta, 1);
    sp_gather_(s, b, D);                         /* sp: ln_1's saved rows, all of them */
    gemm_rows_(s, b, D, 3 * s->Dl);              /* d(ln_1 out) */
    gemm_(w, D, 3 * s->Dl, N, 1);                /* dW c_attn */
    sp_scatter_(s, b, D);
    ew_(b, c->ew_ln_b, Ns * D, 5 * Ns * D);      /* ln_1 backward */
    if (sp_ov_(s)) /* the block's LayerNorm weight gradients (ln_1, ln_2: 4 D) summed over tp */
        coll_(s, b, MPT_COLL_ALLREDUCE, 4.0 * 4 * D);
}

void mpt_cost_stage(const mpt_cluster *c, const mpt_config *cfg, const mpt_plan_layout *l, int T,
                    int Bm, int precision, int first_layer, int n_layers, int first, int last,
                    mpt_stage_cost *out) {
    memset(out, 0, sizeof *out);
    shape_ s = {.c = c, .l = l, .tp = l->tp, .inter = mpt_cost_group_inter(c, l, MPT_DIM_TP),
                .cp = l->cp, .cp_inter = mpt_cost_group_inter(c, l, MPT_DIM_CP)};
    s.es = mpt_cost_elem_bytes(precision);
    s.T = T;
    s.Tq = (double)T / (l->cp > 0 ? l->cp : 1);
    s.Bm = Bm;
    s.N = (double)Bm * s.Tq;
    s.Ns = l->sp ? s.N / l->tp : s.N;
    s.D = cfg->d_model;
    s.Dl = s.D / l->tp;
    s.Hl = (double)cfg->n_head / l->tp;
    s.hd = s.D / cfg->n_head;
    s.Fl = (double)cfg->ffn / l->tp;
    s.Vl = (double)cfg->padded_vocab / l->tp;
    acc_ f = {c, peak_(c, precision), s.es, 0, 0, 0}, b = f, w = f, rec = f;
    /* one block, then times n */
    block_forward_(&s, &f);
    block_backward_(&s, &b, &w);
    double tpb0 = s.tp_bytes, tpt0 = s.tp_time;
    if (l->recompute == MPT_RECOMPUTE_FULL) block_forward_(&s, &rec);
    else if (l->recompute == MPT_RECOMPUTE_SELECTIVE && !(c->attn_b > 0)) {
        /* (the fused kernel's backward recomputes the probabilities in every mode: its
         * measured rate holds them) */
        gemm_(&rec, s.Tq, s.T, s.hd, s.Bm * s.Hl);
        mem_(&rec, 2 * s.Bm * s.Hl * s.Tq * s.T);
    }
    double rec_tpb = s.tp_bytes - tpb0, rec_tpt = s.tp_time - tpt0; /* a full recompute's */
    /* MoE blocks (cost_moe.h): the attention part as above, their MLP cost_moe.c's */
    int n_moe = cfg->experts > 0 ? mpt_cost_moe_blocks(cfg, first_layer, n_layers) : 0;
    acc_ fm = {c, f.peak, s.es, 0, 0, 0}, bm = fm, wm = fm, rm = fm;
    shape_ sm = s;
    mpt_moe_cost mc = {0};
    if (n_moe > 0) {
        sm.moe = 1, sm.tp_bytes = sm.tp_time = 0;
        mpt_cost_moe_block(c, cfg, l, s.N, precision, &mc);
        block_forward_(&sm, &fm);
        block_backward_(&sm, &bm, &wm);
        fm.t += mc.f, fm.flops += mc.flops_f, bm.t += mc.b, bm.flops += mc.flops_b;
        wm.t += mc.w, wm.flops += mc.flops_w;
        if (l->recompute == MPT_RECOMPUTE_FULL) rm = fm;
        else rm = rec; /* selective: the scores again, as a dense block */
    }
    double n = n_layers - n_moe, tpb = s.tp_bytes, tpt = s.tp_time;
    f.t *= n, f.flops *= n, b.t *= n, b.flops *= n, w.t *= n, w.flops *= n;
    rec.t *= n, rec.flops *= n;
    f.meets *= n, b.meets *= n, w.meets *= n, rec.meets *= n;
    s.tp_bytes = tpb * n; /* forward, backward and a full recompute's collectives */
    s.tp_time = tpt * n;
    if (n_moe > 0) {
        int full = l->recompute == MPT_RECOMPUTE_FULL;
        f.t += n_moe * fm.t, f.flops += n_moe * fm.flops, b.t += n_moe * bm.t;
        b.flops += n_moe * bm.flops, w.t += n_moe * wm.t, w.flops += n_moe * wm.flops;
        rec.t += n_moe * rm.t, rec.flops += n_moe * rm.flops;
        f.meets += n_moe * fm.meets, b.meets += n_moe * bm.meets, w.meets += n_moe * wm.meets;
        rec.meets += n_moe * rm.meets;
        s.tp_bytes += n_moe * sm.tp_bytes * (full ? 1.5 : 1.0);
        s.tp_time += n_moe * sm.tp_time * (full ? 1.5 : 1.0);
        out->ep_bytes = n_moe * mc.ep_bytes * (full ? 1.5 : 1.0);
        out->ep_time = n_moe * (mc.ep_time_f * (full ? 2 : 1) + mc.ep_time_b);
        out->expert_params = n_moe * mc.expert_params;
        out->expert_f = n_moe * mc.expert_f;
        out->expert_b = n_moe * (mc.expert_b + (full ? mc.expert_f : 0));
        out->expert_w = n_moe * mc.expert_w;
    }
    b.t += rec.t, b.meets += rec.meets;
    double rec_flops = rec.flops;
    b.flops += rec.flops;
    /* B and W apart (zb-h1, zb-v with pp > 1: train sets split_w) under full recompute: B's
     * recomputed activations are gone when W runs, so W runs each block's forward again for
     * the inputs of its linear layers (model/gpt_pass.c, mpt_gpt_backward_weights): a second
     * recompute, in W */
    if (l->recompute == MPT_RECOMPUTE_FULL && l->pp > 1 && mpt_pp_split(l->schedule)) {
        w.t += rec.t, w.flops += rec.flops, w.meets += rec.meets;
        rec_flops += rec.flops;
        s.tp_bytes += rec_tpb * n, s.tp_time += rec_tpt * n; /* (the dense blocks') */
        out->expert_w += n_moe * mc.expert_f;
        if (n_moe > 0) { /* the MoE blocks' forward again: its tp collectives and its two
                          * all-to-alls (dispatch and combine, half of F + B's four) */
            s.tp_bytes += n_moe * sm.tp_bytes * 0.5, s.tp_time += n_moe * sm.tp_time * 0.5;
            out->ep_bytes += n_moe * mc.ep_bytes * 0.5;
            out->ep_time += n_moe * mc.ep_time_f;
        }
    }
    double params = n * (4.0 * s.D * s.Dl + 2.0 * s.D * s.Fl + 4.0 * s.D + 3.0 * s.Dl + s.Fl +
                         2.0 * s.D);
    params += n_moe * (4.0 * s.D * s.Dl + 4.0 * s.D + 3.0 * s.Dl + s.D + mc.params);
    if (first) {
        mem_(&f, 2 * s.N * s.D); /* lookup of token and position rows */
        row_out_(&s, &f);        /* summed over tp (sp: reduce-scattered), as a row layer */
        col_in_(&s, &b);         /* sp: the input gradient of every row, for the lookup's */
        mem_(&w, 2 * s.N * s.D); /* scatter into dwte, dwpe */
        params += s.Vl * s.D + (double)cfg->n_positions * s.D;
    }
    if (last) {
        ew_(&f, c->ew_ln_f, s.Ns * s.D, 2 * s.Ns * s.D); /* ln_f */
        sp_gather_(&s, &f, s.D);
        vocab_ce_(&s, &f); /* logits, the cross-entropy and its gradient */
        sp_gather_(&s, &b, s.D);      /* sp: ln_f's saved rows, all of them */
        gemm_rows_(&s, &b, s.D, s.Vl); /* d(ln_f out) */
        row_out_(&s, &b);             /* sp: the blocking reduce-scatter */
        gemm_(&w, s.Vl, s.D, s.N, 1); /* d(head) */
        ew_(&b, c->ew_ln_b, s.Ns * s.D, 5 * s.Ns * s.D); /* ln_f backward */
        params += 2.0 * s.D + (first && cfg->tied ? 0.0 : s.Vl * s.D);
    }
    out->f = f.t;
    out->b = b.t;
    out->w = w.t;
    out->flops_hw = f.flops + b.flops + w.flops;
    out->flops_model = out->flops_hw - rec_flops;
    out->tp_bytes = s.tp_bytes;
    out->tp_time = s.tp_time;
    out->meets_f = f.meets, out->meets_b = b.meets, out->meets_w = w.meets;
    out->params = params;
    out->boundary_bytes = s.es * s.Ns * s.D;
}

/* ---- one kernel priced as the stage's own, for cost_moe.c ---- */

double mpt_cost_gemm(const mpt_cluster *c, int precision, double M, double N, double K,
                     double *flops) {
    acc_ a = {c, peak_(c, precision), mpt_cost_elem_bytes(precision), 0, 0, 0};
    gemm_(&a, M, N, K, 1);
    if (flops) *flops += a.flops;
    return a.t;
}

double mpt_cost_kernel(const mpt_cluster *c, int precision, double per_elem, double n,
                       double elems) {
    acc_ a = {c, peak_(c, precision), mpt_cost_elem_bytes(precision), 0, 0, 0};
    ew_(&a, per_elem, n, elems);
    return a.t;
}
