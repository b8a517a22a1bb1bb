/* schedule.c — the pipeline schedule generator (see schedule.h): request checks, the compute
 * order of each kind, the placement of communication around it, action names, message tags and
 * the theoretical bubbles. Pure: no MPI, no globals. The simulator is in schedule_sim.c. */
#include "parallel/schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest p*v*m accepted: keeps every index and tag well inside int. */
#define MPT_PP_MAX_WORK (1 << 20)

static const char *const kind_names_[MPT_PP_KINDS] = {"naive", "gpipe", "1f1b", "interleaved",
                                                      "zb-h1", "zb-v", "2bw"};

const char *mpt_pp_kind_name(mpt_pp_kind k) {
    return (unsigned)k < MPT_PP_KINDS ? kind_names_[k] : "?";
}

mpt_status mpt_pp_kind_parse(const char *s, mpt_pp_kind *k, mpt_error *err) {
    for (int i = 0; i < MPT_PP_KINDS; i++)
        if (s && strcmp(s, kind_names_[i]) == 0) {
            *k = (mpt_pp_kind)i;
            return MPT_OK;
        }
    return mpt_fail(err, MPT_ERR_INPUT,
                    "--schedule %s: unknown pipeline schedule; use naive, gpipe, 1f1b, "
                    "interleaved, zb-h1, zb-v or 2bw", s ? s : "(none)");
}

int mpt_pp_op_is_compute(int op) { return op == MPT_PP_F || op == MPT_PP_B || op == MPT_PP_W; }

int mpt_pp_stage(int p, int rank, int chunk) { return chunk * p + rank; }

int mpt_pp_stage_k(mpt_pp_kind kind, int p, int rank, int chunk) {
    if (kind == MPT_PP_ZB_V) return chunk ? 2 * p - 1 - rank : rank;
    return mpt_pp_stage(p, rank, chunk);
}

void mpt_pp_stage_place(mpt_pp_kind kind, int p, int s, int *rank, int *chunk) {
    if (kind == MPT_PP_ZB_V) {
        *chunk = s >= p;
        *rank = s < p ? s : 2 * p - 1 - s;
        return;
    }
    *rank = s % p;
    *chunk = s / p;
}

int mpt_pp_split(mpt_pp_kind kind) { return kind == MPT_PP_ZB_H1 || kind == MPT_PP_ZB_V; }

mpt_status mpt_pp_check(mpt_pp_kind kind, int p, int m, int v, mpt_error *err) {
    if ((unsigned)kind >= MPT_PP_KINDS)
        return mpt_fail(err, MPT_ERR_INPUT, "unknown pipeline schedule %d; use naive, gpipe, "
                        "1f1b, interleaved, zb-h1, zb-v or 2bw", (int)kind);
    const char *name = kind_names_[kind];
    if (p < 1) return mpt_fail(err, MPT_ERR_INPUT, "--pp %d: need at least 1 pipeline stage", p);
    if (m < 1)
        return mpt_fail(err, MPT_ERR_INPUT, "--microbatches %d: need at least 1 micro-batch", m);
    if (v < 1)
        return mpt_fail(err, MPT_ERR_INPUT, "--virtual-stages %d: need at least 1 (1 = one "
                        "model chunk per rank)", v);
    if (kind == MPT_PP_ZB_V && (v != 2 || p < 2))
        return mpt_fail(err, MPT_ERR_INPUT, "--schedule zb-v runs two chunks per rank in a V "
                        "over --pp >= 2 ranks: use --virtual-stages 2 (or leave it out) and "
                        "--pp 2 or more (got --pp %d, --virtual-stages %d)", p, v);
    if (kind != MPT_PP_INTERLEAVED && kind != MPT_PP_ZB_V && v != 1)
        return mpt_fail(err, MPT_ERR_INPUT, "--virtual-stages %d needs --schedule interleaved; "
                        "the %s schedule runs one model chunk per rank (drop --virtual-stages)",
                        v, name);
    if ((double)p * (double)v * (double)m > (double)MPT_PP_MAX_WORK)
        return mpt_fail(err, MPT_ERR_INPUT, "--pp %d x --virtual-stages %d x --microbatches %d "
                        "is over %d actions per step; use fewer micro-batches", p, v, m,
                        MPT_PP_MAX_WORK);
    if (kind == MPT_PP_INTERLEAVED) {
        if (p < 2)
            return mpt_fail(err, MPT_ERR_INPUT, "--schedule interleaved needs --pp >= 2 (with one "
                            "stage there is nothing to interleave); use --schedule 1f1b");
        if (v < 2)
            return mpt_fail(err, MPT_ERR_INPUT, "--schedule interleaved needs --virtual-stages "
                            ">= 2 (with 1 it is 1f1b); e.g. --virtual-stages 2");
        if (m % p != 0)
            return mpt_fail(err, MPT_ERR_INPUT, "--schedule interleaved needs --microbatches a "
                            "multiple of --pp %d (micro-batches go through each chunk in groups "
                            "of p); %d is not: try --microbatches %d", p, m, (m / p + 1) * p);
    }
    return MPT_OK;
}

