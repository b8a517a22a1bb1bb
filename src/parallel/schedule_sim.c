/* schedule_sim.c — the schedule simulator (see schedule.h): runs every rank's action list (from
 * mpt_pp_schedule, or made by hand) against the others under a cost model (one for all ranks,
 * or one per rank: a run's measured costs replayed), timing each compute action, and reports
 * what breaks a schedule: deadlock, unmatched sends or receives, work done twice, out of order
 * or never. Pure: no MPI, no globals. */
#include "parallel/schedule.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One message: the activations entering, or the gradient leaving, stage `dst` for one
 * micro-batch. */
typedef struct msg_ {
    double sent_at, posted_at;
    int sender, receiver;     /* ranks that posted the send / the receive; -1 until then */
    unsigned char used;       /* consumed by a compute action */
} msg_;

/* Compute progress of one (micro-batch, stage). */
enum { DONE_F = 1, DONE_B = 2, DONE_W = 4 };

typedef struct sim_ {
    mpt_pp_kind kind;
    int p, m, v, S;           /* S = p*v stages */
    const double *cost;       /* [p][MPT_PP_COSTS]: rank r's costs (borrowed) */
    const mpt_pp_durations *d;/* NULL, or every action's own duration (borrowed): overrides
                               * cost's F, B, W and COMM */
    const mpt_pp_action *const *list; /* per rank (borrowed) */
    const size_t *len;        /* per rank: list length (borrowed) */
    size_t *pc, *nev;         /* per rank: next action, events recorded */
    double *clock;            /* per rank: when it is next free */
    int *inflight;            /* per rank: stashes held now */
    msg_ *msg;                /* [m][S][2] (act, grad) */
    unsigned char *done;      /* [m][S] */
    mpt_pp_timeline *t;
} sim_;

static msg_ *msg_at_(sim_ *s, int mb, int stage, int grad) {
    return &s->msg[((size_t)mb * (size_t)s->S + (size_t)stage) * 2 + (size_t)grad];
}

/* Appends to a message buffer, truncating quietly. */
__attribute__((format(printf, 3, 4))) static void append_(char *buf, size_t cap,
                                                          const char *fmt, ...) {
    size_t used = strlen(buf);
    if (used + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, cap - used, fmt, ap);
    va_end(ap);
}

static mpt_status broken_(sim_ *s, mpt_error *err, int rank, const mpt_pp_action *a,
                          const char *what) {
    char name[48];
    return mpt_fail(err, MPT_ERR_RUN, "%s schedule (p=%d m=%d v=%d) is broken: rank %d, %s: %s",
                    mpt_pp_kind_name(s->kind), s->p, s->m, s->v, rank,
                    mpt_pp_action_str(a, s->v, name, sizeof name), what);
}

/* Posts a send or receive. Returns 1, or -1 with err set. */
static int post_(sim_ *s, int rank, const mpt_pp_action *a, mpt_error *err) {
    int recv = a->op == MPT_PP_RECV_ACT || a->op == MPT_PP_RECV_GRAD;
    int grad = a->op == MPT_PP_RECV_GRAD || a->op == MPT_PP_SEND_GRAD;
    if (a->mb < 0 || a->mb >= s->m || a->chunk < 0 || a->chunk >= s->v || a->peer < 0 ||
        a->peer >= s->p || a->peer_chunk < 0 || a->peer_chunk >= s->v) {
        broken_(s, err, rank, a, "micro-batch, chunk or peer out of range");
        return -1;
    }
    int me = mpt_pp_stage_k(s->kind, s->p, rank, a->chunk);
    int other = mpt_pp_stage_k(s->kind, s->p, a->peer, a->peer_chunk);
    /* activations flow to stage + 1, gradients to stage - 1 */
    int src = recv ? other : me, dst = recv ? me : other;
    if (dst - src != (grad ? -1 : 1)) {
        broken_(s, err, rank, a, "the peer is not the neighbouring stage");
        return -1;
    }
    msg_ *g = msg_at_(s, a->mb, dst, grad);
    if (recv) {
        if (g->receiver >= 0) {
            broken_(s, err, rank, a, "this receive is posted twice");
            return -1;
        }
        g->receiver = rank;
        g->posted_at = s->clock[rank];
    } else {
        if (g->sender >= 0) {
            broken_(s, err, rank, a, "this message is sent twice");
            return -1;
        }
        g->sender = rank;
        g->sent_at = s->clock[rank];
    }
    return 1;
}

