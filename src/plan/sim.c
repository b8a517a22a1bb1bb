/* sim.c — the discrete-event replay of one training step (see sim.h). */
#include "plan/sim.h"

#include <stdlib.h>
#include <string.h>

#include "parallel/mesh.h"
#include "plan/cost_moe.h"

/* A message into stage `dst` of micro-batch mb (activations or gradient). */
typedef struct msg_ {
    double sent, posted; /* -1 until the send / receive is posted */
} msg_;

typedef struct rank_ {
    mpt_pp_action *a;
    size_t n, pc;
    double clock, busy;
    double last_b_start, last_b_end; /* the last micro-batch's backward on this rank */
    double first_start;
} rank_;

void mpt_sim_result_free(mpt_sim_result *r) {
    if (!r) return;
    free(r->ev);
    free(r->comm);
    r->ev = NULL;
    r->comm = NULL;
    r->n_ev = r->n_comm = 0;
}

static void ranks_free_(rank_ *rk, int p) {
    for (int r = 0; rk && r < p; r++) free(rk[r].a);
    free(rk);
}

/* The runtime's action list of rank r (mpt_pp_schedule), the lists of the last (kind, p, m, v)
 * kept: a search simulates the same schedule for many layouts, and generating it is the
 * search's largest cost. The caller frees *out. The planner runs on one thread. */
static mpt_status schedule_copy_(mpt_pp_kind kind, int p, int m, int v, int r,
                                 mpt_pp_action **out, size_t *n, mpt_error *err) {
    static int key[4] = {-1, -1, -1, -1};
    static mpt_pp_action **lists = NULL;
    static size_t *lens = NULL;
    static int n_lists = 0;
    if (key[0] != (int)kind || key[1] != p || key[2] != m || key[3] != v) {
        for (int i = 0; i < n_lists; i++) free(lists[i]);
        free(lists);
        free(lens);
        lists = NULL, lens = NULL, n_lists = 0;
        key[0] = -1;
        lists = calloc((size_t)p, sizeof *lists);
        lens = calloc((size_t)p, sizeof *lens);
        if (!lists || !lens) return mpt_fail(err, MPT_ERR_RUN, "out of memory");
        n_lists = p;
        for (int i = 0; i < p; i++) {
            mpt_status st = mpt_pp_schedule(kind, p, m, v, i, &lists[i], &lens[i], err);
            if (st) return st; /* (key stays invalid: the next call starts again) */
        }
        key[0] = (int)kind, key[1] = p, key[2] = m, key[3] = v;
    }
    *out = malloc(lens[r] * sizeof **out + 1);
    if (!*out) return mpt_fail(err, MPT_ERR_RUN, "out of memory");
    memcpy(*out, lists[r], lens[r] * sizeof **out);
    *n = lens[r];
    return MPT_OK;
}