/* ---- compute order of each kind ------------------------------------------------------------ */

/* A growable list of actions. */
typedef struct alist_ {
    mpt_pp_action *a;
    size_t n, cap;
} alist_;

static int push_(alist_ *l, int op, int mb, int chunk, int peer, int peer_chunk) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64, bytes;
        if (!mpt_size_mul(cap, sizeof *l->a, &bytes)) return 0;
        mpt_pp_action *a = realloc(l->a, bytes);
        if (!a) return 0;
        l->a = a;
        l->cap = cap;
    }
    l->a[l->n++] = (mpt_pp_action){.op = (uint8_t)op, .mb = mb, .chunk = chunk, .peer = peer,
                                   .peer_chunk = peer_chunk};
    return 1;
}

static int compute_(alist_ *l, int op, int mb, int chunk) { return push_(l, op, mb, chunk, -1, -1); }

/* naive: F(i) B(i) for each micro-batch in turn; the data dependencies make each micro-batch
 * cross the whole pipeline and come back before the next starts. */
static int order_naive_(alist_ *l, int m) {
    for (int i = 0; i < m; i++)
        if (!compute_(l, MPT_PP_F, i, 0) || !compute_(l, MPT_PP_B, i, 0)) return 0;
    return 1;
}

/* gpipe: every forward, then every backward, both in micro-batch order. */
static int order_gpipe_(alist_ *l, int m) {
    for (int i = 0; i < m; i++)
        if (!compute_(l, MPT_PP_F, i, 0)) return 0;
    for (int i = 0; i < m; i++)
        if (!compute_(l, MPT_PP_B, i, 0)) return 0;
    return 1;
}

/* 1f1b and zb-h1, as Megatron's three loops over a precomputed count: warm-up forwards, the
 * steady state of one forward and one backward, cool-down backwards. At most p - rank
 * micro-batches are forwarded and not yet backwarded at any time.
 * zb-h1 (Qi et al. 2023) splits each backward into B then W and lets rank r's W run r
 * micro-batches behind its B: the B's, which the previous stage waits for, go first, and the
 * postponed W's fill the cool-down, where 1f1b leaves the later stages idle. Rank r then holds
 * (p - r) + r = p stashes at most, the peak of 1f1b's rank 0. */