/* Runs a compute action if its input is there. Returns 1 done, 0 waiting, -1 with err set. */
static int compute_(sim_ *s, int rank, const mpt_pp_action *a, mpt_error *err) {
    if (a->mb < 0 || a->mb >= s->m || a->chunk < 0 || a->chunk >= s->v) {
        broken_(s, err, rank, a, "micro-batch or chunk out of range");
        return -1;
    }
    int st = mpt_pp_stage_k(s->kind, s->p, rank, a->chunk);
    unsigned char *done = &s->done[(size_t)a->mb * (size_t)s->S + (size_t)st];
    int bit = a->op == MPT_PP_F ? DONE_F : a->op == MPT_PP_B ? DONE_B : DONE_W;
    if (*done & bit) {
        broken_(s, err, rank, a, "done twice");
        return -1;
    }
    if (a->op == MPT_PP_B && !(*done & DONE_F)) {
        broken_(s, err, rank, a, "backward before its forward");
        return -1;
    }
    if (a->op == MPT_PP_W && (!mpt_pp_split(s->kind) || !(*done & DONE_B))) {
        broken_(s, err, rank, a, !mpt_pp_split(s->kind) ? "weight-gradient action in a schedule "
                "without split backward" : "weight gradient before its input gradient");
        return -1;
    }
    double start = s->clock[rank];
    size_t mv = (size_t)s->m * (size_t)s->v, j = (size_t)a->mb * (size_t)s->v + (size_t)a->chunk;
    int needs = (a->op == MPT_PP_F && st > 0) || (a->op == MPT_PP_B && st < s->S - 1);
    if (needs) {
        int grad = a->op == MPT_PP_B;
        msg_ *g = msg_at_(s, a->mb, st, grad);
        if (g->receiver != rank) {
            broken_(s, err, rank, a, grad ? "no receive of its gradient was posted before it"
                                          : "no receive of its activations was posted before it");
            return -1;
        }
        if (g->sender < 0) return 0;
        double comm = s->d ? s->d->comm[(size_t)rank * 2 * mv + 2 * j + (size_t)grad]
                           : s->cost[(size_t)rank * MPT_PP_COSTS + MPT_PP_COST_COMM];
        double arrive = fmax(g->sent_at, g->posted_at) + comm;
        start = fmax(start, arrive);
        g->used = 1;
    }
    double end = start + (s->d ? s->d->dur[((size_t)rank * 3 + (size_t)(a->op == MPT_PP_F ? 0
                                                      : a->op == MPT_PP_B ? 1 : 2)) * mv + j]
                               : mpt_pp_action_cost(s->kind, s->v,
                                                    s->cost + (size_t)rank * MPT_PP_COSTS, a->op));
    *done |= (unsigned char)bit;
    if (a->op == MPT_PP_F) s->inflight[rank]++;
    if (a->op == (mpt_pp_split(s->kind) ? MPT_PP_W : MPT_PP_B)) s->inflight[rank]--;
    if (s->inflight[rank] > s->t->peak_inflight[rank]) s->t->peak_inflight[rank] = s->inflight[rank];
    mpt_pp_event *e = &s->t->ev[s->t->first[rank] + s->nev[rank]++];
    e->rank = rank;
    e->a = *a;
    e->start = start;
    e->end = end;
    s->clock[rank] = end;
    return 1;
}

/* Explains a deadlock: what every unfinished rank is waiting for. */
static mpt_status deadlock_(sim_ *s, mpt_error *err) {
    char buf[sizeof err->msg] = "", name[48];
    append_(buf, sizeof buf, "%s schedule (p=%d m=%d v=%d) deadlocks, no rank can progress:",
            mpt_pp_kind_name(s->kind), s->p, s->m, s->v);
    for (int r = 0; r < s->p; r++) {
        if (s->pc[r] >= s->len[r]) continue;
        const mpt_pp_action *a = &s->list[r][s->pc[r]];
        int st = mpt_pp_stage_k(s->kind, s->p, r, a->chunk), grad = a->op == MPT_PP_B;
        int from = grad ? st + 1 : st - 1;
        append_(buf, sizeof buf, " rank %d at %s waits for %s from rank %d;", r,
                mpt_pp_action_str(a, s->v, name, sizeof name),
                grad ? "its gradient" : "its activations", from % s->p);
    }
    return mpt_fail(err, MPT_ERR_RUN, "%s", buf);
}

