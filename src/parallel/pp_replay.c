/* pp_replay.c — a measured pipeline step replayed on each action's own duration (see
 * pp_replay.h). */
#include "parallel/pp_replay.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void mpt_pp_replay_tables(int p, int m, int v, const double *recs, double *dur, double *comm) {
    size_t mw = (size_t)m * (size_t)v, nm = 2 * mw, len = mpt_pp_record_size((int)mw);
    for (int s = 0; s < p; s++) {
        const double *x = recs + (size_t)s * len + MPT_PP_REC_HEAD;
        const double *wait = x + 2 * nm, *got = wait + nm, *post = got + nm, *d = post + nm;
        memcpy(dur + (size_t)s * 3 * mw, d, 3 * mw * sizeof *dur);
        for (size_t i = 0; i < nm; i++) {
            double sent = 0.0; /* posted by the stage whose record names s as this tag's peer */
            for (int q = 0; q < p; q++) {
                const double *y = recs + (size_t)q * len + MPT_PP_REC_HEAD;
                if (y[i] > 0 && (int)y[nm + i] == s) sent = y[i];
            }
            double c = 0.0;
            if (got[i] > 0 && sent > 0) {
                double from = sent > wait[i] ? sent : wait[i], dt = got[i] - from;
                c = (dt > 0 ? dt : 0.0) + post[i];
            }
            comm[(size_t)s * nm + i] = c;
        }
    }
}

mpt_status mpt_pp_replay_bubble(mpt_pp_kind kind, int p, int m, int v, const double *recs,
                                double *bubble, mpt_error *err) {
    size_t mw = (size_t)m * (size_t)v, P = (size_t)p;
    double *dur = malloc(P * 5 * mw * sizeof *dur);
    if (!dur) return mpt_fail(err, MPT_ERR_RUN, "out of memory replaying the pipeline step");
    mpt_pp_replay_tables(p, m, v, recs, dur, dur + P * 3 * mw);
    mpt_pp_durations d = {dur, dur + P * 3 * mw};
    mpt_pp_timeline t;
    mpt_status st = mpt_pp_simulate_exact(kind, p, m, v, &d, &t, err);
    if (!st) *bubble = t.bubble;
    mpt_pp_timeline_free(&t);
    free(dur);
    return st;
}

/* The range [*a, *b) of list l (n actions) that rank r runs in window w of a 2bw segment (as
 * mpt_pp_2bw_run breaks it). */
static void window_range_(const mpt_pp_action *l, size_t n, int p, int m, int steps, int r,
                          int w, int deferred, size_t *a, size_t *b) {
    size_t pos = 0, start = 0;
    for (int k = 0; k <= w; k++) {
        start = pos;
        for (; pos < n; pos++) {
            const mpt_pp_action *x = &l[pos];
            if (!mpt_pp_op_is_compute(x->op)) continue;
            if (deferred ? k < steps - 2 && mpt_pp_2bw_window_ends(p, m, r, k, x->op, x->mb)
                         : x->op != MPT_PP_F && x->mb / m > k)
                break;
        }
    }
    *a = start;
    *b = pos;
}

/* One rank's part of the 2bw window replay. */
typedef struct rank2_ {
    mpt_pp_action *l;
    size_t n, a, b, pc;
    double clock, win0, busy;
    const double *rec;
} rank2_;