static int order_1f1b_(alist_ *l, int p, int m, int rank, int split) {
    int warmup = p - rank - 1 < m ? p - rank - 1 : m;
    int remaining = m - warmup;
    int lag = split ? rank : 0, w = 0; /* zb-h1: next W to run; W(j) waits for B(j + lag) */
    for (int i = 0; i < warmup; i++)
        if (!compute_(l, MPT_PP_F, i, 0)) return 0;
    for (int i = 0; i < remaining; i++) {
        if (!compute_(l, MPT_PP_F, warmup + i, 0) || !compute_(l, MPT_PP_B, i, 0)) return 0;
        if (split && i - w >= lag && !compute_(l, MPT_PP_W, w++, 0)) return 0;
    }
    for (int i = remaining; i < m; i++) {
        if (!compute_(l, MPT_PP_B, i, 0)) return 0;
        if (split && i - w >= lag && !compute_(l, MPT_PP_W, w++, 0)) return 0;
    }
    while (split && w < m)
        if (!compute_(l, MPT_PP_W, w++, 0)) return 0;
    return 1;
}

/* The micro-batch and chunk of a rank's k-th forward (bwd = 0) or backward (bwd = 1) in the
 * interleaved schedule. */
static void interleaved_at_(int k, int p, int v, int bwd, int *mb, int *chunk) {
    *mb = (k / (p * v)) * p + k % p;
    *chunk = bwd ? v - 1 - (k / p) % v : (k / p) % v;
}

/* interleaved (Megatron-LM forward_backward_pipelining_with_interleaving, Narayanan et al.
 * 2021): the k-th forward of a rank (k = 0..v*m-1) is micro-batch (k / (p*v))*p + k % p of
 * chunk (k / p) % v, so groups of p micro-batches go through chunk 0, then chunk 1, ...; the
 * k-th backward is the same micro-batch of chunk v-1 - (k / p) % v. Warm-up forwards:
 * (p - rank - 1)*2 + (v - 1)*p (at most v*m; all of them when m == p, as Megatron), then one
 * forward and one backward, then the remaining backwards. */
static int order_interleaved_(alist_ *l, int p, int m, int v, int rank) {
    int total = m * v, mb, c;
    int warmup = (p - rank - 1) * 2 + (v - 1) * p;
    if (m == p || warmup > total) warmup = total;
    int remaining = total - warmup;
    for (int k = 0; k < warmup; k++) {
        interleaved_at_(k, p, v, 0, &mb, &c);
        if (!compute_(l, MPT_PP_F, mb, c)) return 0;
    }
    for (int i = 0; i < remaining; i++) {
        interleaved_at_(warmup + i, p, v, 0, &mb, &c);
        if (!compute_(l, MPT_PP_F, mb, c)) return 0;
        interleaved_at_(i, p, v, 1, &mb, &c);
        if (!compute_(l, MPT_PP_B, mb, c)) return 0;
    }
    for (int i = remaining; i < total; i++) {
        interleaved_at_(i, p, v, 1, &mb, &c);
        if (!compute_(l, MPT_PP_B, mb, c)) return 0;
    }
    return 1;
}

/* zb-v: every rank's compute order at once, from a greedy list scheduler on unit costs
 * (F = B = W = 1, free transfers). At each tick a free rank runs, in this order of preference,
 * a ready B (the later stage first, then the older micro-batch), a ready F (chunk 1 always,
 * chunk 0 while fewer than p micro-batches are between its F and its W there), or its oldest
 * pending W. Each rank's list is its actions in start order; the lists follow the dependencies
 * (each action starts after what it needs has ended), so they cannot deadlock. The list of
 * `rank` goes to l. Returns 0 when out of memory. */