/* After every rank finished: every message sent, received and used; all work done once. */
static mpt_status audit_(sim_ *s, mpt_error *err) {
    const char *what[2] = {"activations", "gradient"};
    for (int mb = 0; mb < s->m; mb++)
        for (int st = 0; st < s->S; st++)
            for (int g = 0; g < 2; g++) {
                msg_ *x = msg_at_(s, mb, st, g);
                int from = g ? st + 1 : st - 1;
                if (x->sender >= 0 && x->receiver < 0)
                    return mpt_fail(err, MPT_ERR_RUN, "%s schedule is broken: rank %d sends the "
                                    "%s of micro-batch %d for stage %d, and rank %d never "
                                    "receives them", mpt_pp_kind_name(s->kind), x->sender,
                                    what[g], mb, st, st % s->p);
                if (x->receiver >= 0 && x->sender < 0)
                    return mpt_fail(err, MPT_ERR_RUN, "%s schedule is broken: rank %d receives "
                                    "the %s of micro-batch %d for stage %d, and rank %d never "
                                    "sends them", mpt_pp_kind_name(s->kind), x->receiver,
                                    what[g], mb, st, from % s->p);
                if (x->receiver >= 0 && !x->used)
                    return mpt_fail(err, MPT_ERR_RUN, "%s schedule is broken: rank %d receives "
                                    "the %s of micro-batch %d for stage %d but never uses them",
                                    mpt_pp_kind_name(s->kind), x->receiver, what[g], mb, st);
            }
    unsigned char want = DONE_F | DONE_B | (mpt_pp_split(s->kind) ? DONE_W : 0);
    for (int mb = 0; mb < s->m; mb++)
        for (int st = 0; st < s->S; st++) {
            unsigned char d = s->done[(size_t)mb * (size_t)s->S + (size_t)st];
            if (d == want) continue;
            const char *missing = !(d & DONE_F) ? "forward" : !(d & DONE_B) ? "backward"
                                                                             : "weight gradient";
            return mpt_fail(err, MPT_ERR_RUN, "%s schedule is broken: rank %d leaves micro-batch "
                            "%d of chunk %d without its %s", mpt_pp_kind_name(s->kind),
                            st % s->p, mb, st / s->p, missing);
        }
    return MPT_OK;
}

/* Runs the ranks round-robin, each as far as it can, until all finish or none can move. */
static mpt_status run_(sim_ *s, mpt_error *err) {
    for (;;) {
        int moved = 0, finished = 1;
        for (int r = 0; r < s->p; r++) {
            while (s->pc[r] < s->len[r]) {
                const mpt_pp_action *a = &s->list[r][s->pc[r]];
                int res = mpt_pp_op_is_compute(a->op) ? compute_(s, r, a, err)
                        : a->op < MPT_PP_OPS         ? post_(s, r, a, err)
                                                      : (broken_(s, err, r, a, "unknown op"), -1);
                if (res < 0) return MPT_ERR_RUN;
                if (res == 0) break;
                s->pc[r]++;
                moved = 1;
            }
            if (s->pc[r] < s->len[r]) finished = 0;
        }
        if (finished) return audit_(s, err);
        if (!moved) return deadlock_(s, err);
    }
}

void mpt_pp_timeline_free(mpt_pp_timeline *t) {
    if (!t) return;
    free(t->ev);
    free(t->first);
    free(t->peak_inflight);
    memset(t, 0, sizeof *t);
}