/* Runs the lists. Returns MPT_OK, or MPT_ERR_RUN on a deadlock (a broken schedule). */
static mpt_status replay_(rank_ *rk, int p, int v, int m, mpt_pp_kind kind,
                          const mpt_stage_cost *sc, const double *p2p, msg_ *msg,
                          mpt_pp_event *ev, size_t *n_ev, mpt_sim_comm *cm, size_t *n_cm,
                          mpt_error *err) {
    int S = p * v;
    size_t left = 0;
    for (int r = 0; r < p; r++) left += rk[r].n;
    while (left) {
        int progress = 0;
        for (int r = 0; r < p; r++) {
            rank_ *R = &rk[r];
            while (R->pc < R->n) {
                const mpt_pp_action *a = &R->a[R->pc];
                int me = mpt_pp_stage_k(kind, p, r, a->chunk);
                if (a->op == MPT_PP_RECV_ACT || a->op == MPT_PP_RECV_GRAD) {
                    msg[((size_t)a->mb * S + me) * 2 + (a->op == MPT_PP_RECV_GRAD)].posted =
                        R->clock;
                } else if (a->op == MPT_PP_SEND_ACT || a->op == MPT_PP_SEND_GRAD) {
                    int dst = mpt_pp_stage_k(kind, p, a->peer, a->peer_chunk);
                    msg[((size_t)a->mb * S + dst) * 2 + (a->op == MPT_PP_SEND_GRAD)].sent =
                        R->clock;
                } else {
                    double ready = R->clock;
                    int grad = a->op != MPT_PP_F;
                    int has_input = a->op == MPT_PP_F ? me > 0 : a->op == MPT_PP_B && me < S - 1;
                    if (has_input) {
                        const msg_ *g = &msg[((size_t)a->mb * S + me) * 2 + grad];
                        if (g->sent < 0) break; /* its producer has not run yet */
                        double post = g->posted > g->sent ? g->posted : g->sent;
                        /* the boundary tensor of the earlier stage, same size both ways */
                        double arr = post + p2p[grad ? me : me - 1];
                        if (arr > ready) ready = arr;
                        int from = 0, from_chunk = 0; /* the producer's rank */
                        mpt_pp_stage_place(kind, p, grad ? me + 1 : me - 1, &from, &from_chunk);
                        if (cm) /* on the producer's stream */
                            cm[(*n_cm)++] = (mpt_sim_comm){from,
                                                           grad ? MPT_SIM_P2P_GRAD
                                                                : MPT_SIM_P2P_ACT,
                                                           post, arr};
                    }
                    const mpt_stage_cost *c = &sc[me];
                    double d = a->op == MPT_PP_F ? c->f
                               : a->op == MPT_PP_W ? c->w
                               : mpt_pp_split(kind) ? c->b
                                                    : c->b + c->w;
                    if (a->op == MPT_PP_F && R->busy == 0) R->first_start = ready;
                    if (a->op == MPT_PP_B && a->mb == m - 1 && a->chunk == v - 1)
                        R->last_b_start = ready;
                    R->clock = ready + d;
                    R->busy += d;
                    if (a->op != MPT_PP_F && a->mb == m - 1) R->last_b_end = R->clock;
                    if (ev) ev[(*n_ev)++] = (mpt_pp_event){r, *a, ready, R->clock};
                }
                R->pc++;
                left--;
                progress = 1;
            }
        }
        if (!progress)
            return mpt_fail(err, MPT_ERR_RUN, "simulated %s schedule deadlocks (p=%d m=%d v=%d)",
                            mpt_pp_kind_name(kind), p, m, v);
    }
    return MPT_OK;
}


/* replay_ on time-shared cores (cpu-here with more ranks than cores): the p lists advance
 * together in time, and while k pipeline ranks compute, each of the `copies` ranks a pipeline
 * rank stands for (dp x tp x cp, doing the same at the same time) runs at min(1, cores /
 * (copies x k)) of a core (processor sharing): a pipeline's rank that waits for its input
 * leaves its core to the others, and one that computes alone (1F1B's fill and drain) cannot
 * use more than its own core. The stage costs are seconds on one core. */