mpt_status mpt_pp_2bw_replay_bubble(int p, int m, int steps, int n, int deferred,
                                    const double *recs, double *bubble, mpt_error *err) {
    *bubble = -1.0;
    int mw = 2 * m;
    size_t nm = 2 * (size_t)mw, len = mpt_pp_record_size(mw), G = (size_t)m * (size_t)steps;
    /* record parts (pp.h): sent, peer, wait, got, post, dur[3mw], start[3mw], any[nm], win0 */
    const size_t o_wait = 2 * nm, o_got = 3 * nm, o_post = 4 * nm, o_dur = 5 * nm;
    const size_t o_any = 5 * nm + 6 * (size_t)mw, o_win0 = o_any + nm;
    mpt_status st = MPT_OK;
    rank2_ *rk = calloc((size_t)p, sizeof *rk);
    double *sent = malloc(G * 2 * (size_t)p * sizeof *sent); /* replayed send, [g][stage][grad] */
    if (!rk || !sent) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory replaying a 2bw window");
        goto done;
    }
    for (size_t i = 0; i < G * 2 * (size_t)p; i++) sent[i] = -1.0;
    int any = 0;
    for (int r = 0; r < p && !st; r++) {
        rank2_ *x = &rk[r];
        if ((st = mpt_pp_schedule_2bw(p, m, steps, r, &x->l, &x->n, err))) break;
        mpt_pp_recv_at_use(x->l, x->n);
        window_range_(x->l, x->n, p, m, steps, r, n, deferred, &x->a, &x->b);
        x->pc = x->a;
        x->rec = recs + (size_t)r * len + MPT_PP_REC_HEAD;
        x->clock = x->win0 = x->rec[o_win0];
        any |= x->b > x->a;
    }
    if (st || !any) goto done;
    for (;;) {
        int moved = 0, finished = 1;
        for (int r = 0; r < p; r++) {
            rank2_ *x = &rk[r];
            for (; x->pc < x->b; x->pc++, moved = 1) {
                const mpt_pp_action *a = &x->l[x->pc];
                int grad = a->op == MPT_PP_B || a->op == MPT_PP_SEND_GRAD;
                size_t tag = (size_t)(a->mb % mw) * 2 + (size_t)grad;
                if (a->op == MPT_PP_SEND_ACT || a->op == MPT_PP_SEND_GRAD) {
                    sent[((size_t)a->mb * (size_t)p + (size_t)a->peer) * 2 + (size_t)grad] =
                        x->clock;
                    continue;
                }
                if (!mpt_pp_op_is_compute(a->op)) continue; /* receives: posted at their use */
                double start = x->clock;
                int from = grad ? r + 1 : r - 1;
                if (a->op != MPT_PP_W && from >= 0 && from < p) {
                    const rank2_ *y = &rk[from];
                    double t = sent[((size_t)a->mb * (size_t)p + (size_t)r) * 2 + (size_t)grad];
                    double meas = y->rec[o_any + tag], wait = x->rec[o_wait + tag];
                    if (t < 0) { /* not replayed yet: sent in this window, or carried in */
                        int inside = 0;
                        for (size_t i = y->a; i < y->b && !inside; i++)
                            inside = y->l[i].op == (grad ? MPT_PP_SEND_GRAD : MPT_PP_SEND_ACT) &&
                                     y->l[i].mb == a->mb;
                        if (inside) break; /* wait for the sender's replay */
                        if (!(meas > 0)) {
                            st = mpt_fail(err, MPT_ERR_RUN, "2bw window %d replay: rank %d's "
                                          "input of micro-batch %d was never sent", n, r, a->mb);
                            goto done;
                        }
                        t = meas;
                    }
                    double got = x->rec[o_got + tag], from_t = meas > wait ? meas : wait;
                    double comm = got > 0 && meas > 0 && got > from_t ? got - from_t : 0.0;
                    comm += x->rec[o_post + tag];
                    start = fmax(start, fmax(t, x->clock) + comm);
                }
                int k = a->op == MPT_PP_F ? 0 : a->op == MPT_PP_B ? 1 : 2;
                double d = x->rec[o_dur + (size_t)k * (size_t)mw + (size_t)(a->mb % mw)];
                x->clock = start + d;
                x->busy += d;
            }
            if (x->pc < x->b) finished = 0;
        }
        if (finished) break;
        if (!moved) {
            st = mpt_fail(err, MPT_ERR_RUN, "2bw window %d replay deadlocks", n);
            goto done;
        }
    }
    double busy = 0.0, wall = 0.0;
    for (int r = 0; r < p; r++) {
        busy += rk[r].busy;
        if (rk[r].clock - rk[r].win0 > wall) wall = rk[r].clock - rk[r].win0;
    }
    *bubble = wall > 0 ? 1.0 - busy / ((double)p * wall) : -1.0;
done:
    for (int r = 0; rk && r < p; r++) free(rk[r].l);
    free(rk);
    free(sent);
    return st;
}