/* The simulation of lists under per-rank costs ([p][MPT_PP_COSTS], checked by the caller). */
static mpt_status simulate_(mpt_pp_kind kind, int p, int m, int v,
                            const mpt_pp_action *const *lists, const size_t *lens,
                            const double *costs, const mpt_pp_durations *d,
                            mpt_pp_timeline *out, mpt_error *err) {
    mpt_status st = MPT_OK;
    sim_ s = {.kind = kind, .p = p, .m = m, .v = v, .S = p * v, .t = out, .list = lists,
              .len = lens, .cost = costs, .d = d};
    size_t P = (size_t)p, cells = (size_t)m * (size_t)s.S;
    s.pc = calloc(P, sizeof *s.pc);
    s.nev = calloc(P, sizeof *s.nev);
    s.clock = calloc(P, sizeof *s.clock);
    s.inflight = calloc(P, sizeof *s.inflight);
    s.msg = calloc(cells * 2, sizeof *s.msg);
    s.done = calloc(cells, 1);
    out->first = calloc(P + 1, sizeof *out->first);
    out->peak_inflight = calloc(P, sizeof *out->peak_inflight);
    if (s.pc && s.nev && s.clock && s.inflight && s.msg && s.done && out->first &&
        out->peak_inflight) {
        for (int r = 0; r < p; r++) {
            size_t nc = 0;
            for (size_t i = 0; i < lens[r]; i++) nc += mpt_pp_op_is_compute(lists[r][i].op);
            out->first[r + 1] = out->first[r] + nc;
        }
        out->ev = calloc(out->first[P] ? out->first[P] : 1, sizeof *out->ev);
    }
    if (!out->ev) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory simulating the %s schedule",
                      mpt_pp_kind_name(kind));
        goto cleanup;
    }
    for (size_t i = 0; i < cells * 2; i++) s.msg[i].sender = s.msg[i].receiver = -1;
    if ((st = run_(&s, err))) goto cleanup;
    out->kind = kind;
    out->p = p;
    out->m = m;
    out->v = v;
    if (costs) memcpy(out->cost, costs, sizeof out->cost);
    out->n = out->first[P];
    for (size_t i = 0; i < out->n; i++) {
        out->busy += out->ev[i].end - out->ev[i].start;
        out->makespan = fmax(out->makespan, out->ev[i].end);
    }
    out->bubble = out->makespan > 0 ? 1.0 - out->busy / ((double)p * out->makespan) : 0.0;
cleanup:
    free(s.pc);
    free(s.nev);
    free(s.clock);
    free(s.inflight);
    free(s.msg);
    free(s.done);
    if (st) mpt_pp_timeline_free(out);
    return st;
}

/* Checks the request and every cost (finite, >= 0). */
static mpt_status check_costs_(mpt_pp_kind kind, int p, int m, int v, const double *costs,
                               size_t n, mpt_error *err) {
    mpt_status st = mpt_pp_check(kind, p, m, v, err);
    if (st) return st;
    for (size_t i = 0; i < n; i++)
        if (!(costs[i] >= 0) || !isfinite(costs[i]))
            return mpt_fail(err, MPT_ERR_INPUT, "pipeline cost %s = %g%s: costs must be finite "
                            "and >= 0", (const char *[]){"F", "B", "W", "comm"}[i % MPT_PP_COSTS],
                            costs[i], n > MPT_PP_COSTS ? " (a rank's)" : "");
    return MPT_OK;
}

/* cost repeated for each of p ranks (malloc'd; NULL when out of memory). */
static double *uniform_(const double cost[MPT_PP_COSTS], int p) {
    double *costs = malloc((size_t)p * MPT_PP_COSTS * sizeof *costs);
    for (int r = 0; costs && r < p; r++)
        memcpy(costs + (size_t)r * MPT_PP_COSTS, cost, MPT_PP_COSTS * sizeof *costs);
    return costs;
}

/* Checks one set of costs and repeats it for each of the p ranks into *costs (caller frees). */
static mpt_status uniform_costs_(mpt_pp_kind kind, int p, int m, int v,
                                 const double cost[MPT_PP_COSTS], double **costs,
                                 mpt_error *err) {
    *costs = NULL;
    mpt_status st = check_costs_(kind, p, m, v, cost, MPT_PP_COSTS, err);
    if (st) return st;
    if (!(*costs = uniform_(cost, p)))
        return mpt_fail(err, MPT_ERR_RUN, "out of memory simulating the %s schedule",
                        mpt_pp_kind_name(kind));
    return MPT_OK;
}

mpt_status mpt_pp_simulate_lists(mpt_pp_kind kind, int p, int m, int v,
                                 const mpt_pp_action *const *lists, const size_t *lens,
                                 const double cost[MPT_PP_COSTS], mpt_pp_timeline *out,
                                 mpt_error *err) {
    memset(out, 0, sizeof *out);
    double *costs;
    mpt_status st = uniform_costs_(kind, p, m, v, cost, &costs, err);
    if (!st) st = simulate_(kind, p, m, v, lists, lens, costs, NULL, out, err);
    free(costs);
    return st;
}