static mpt_status replay_ps_(rank_ *rk, int p, int v, int m, mpt_pp_kind kind,
                             const mpt_stage_cost *sc, const double *p2p, msg_ *msg,
                             double slots, double poll, mpt_pp_event *ev, size_t *n_ev,
                             mpt_sim_comm *cm, size_t *n_cm, mpt_error *err) {
    int S = p * v;
    double *rem = calloc((size_t)p, sizeof *rem), *wake = calloc((size_t)p, sizeof *wake);
    double *start = calloc((size_t)p, sizeof *start), *dur = calloc((size_t)p, sizeof *dur);
    char *run = calloc((size_t)p, 1);
    mpt_status st = MPT_OK;
    if (!rem || !wake || !start || !dur || !run) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory simulating %d stages", S);
        goto done;
    }
    double t = 0;
    for (;;) {
        /* every rank that is not computing runs its posts, and starts its next compute when
         * the input is in (wake: when it will be; -1: its producer has not sent yet) */
        int left = 0, moved = 1;
        while (moved) { /* until no rank moves: a send may free a rank looked at before it */
        moved = 0, left = 0;
        for (int r = 0; r < p; r++) {
            rank_ *R = &rk[r];
            while (!run[r] && R->pc < R->n) {
                const mpt_pp_action *a = &R->a[R->pc];
                int me = mpt_pp_stage_k(kind, p, r, a->chunk);
                if (a->op == MPT_PP_RECV_ACT || a->op == MPT_PP_RECV_GRAD) {
                    msg[((size_t)a->mb * S + me) * 2 + (a->op == MPT_PP_RECV_GRAD)].posted = t;
                    R->pc++;
                    moved = 1;
                    continue;
                }
                if (a->op == MPT_PP_SEND_ACT || a->op == MPT_PP_SEND_GRAD) {
                    int dst = mpt_pp_stage_k(kind, p, a->peer, a->peer_chunk);
                    msg[((size_t)a->mb * S + dst) * 2 + (a->op == MPT_PP_SEND_GRAD)].sent = t;
                    R->pc++;
                    moved = 1;
                    continue;
                }
                int grad = a->op != MPT_PP_F;
                int has_input = a->op == MPT_PP_F ? me > 0 : a->op == MPT_PP_B && me < S - 1;
                wake[r] = t;
                if (has_input) {
                    const msg_ *g = &msg[((size_t)a->mb * S + me) * 2 + grad];
                    if (g->sent < 0) { wake[r] = -1; break; }
                    double post = g->posted > g->sent ? g->posted : g->sent;
                    wake[r] = post + p2p[grad ? me : me - 1];
                    if (wake[r] > t) break;
                    if (cm) {
                        int from = 0, from_chunk = 0;
                        mpt_pp_stage_place(kind, p, grad ? me + 1 : me - 1, &from, &from_chunk);
                        cm[(*n_cm)++] = (mpt_sim_comm){from, grad ? MPT_SIM_P2P_GRAD
                                                                  : MPT_SIM_P2P_ACT,
                                                       post, wake[r]};
                    }
                }
                const mpt_stage_cost *c = &sc[me];
                dur[r] = a->op == MPT_PP_F ? c->f
                         : a->op == MPT_PP_W ? c->w
                         : mpt_pp_split(kind) ? c->b
                                              : c->b + c->w;
                rem[r] = dur[r];
                start[r] = t;
                run[r] = 1;
                moved = 1;
                if (a->op == MPT_PP_F && R->busy == 0) R->first_start = t;
                if (a->op == MPT_PP_B && a->mb == m - 1 && a->chunk == v - 1) R->last_b_start = t;
            }
            left += R->pc < R->n;
        }
        }
        if (!left) break;
        /* the waiting ranks poll (OpenMPI oversubscribed: sched_yield between polls), each
         * taking `poll` of a core (cluster.h poll_share) once the computing ones fill the
         * cores */
        int k = 0;
        for (int r = 0; r < p; r++) k += run[r];
        double demand = k + poll * (p - k);
        double rate = demand > slots ? slots / demand : 1.0, next = -1;
        for (int r = 0; r < p; r++) {
            double e = run[r] ? t + rem[r] / rate : rk[r].pc < rk[r].n && wake[r] > t ? wake[r] : -1;
            if (e >= 0 && (next < 0 || e < next)) next = e;
        }
        if (next < 0) {
            st = mpt_fail(err, MPT_ERR_RUN, "simulated %s schedule deadlocks (p=%d m=%d v=%d)",
                          mpt_pp_kind_name(kind), p, m, v);
            goto done;
        }
        for (int r = 0; r < p; r++) {
            if (!run[r]) continue;
            rem[r] -= rate * (next - t);
            if (rem[r] > 1e-9 * dur[r]) continue;
            rank_ *R = &rk[r]; /* its compute ends at `next` */
            const mpt_pp_action *a = &R->a[R->pc];
            R->clock = next;
            R->busy += dur[r];
            if (a->op != MPT_PP_F && a->mb == m - 1) R->last_b_end = next;
            if (ev) ev[(*n_ev)++] = (mpt_pp_event){r, *a, start[r], next};
            run[r] = 0;
            R->pc++;
        }
        t = next;
    }