static int order_zbv_(alist_ *l, int p, int m, int rank) {
    int S = 2 * p;
    size_t n = (size_t)m * (size_t)S;
    int *fend = malloc(n * sizeof *fend), *bend = malloc(n * sizeof *bend);
    char *wdone = calloc(n, 1);
    int *busy = calloc((size_t)p, sizeof *busy), *open0 = calloc((size_t)p, sizeof *open0);
    int *nextf = calloc((size_t)S, sizeof *nextf), *nextb = calloc((size_t)S, sizeof *nextb);
    int ok = fend && bend && wdone && busy && open0 && nextf && nextb;
    for (size_t i = 0; ok && i < n; i++) fend[i] = bend[i] = -1;
    long left = 3L * (long)n;
    for (int t = 0; ok && left > 0; t++) {
        for (int r = 0; r < p && ok; r++) {
            if (busy[r] > t) continue;
            int st[2] = {r, 2 * p - 1 - r}; /* the stages of chunk 0 and chunk 1 */
            int op = -1, ss = -1, mb = -1;
            for (int k = 1; k >= 0 && op < 0; k--) { /* B: the later stage first */
                int s = st[k], i = nextb[s];
                if (i >= m || fend[(size_t)i * S + s] < 0 || fend[(size_t)i * S + s] > t) continue;
                if (s < S - 1 && (bend[(size_t)i * S + s + 1] < 0 || bend[(size_t)i * S + s + 1] > t))
                    continue;
                op = MPT_PP_B, ss = s, mb = i;
            }
            for (int k = 1; k >= 0 && op < 0; k--) { /* F */
                int s = st[k], i = nextf[s];
                if (i >= m || (k == 0 && open0[r] >= p)) continue;
                if (s > 0 && (fend[(size_t)i * S + s - 1] < 0 || fend[(size_t)i * S + s - 1] > t))
                    continue;
                op = MPT_PP_F, ss = s, mb = i;
            }
            for (int i = 0; i < m && op < 0; i++) /* the oldest pending W: chunk 1 first */
                for (int k = 1; k >= 0 && op < 0; k--) {
                    size_t j = (size_t)i * S + st[k];
                    if (!wdone[j] && bend[j] >= 0 && bend[j] <= t) op = MPT_PP_W, ss = st[k], mb = i;
                }
            if (op < 0) continue;
            size_t j = (size_t)mb * S + ss;
            if (op == MPT_PP_F) {
                fend[j] = t + 1;
                nextf[ss]++;
                if (ss == r) open0[r]++;
            } else if (op == MPT_PP_B) {
                bend[j] = t + 1;
                nextb[ss]++;
            } else {
                wdone[j] = 1;
                if (ss == r) open0[r]--;
            }
            busy[r] = t + 1;
            left--;
            if (r == rank) ok = compute_(l, op, mb, ss == r ? 0 : 1);
        }
        if (t > 8 * (long)n + 16) ok = 0; /* cannot happen: every tick some rank can progress */
    }
    free(fend);
    free(bend);
    free(wdone);
    free(busy);
    free(open0);
    free(nextf);
    free(nextb);
    return ok;
}

/* ---- communication placement --------------------------------------------------------------- */

/* The receive that compute action a needs (0 when none): its op, peer rank and peer chunk. */
static int recv_of_(mpt_pp_kind kind, const mpt_pp_action *a, int p, int v, int rank, int *peer,
                    int *peer_chunk) {
    int s = mpt_pp_stage_k(kind, p, rank, a->chunk), last = p * v - 1, from;
    if (a->op == MPT_PP_F && s > 0) from = s - 1;
    else if (a->op == MPT_PP_B && s < last) from = s + 1;
    else return 0;
    mpt_pp_stage_place(kind, p, from, peer, peer_chunk);
    return a->op == MPT_PP_F ? MPT_PP_RECV_ACT : MPT_PP_RECV_GRAD;
}

/* The send that follows compute action a (0 when none). */
static int send_of_(mpt_pp_kind kind, const mpt_pp_action *a, int p, int v, int rank, int *peer,
                    int *peer_chunk) {
    int s = mpt_pp_stage_k(kind, p, rank, a->chunk), last = p * v - 1, to;
    if (a->op == MPT_PP_F && s < last) to = s + 1;
    else if (a->op == MPT_PP_B && s > 0) to = s - 1;
    else return 0;
    mpt_pp_stage_place(kind, p, to, peer, peer_chunk);
    return a->op == MPT_PP_F ? MPT_PP_SEND_ACT : MPT_PP_SEND_GRAD;
}