void mpt_pp_recv_at_use(mpt_pp_action *a, size_t n) {
    size_t out = 0, held = 0;
    mpt_pp_action *hold = malloc((n ? n : 1) * sizeof *hold);
    if (!hold) return; /* (out of memory: the list as generated) */
    for (size_t i = 0; i < n; i++) {
        mpt_pp_action x = a[i];
        if (x.op == MPT_PP_RECV_ACT || x.op == MPT_PP_RECV_GRAD) {
            hold[held++] = x;
            continue;
        }
        for (size_t k = 0; k < held && (x.op == MPT_PP_F || x.op == MPT_PP_B); k++)
            if (hold[k].mb == x.mb && hold[k].chunk == x.chunk &&
                hold[k].op == (x.op == MPT_PP_F ? MPT_PP_RECV_ACT : MPT_PP_RECV_GRAD)) {
                a[out++] = hold[k];
                hold[k] = hold[--held];
                break;
            }
        a[out++] = x;
    }
    for (size_t k = 0; k < held; k++) a[out++] = hold[k];
    free(hold);
}

/* Every rank's list from mpt_pp_schedule, simulated under per-rank costs; at_use: receives
 * posted at their consumer (mpt_pp_simulate_replay). */
static mpt_status simulate_schedule_(mpt_pp_kind kind, int p, int m, int v, const double *costs,
                                     const mpt_pp_durations *d, int at_use,
                                     mpt_pp_timeline *out, mpt_error *err) {
    mpt_status st = MPT_OK;
    mpt_pp_action **lists = calloc((size_t)p, sizeof *lists);
    size_t *lens = calloc((size_t)p, sizeof *lens);
    if (!lists || !lens) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory simulating the %s schedule",
                      mpt_pp_kind_name(kind));
        goto cleanup;
    }
    for (int r = 0; r < p; r++) {
        if ((st = mpt_pp_schedule(kind, p, m, v, r, &lists[r], &lens[r], err))) goto cleanup;
        if (at_use) mpt_pp_recv_at_use(lists[r], lens[r]);
    }
    st = simulate_(kind, p, m, v, (const mpt_pp_action *const *)lists, lens, costs, d, out, err);
cleanup:
    if (lists)
        for (int r = 0; r < p; r++) free(lists[r]);
    free(lists);
    free(lens);
    return st;
}

mpt_status mpt_pp_simulate(mpt_pp_kind kind, int p, int m, int v,
                           const double cost[MPT_PP_COSTS], mpt_pp_timeline *out,
                           mpt_error *err) {
    memset(out, 0, sizeof *out);
    double *costs;
    mpt_status st = uniform_costs_(kind, p, m, v, cost, &costs, err);
    if (!st) st = simulate_schedule_(kind, p, m, v, costs, NULL, 0, out, err);
    free(costs);
    return st;
}

mpt_status mpt_pp_simulate_ranks(mpt_pp_kind kind, int p, int m, int v, const double *costs,
                                 mpt_pp_timeline *out, mpt_error *err) {
    memset(out, 0, sizeof *out);
    mpt_status st = check_costs_(kind, p, m, v, costs, (size_t)(p > 0 ? p : 0) * MPT_PP_COSTS,
                                 err);
    return st ? st : simulate_schedule_(kind, p, m, v, costs, NULL, 0, out, err);
}

mpt_status mpt_pp_simulate_replay(mpt_pp_kind kind, int p, int m, int v, const double *costs,
                                  mpt_pp_timeline *out, mpt_error *err) {
    memset(out, 0, sizeof *out);
    mpt_status st = check_costs_(kind, p, m, v, costs, (size_t)(p > 0 ? p : 0) * MPT_PP_COSTS,
                                 err);
    return st ? st : simulate_schedule_(kind, p, m, v, costs, NULL, 1, out, err);
}

mpt_status mpt_pp_simulate_exact(mpt_pp_kind kind, int p, int m, int v, const mpt_pp_durations *d,
                                 mpt_pp_timeline *out, mpt_error *err) {
    memset(out, 0, sizeof *out);
    mpt_status st = mpt_pp_check(kind, p, m, v, err);
    if (st) return st;
    size_t mv = (size_t)m * (size_t)v, P = (size_t)p;
    for (size_t i = 0; i < P * 3 * mv + P * 2 * mv; i++) {
        double x = i < P * 3 * mv ? d->dur[i] : d->comm[i - P * 3 * mv];
        if (!(x >= 0) || !isfinite(x))
            return mpt_fail(err, MPT_ERR_INPUT, "pipeline replay: %s %zu = %g: durations must be "
                            "finite and >= 0", i < P * 3 * mv ? "action duration" : "transfer",
                            i < P * 3 * mv ? i : i - P * 3 * mv, x);
    }
    return simulate_schedule_(kind, p, m, v, NULL, d, 1, out, err);
}