done:
    free(rem);
    free(wake);
    free(start);
    free(dur);
    free(run);
    return st;
}

/* replay_, or replay_ps_ when slots > 0 (the cores over the ranks a pipeline rank stands for) */
static mpt_status replay_any_(rank_ *rk, int p, int v, int m, mpt_pp_kind kind,
                              const mpt_stage_cost *sc, const double *p2p, msg_ *msg,
                              double slots, double poll, mpt_pp_event *ev, size_t *n_ev,
                              mpt_sim_comm *cm, size_t *n_cm, mpt_error *err) {
    if (slots > 0)
        return replay_ps_(rk, p, v, m, kind, sc, p2p, msg, slots, poll, ev, n_ev, cm, n_cm,
                          err);
    return replay_(rk, p, v, m, kind, sc, p2p, msg, ev, n_ev, cm, n_cm, err);
}

/* 2bw without a flush (train/trainer_2bw.c runs mpt_pp_schedule_2bw's list of several steps:
 * m >= p, dense): the steady state's step on each pipeline rank, the growth of its last
 * action's end from the list of two steps to the list of three (micro-batches 2m and 3m of one
 * 1F1B order, as mpt_pp_schedule_2bw makes them). period[r] gets rank r's; msg holds 3m x S x 2
 * messages. */
static mpt_status two_bw_period_(int p, int m, const mpt_stage_cost *sc, const double *p2p,
                                 msg_ *msg, double slots, double poll, double *period,
                                 mpt_error *err) {
    mpt_status st = MPT_OK;
    for (int k = 2; k <= 3 && !st; k++) {
        rank_ *rk = calloc((size_t)p, sizeof *rk);
        if (!rk) return mpt_fail(err, MPT_ERR_RUN, "out of memory simulating 2bw");
        for (size_t i = 0; i < (size_t)k * m * p * 2; i++) msg[i].sent = msg[i].posted = -1;
        for (int r = 0; r < p && !st; r++)
            st = schedule_copy_(MPT_PP_2BW, p, k * m, 1, r, &rk[r].a, &rk[r].n, err);
        size_t n_ev = 0, n_cm = 0;
        if (!st)
            st = replay_any_(rk, p, 1, k * m, MPT_PP_2BW, sc, p2p, msg, slots, poll, NULL,
                             &n_ev, NULL, &n_cm, err);
        for (int r = 0; r < p && !st; r++)
            period[r] = k == 2 ? -rk[r].clock : period[r] + rk[r].clock;
        ranks_free_(rk, p);
    }
    return st;
}

/* More ranks than cores: each blocking tensor-parallel collective of the stage also costs the
 * core seconds it loses (cluster.h meet_waste, plan/calib_meet.c: without gang scheduling a
 * rank naps in comm_wait.c until its partner has been scheduled again, wakes late, and a core
 * whose ranks both nap idles), read at the stage's own granularity: the part's seconds between
 * two meetings. Core time the replay would otherwise give to work, so it joins the part's
 * compute (on the time-shared cores and in the node's work). Returns the seconds added. */
static double meet_poll_(const mpt_cluster *c, mpt_stage_cost *x) {
    double *t[3] = {&x->f, &x->b, &x->w}, n[3] = {x->meets_f, x->meets_b, x->meets_w}, add = 0;
    for (int i = 0; i < 3; i++) {
        if (!(n[i] > 0)) continue;
        double a = n[i] * mpt_cluster_meet_waste(c, *t[i] / n[i]);
        *t[i] += a;
        add += a;
    }
    return add;
}

/* ZeRO 1-3's collectives of one group of R ranks over n gradient elements (es bytes per
 * parameter element): the gradients' reduce-scatter (ZeRO-2/3: per micro-batch), ZeRO 1-2's
 * parameter all-gather after the update, ZeRO-3's gathers before forward and backward (per
 * micro-batch, or once with a pipeline). Adds to *red (reduction time), *ag (the all-gather
 * after the optimizer) and *dpb (bytes each rank sends). */