/* Posts the receive of compute action a into out, if it has one. */
static int place_recv_(mpt_pp_kind kind, alist_ *out, const mpt_pp_action *a, int p, int v,
                       int rank) {
    int peer, pc, op = recv_of_(kind, a, p, v, rank, &peer, &pc);
    return !op || push_(out, op, a->mb, a->chunk, peer, pc);
}

/* Interleaves the communication with the compute order c[0..n): the receive for compute k+1
 * is posted just before compute k (so the transfer overlaps compute k and only one extra input
 * buffer is live), the send right after the compute that produced it. When compute k is a W,
 * the receive follows it instead: W closes its micro-batch's activation set, which the
 * receive's set then reuses (the split backward's sets live until W: posted before, the
 * receive would hold one more). */
static int place_comm_(mpt_pp_kind kind, alist_ *out, const alist_ *c, int p, int v, int rank) {
    if (c->n && !place_recv_(kind, out, &c->a[0], p, v, rank)) return 0;
    for (size_t k = 0; k < c->n; k++) {
        const mpt_pp_action *a = &c->a[k];
        int after = a->op == MPT_PP_W;
        if (k + 1 < c->n && !after && !place_recv_(kind, out, &c->a[k + 1], p, v, rank))
            return 0;
        if (!push_(out, a->op, a->mb, a->chunk, -1, -1)) return 0;
        if (k + 1 < c->n && after && !place_recv_(kind, out, &c->a[k + 1], p, v, rank))
            return 0;
        int peer, pc, op = send_of_(kind, a, p, v, rank, &peer, &pc);
        if (op && !push_(out, op, a->mb, a->chunk, peer, pc)) return 0;
    }
    return 1;
}

mpt_status mpt_pp_schedule(mpt_pp_kind kind, int p, int m, int v, int rank, mpt_pp_action **out,
                           size_t *n, mpt_error *err) {
    *out = NULL;
    *n = 0;
    mpt_status st = mpt_pp_check(kind, p, m, v, err);
    if (st) return st;
    if (rank < 0 || rank >= p)
        return mpt_fail(err, MPT_ERR_INPUT, "pipeline rank %d is outside 0..%d", rank, p - 1);
    alist_ c = {0}, all = {0};
    int ok = 0;
    switch (kind) {
    case MPT_PP_NAIVE: ok = order_naive_(&c, m); break;
    case MPT_PP_GPIPE: ok = order_gpipe_(&c, m); break;
    case MPT_PP_1F1B:
    case MPT_PP_2BW: ok = order_1f1b_(&c, p, m, rank, 0); break;
    case MPT_PP_ZB_H1: ok = order_1f1b_(&c, p, m, rank, 1); break;
    case MPT_PP_INTERLEAVED: ok = order_interleaved_(&c, p, m, v, rank); break;
    case MPT_PP_ZB_V: ok = order_zbv_(&c, p, m, rank); break;
    case MPT_PP_KINDS: break;
    }
    ok = ok && place_comm_(kind, &all, &c, p, v, rank);
    free(c.a);
    if (!ok) {
        free(all.a);
        return mpt_fail(err, MPT_ERR_RUN, "out of memory for the %s schedule of rank %d",
                        kind_names_[kind], rank);
    }
    *out = all.a;
    *n = all.n;
    return MPT_OK;
}

/* ---- names, tags, costs, theory ------------------------------------------------------------ */