static void zero_colls_(const mpt_cluster *c, int zero, int p, int m, int R, double n,
                        double es, int inter, double *red, double *ag, double *dpb) {
    if (R <= 1 || n <= 0) return;
    double gb = 4.0 * n, frac = (double)(R - 1) / R;
    double rs = mpt_cost_collective(c, MPT_COLL_REDUCE_SCATTER, R, gb, inter);
    if (zero <= 1) *red += rs, *dpb += frac * gb;
    else *red += m * rs, *dpb += m * frac * gb;
    if (zero <= 2) {
        *ag += mpt_cost_collective(c, MPT_COLL_ALLGATHER, R, es * n, inter);
        *dpb += frac * es * n;
    }
    if (zero == 3) {
        int k = p > 1 ? 1 : 2 * m;
        *red += k * mpt_cost_collective(c, MPT_COLL_ALLGATHER, R, es * n, inter);
        *dpb += k * frac * es * n;
    }
}

mpt_status mpt_simulate(const mpt_plan_job *job, const mpt_plan_layout *l, const mpt_cluster *c,
                        int keep_events, mpt_sim_result *out, mpt_error *err) {
    memset(out, 0, sizeof *out);
    mpt_config cfg;
    mpt_status st = mpt_plan_check(job, l, &cfg, err);
    if (st) return st;
    /* the rates one rank sees (cpu-here: its share of the node's cores); peak per rank for
     * MFU stays the cluster's */
    double peak = job->precision == MPT_PREC_BF16 ? c->peak_bf16 : c->peak_fp32;
    mpt_cluster rank_c = *c;
    /* more ranks than cores: each computes at up to one core while it runs, and the node's
     * cores are shared among the running ones (time-sharing, work-conserving: the step takes
     * at least all ranks' compute over the cores, applied after the replay) */
    long world = mpt_plan_layout_world(l);
    int oversub = c->cores > 0 && world > c->cores;
    double share = mpt_cluster_rank_share(&rank_c, oversub ? c->cores : world,
                                          oversub ? 1 : job->threads);
    c = &rank_c;
    int p = l->pp, v = mpt_plan_chunks(l);
    int m = l->microbatches, S = p * v;
    mpt_pp_kind kind = p > 1 ? l->schedule : MPT_PP_1F1B;
    int T = job->seq_len > 0 ? job->seq_len : cfg.n_positions;
    int Bm = job->batch / (l->dp * m);
    int counts[MPT_PLAN_MAX_STAGES];
    if ((st = mpt_plan_partition(job, l, &cfg, counts, err))) return st;
    mpt_stage_cost *sc = calloc((size_t)S, sizeof *sc);
    double *p2p = calloc((size_t)S, sizeof *p2p);
    /* 2bw without a flush: the trainer's rule (train/trainer_2bw.c, mpt_run_2bw_segment) */
    int two_bw = kind == MPT_PP_2BW && m >= p && cfg.experts == 0;
    msg_ *msg = malloc((size_t)m * S * 2 * (two_bw ? 3 : 1) * sizeof *msg);
    rank_ *rk = calloc((size_t)p, sizeof *rk);
    size_t n_events = (size_t)m * S * (mpt_pp_split(kind) ? 3 : 2);
    mpt_pp_event *ev = keep_events ? malloc(n_events * sizeof *ev) : NULL;
    size_t n_cm_max = (size_t)m * S * 2 + 2 * (size_t)p;
    mpt_sim_comm *cm = keep_events ? malloc(n_cm_max * sizeof *cm) : NULL;
    size_t n_cm = 0;
    if (!sc || !p2p || !msg || !rk || (keep_events && (!ev || !cm))) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory simulating %d stages x %d micro-batches",
                      S, m);
        goto done;
    }
    int pp_inter = mpt_cost_group_inter(c, l, MPT_DIM_PP);
    double ep_extra[MPT_PLAN_MAX_STAGES] = {0}; /* oversubscribed: the busiest ep rank's extra */
    for (int s = 0, fl = 0; s < S; fl += counts[s++]) {
        mpt_cost_stage(c, &cfg, l, T, Bm, job->precision, fl, counts[s], s == 0, s == S - 1,
                       &sc[s]);
        p2p[s] = mpt_cost_p2p(c, sc[s].boundary_bytes, pp_inter);
        if (oversub) { /* the polling per tp meeting, per micro-batch (largest stage) */
            double a = meet_poll_(c, &sc[s]);
            if (a > out->meet_poll) out->meet_poll = a;
        }
        /* the busiest ep rank sets the pace: the user's figure, at least what uniform routing
         * of the ep group's tokens per micro-batch gives (cost_moe.h) */
        double imb = job->moe_imbalance;
        if (cfg.experts > 0 && l->ep > 1) {
            double rows = (double)Bm * T / l->cp / (l->sp ? l->tp : 1) * l->ep;
            double u = mpt_cost_moe_uniform_max(rows, cfg.top_k, cfg.experts, l->ep);
            if (u > imb) imb = u;
            /* a capacity caps every expert at cf x its mean rows (S already holds cf < 1) */
            double cap = cfg.capacity_factor >= 1 ? cfg.capacity_factor : 1;
            if (cfg.capacity_factor > 0 && imb > cap) imb = cap;
        }
        /* rows dropped at capacity (moe.c: a dropped assignment is skipped after the routing):
         * the mean rank's experts run on keep of the rows sc priced (mpt_cost_moe_block
         * already keeps min(1, cf)); the busiest ep rank stays at imb (capped above) */
        double keep = 1;
        if (cfg.experts > 0 && cfg.capacity_factor > 0 && job->moe_dropped > 0) {
            double k0 = cfg.capacity_factor < 1 ? cfg.capacity_factor : 1;
            keep = (1 - job->moe_dropped) / k0;
            if (keep > 1) keep = 1;
            if (keep < 0) keep = 0;
        }
        /* more ranks than cores: the ep partners waiting for the busiest one yield their core
         * to it (OpenMPI yields when oversubscribed), so the node's work is the mean's and the
         * busiest rank is a bound of its own (below, ep_busy) */
        if (keep < 1 && (oversub || l->ep < 2)) { /* the mean rank's (every rank's at ep 1) */
            double ex = sc[s].expert_f + sc[s].expert_b + sc[s].expert_w;
            sc[s].f -= (1 - keep) * sc[s].expert_f, sc[s].b -= (1 - keep) * sc[s].expert_b;
            sc[s].w -= (1 - keep) * sc[s].expert_w;
            if (l->ep > 1) ep_extra[s] = (imb - keep) * ex;
            sc[s].expert_f *= keep, sc[s].expert_b *= keep, sc[s].expert_w *= keep;
        } else if (imb > 1 && l->ep > 1 && oversub) {
            double g = imb - 1;
            ep_extra[s] = g * (sc[s].expert_f + sc[s].expert_b + sc[s].expert_w);
        } else if (imb > 1 && l->ep > 1) {
            double g = imb - 1;
            sc[s].f += g * sc[s].expert_f, sc[s].b += g * sc[s].expert_b;
            sc[s].w += g * sc[s].expert_w;
        }
    }
    for (size_t i = 0; i < (size_t)m * S * 2; i++) msg[i].sent = msg[i].posted = -1;
    for (int r = 0; r < p; r++)
        if ((st = schedule_copy_(kind, p, m, v, r, &rk[r].a, &rk[r].n, err))) goto done;
    size_t n_ev = 0;
    /* more ranks than cores (cpu-here): the pipeline ranks share them while they compute */
    double slots = oversub ? (double)c->cores / ((double)l->dp * l->tp * l->cp) : 0;
    double poll = oversub ? c->poll_share : 0;
    if ((st = replay_any_(rk, p, v, m, kind, sc, p2p, msg, slots, poll, ev, &n_ev, cm, &n_cm,
                          err)))
        goto done;
    if (two_bw) { /* a step is one window of the steady state, not a drained pipeline: each
                   * rank's times move to a window that ends where the drained step ends */
        double period[MPT_PLAN_MAX_STAGES];
        if ((st = two_bw_period_(p, m, sc, p2p, msg, slots, poll, period, err))) goto done;
        for (int r = 0; r < p; r++) {
            double shift = rk[r].clock - period[r];
            rk[r].clock = period[r];
            rk[r].last_b_start = rk[r].last_b_start > shift ? rk[r].last_b_start - shift : 0;
            rk[r].first_start = rk[r].first_start > shift ? rk[r].first_start - shift : 0;
        }
    }

    /* data parallelism, optimizer, totals */
    double es = mpt_cost_elem_bytes(job->precision);
    int dp_inter = mpt_cost_group_inter(c, l, MPT_DIM_DP);
    int tp_inter = mpt_cost_group_inter(c, l, MPT_DIM_TP);
    double makespan = 0, busy = 0, step = 0, flops_hw = 0, flops_model = 0, node_work = 0;
    for (int r = 0; r < p; r++) {
        if (rk[r].clock > makespan) makespan = rk[r].clock;
        busy += rk[r].busy;
    }
    int R = l->dp * l->cp; /* gradients are reduced (ZeRO: sharded) over dp x cp */
    for (int r = 0; r < p; r++) {
        double G = 0, fl = 0, fm = 0, tpb = 0, tpt = 0, ppb = 0, Ge = 0, epb = 0, ept = 0;
        int units = 0;
        for (int k = 0; k < v; k++) {
            int s = mpt_pp_stage_k(kind, p, r, k);
            const mpt_stage_cost *x = &sc[s];
            G += x->params;
            Ge += x->expert_params; /* MoE, ep > 1: the experts' part, reduced over edp */
            epb += m * x->ep_bytes;
            ept += m * x->ep_time;
            fl += m * x->flops_hw;
            fm += m * x->flops_model;
            tpb += m * x->tp_bytes;
            tpt += m * x->tp_time;
            ppb += m * ((s < S - 1 ? 1 : 0) + (s > 0 ? 1 : 0)) * x->boundary_bytes;
            units += counts[s] + (s == 0) + (s == S - 1);
        }
        flops_hw += fl;
        flops_model += fm;
        double gb = 4.0 * G; /* gradients are reduced in fp32 */
        double red = 0, ag = 0, dpb = 0, frac = R > 1 ? (double)(R - 1) / R : 0;
        double end = rk[r].clock;
        int edp = l->ep > 1 ? R / l->ep : 1; /* the ranks holding the same experts */
        if (l->zero == 0) {
            red = mpt_cost_collective(c, MPT_COLL_ALLREDUCE, R, gb, dp_inter);
            dpb = 2 * frac * gb;
            red += mpt_cost_collective(c, MPT_COLL_ALLREDUCE, edp, 4.0 * Ge, dp_inter);
            if (edp > 1) dpb += 2.0 * (edp - 1) / edp * 4.0 * Ge;
        } else { /* the dense part over dp x cp, the experts' part over edp (parallel/ep.h) */
            zero_colls_(c, l->zero, p, m, R, G - Ge, es, dp_inter, &red, &ag, &dpb);
            zero_colls_(c, l->zero, p, m, edp, Ge, es, dp_inter, &red, &ag, &dpb);
        }
        double tail = units > 0 ? red / units : red;
        if (l->zero <= 1) { /* buckets reduce during the last micro-batch's backward */
            double t = rk[r].last_b_start + red;
            end = t > rk[r].clock + tail ? t : rk[r].clock + tail;
        } else {
            double t = rk[r].first_start + red;
            end = t > rk[r].clock + tail ? t : rk[r].clock + tail;
        }
        /* a CPU node (cpu-here: cores > 0) has no copy engine: the ring's copies and sums run
         * on the rank's own cores between its layers, so they add to its time */
        if (c->cores > 0) end = rk[r].clock + red;
        if (R == 1) end = rk[r].clock;
        double shard = l->zero == 0 ? G : (G - Ge) / R + Ge / edp; /* ZeRO: dense, experts */
        /* AdamW reads p, g, m, v and writes p, m, v (28 B per element of the shard); the
         * gradient norm reads and the next step's zeroing writes the gradient buffer (8 B per
         * element: the whole G below ZeRO-2, the shard from it) */
        double gbuf = l->zero >= 2 ? shard : G;
        double opt = (28.0 * shard + 8.0 * gbuf) / (c->mem_bw * c->mem_eff) + ag;
        double t_r = end + opt;
        if (cm && R > 1)
            cm[n_cm++] = (mpt_sim_comm){r, MPT_SIM_DP,
                                        l->zero <= 1 ? rk[r].last_b_start : rk[r].first_start,
                                        end};
        if (cm) cm[n_cm++] = (mpt_sim_comm){r, MPT_SIM_OPTIMIZER, end, t_r};
        if (t_r > step) step = t_r;
        node_work += rk[r].busy + opt + (c->cores > 0 && R > 1 ? red : 0);
        if (end - rk[r].clock > out->dp_exposed) out->dp_exposed = end - rk[r].clock;
        if (opt > out->optimizer) out->optimizer = opt;
        double tpw = tpb; /* sent, per kind of collective (cost.c; sp's counted 0 bytes
                           * with one replica until 2026-11-30: dp's fraction was used) */
        if (tpw > out->bytes_tp) out->bytes_tp = tpw;
        if (ppb > out->bytes_pp) out->bytes_pp = ppb;
        if (dpb > out->bytes_dp) out->bytes_dp = dpb;
        if (tpt > out->tp_time) out->tp_time = tpt;
        if (epb > out->bytes_ep) out->bytes_ep = epb;
        if (ept > out->ep_time) out->ep_time = ept;
    }
    double copies = (double)l->dp * l->tp * l->cp;
    if (oversub && node_work * copies / c->cores > step) { /* the cores, not the schedule */
        step = node_work * copies / c->cores;
        share = (double)c->cores / (double)world;
    }
    if (oversub) { /* the busiest ep rank on a core of its own: its stages' work, imbalanced */
        for (int r = 0; r < p; r++) {
            double w = 0;
            for (int k = 0; k < v; k++) {
                int s = mpt_pp_stage_k(kind, p, r, k);
                w += m * (sc[s].f + sc[s].b + sc[s].w + ep_extra[s]);
            }
            if (w > step) step = w; /* (sc is priced at one core: rank_c above) */
        }
    }
    out->world = (int)mpt_plan_layout_world(l);
    out->p = p, out->v = v, out->m = m;
    out->pipe_time = makespan;
    out->bubble = makespan > 0 ? 1.0 - busy / (p * makespan) : 0;
    out->step_time = step;
    out->flops_hw = flops_hw * copies;
    out->flops_model = flops_model * copies;
    out->peak = peak;
    out->share = share;
    out->tflops_per_gpu = out->flops_hw / (out->world * step) / 1e12;
    out->hfu = out->flops_hw / (out->world * step * peak);
    out->mfu = out->flops_model / (out->world * step * peak);
    out->tokens_per_s = (double)job->batch * T / step;
    out->bytes_intra = (tp_inter ? 0 : out->bytes_tp) + (pp_inter ? 0 : out->bytes_pp) +
                       (dp_inter ? 0 : out->bytes_dp) +
                       (mpt_cost_ep_inter(c, l) ? 0 : out->bytes_ep);
    out->bytes_inter = out->bytes_tp + out->bytes_pp + out->bytes_dp + out->bytes_ep -
                       out->bytes_intra;
    out->ev = ev;
    out->n_ev = n_ev;
    out->comm = cm;
    out->n_comm = n_cm;
    ev = NULL;
    cm = NULL;
done:
    free(ev);
    free(cm);
    free(sc);
    free(p2p);
    free(msg);
    ranks_free_(rk, p);
    return st;
}