const char *mpt_pp_action_str(const mpt_pp_action *a, int v, char *buf, size_t cap) {
    static const char *const names[MPT_PP_OPS] = {"F",        "B",        "W",        "recv-act",
                                                  "send-act", "recv-grad", "send-grad"};
    if (!cap) return buf;
    if (a->op >= MPT_PP_OPS) {
        snprintf(buf, cap, "?");
        return buf;
    }
    char chunk[16] = "";
    if (v > 1) snprintf(chunk, sizeof chunk, ".%d", a->chunk);
    if (mpt_pp_op_is_compute(a->op))
        snprintf(buf, cap, "%s%d%s", names[a->op], a->mb, chunk);
    else
        snprintf(buf, cap, "%s%d%s%c%d", names[a->op], a->mb, chunk,
                 a->op == MPT_PP_RECV_ACT || a->op == MPT_PP_RECV_GRAD ? '<' : '>', a->peer);
    return buf;
}

int mpt_pp_action_tag(const mpt_pp_action *a, int v) {
    int dst_chunk, grad;
    switch (a->op) {
    case MPT_PP_RECV_ACT: dst_chunk = a->chunk; grad = 0; break;
    case MPT_PP_RECV_GRAD: dst_chunk = a->chunk; grad = 1; break;
    case MPT_PP_SEND_ACT: dst_chunk = a->peer_chunk; grad = 0; break;
    case MPT_PP_SEND_GRAD: dst_chunk = a->peer_chunk; grad = 1; break;
    default: return -1;
    }
    return (a->mb * v + dst_chunk) * 2 + grad;
}

double mpt_pp_action_cost(mpt_pp_kind kind, int v, const double cost[MPT_PP_COSTS], int op) {
    double scale = (kind == MPT_PP_INTERLEAVED || kind == MPT_PP_ZB_V) && v > 0 ? 1.0 / v : 1.0;
    switch (op) {
    case MPT_PP_F: return cost[MPT_PP_COST_F] * scale;
    case MPT_PP_B:
        return (mpt_pp_split(kind) ? cost[MPT_PP_COST_B]
                                     : cost[MPT_PP_COST_B] + cost[MPT_PP_COST_W]) * scale;
    case MPT_PP_W: return cost[MPT_PP_COST_W] * scale;
    default: return 0.0;
    }
}

double mpt_pp_bubble_theory(mpt_pp_kind kind, int p, int m, int v,
                            const double cost[MPT_PP_COSTS]) {
    if (mpt_pp_check(kind, p, m, v, NULL) != MPT_OK) return -1.0;
    double P = p, M = m, V = v;
    switch (kind) {
    case MPT_PP_NAIVE: return (P - 1) / P;
    case MPT_PP_GPIPE:
    case MPT_PP_2BW:
    case MPT_PP_1F1B: return (P - 1) / (M + P - 1);
    case MPT_PP_INTERLEAVED: return (P - 1) / (V * M + P - 1);
    case MPT_PP_ZB_H1: {
        double f = cost ? cost[MPT_PP_COST_F] : 1, b = cost ? cost[MPT_PP_COST_B] : 1;
        double w = cost ? cost[MPT_PP_COST_W] : 1;
        double span = (M + P - 1) * (f + b) + (M - P + 1 > 1 ? M - P + 1 : 1) * w;
        if (span < M * (f + b + w)) span = M * (f + b + w); /* W > F+B: a lower bound */
        return span > 0 ? 1.0 - M * (f + b + w) / span : 0.0;
    }
    case MPT_PP_ZB_V: { /* no closed form for the greedy order: its simulation, free transfers */
        double c[MPT_PP_COSTS] = {1, 1, 1, 0};
        if (cost) {
            for (int i = 0; i < MPT_PP_COSTS; i++) c[i] = cost[i];
            c[MPT_PP_COST_COMM] = 0;
        }
        mpt_pp_timeline t;
        memset(&t, 0, sizeof t);
        double b = mpt_pp_simulate(kind, p, m, v, c, &t, NULL) == MPT_OK ? t.bubble : -1.0;
        mpt_pp_timeline_free(&t);
        return b;
    }
    case MPT_PP_KINDS: break;
    }
    return -1.0;
}
