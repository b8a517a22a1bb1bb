/* schedule_2bw.c — PipeDream-2BW without the flush (Narayanan et al. 2021), as action lists and
 * their simulation (see schedule.h, mpt_pp_schedule_2bw); the trainer runs these lists
 * (parallel/pp_2bw.h), and mpt_pp_2bw_window_bubble replays them a step (window) at a time. */
#include "parallel/schedule.h"

#include <stdlib.h>
#include <string.h>

mpt_status mpt_pp_schedule_2bw(int p, int m, int steps, int rank, mpt_pp_action **out,
                               size_t *n, mpt_error *err) {
    if (steps < 1 || m < 1 || m > (1 << 20) / steps)
        return mpt_fail(err, MPT_ERR_INPUT, "2bw over %d steps of %d micro-batches: use 1..%d "
                        "steps", steps, m, m > 0 ? (1 << 20) / m : 0);
    /* one 1F1B order over every micro-batch of the steps: step n+1's forwards enter while
     * step n's backwards still run; micro-batch g belongs to step g / m */
    return mpt_pp_schedule(MPT_PP_2BW, p, m * steps, 1, rank, out, n, err);
}

mpt_status mpt_pp_2bw_simulate(int p, int m, int steps, const double cost[MPT_PP_COSTS],
                               mpt_pp_2bw_report *rep, mpt_error *err) {
    memset(rep, 0, sizeof *rep);
    mpt_pp_action *a = NULL;
    size_t na = 0;
    mpt_status st = mpt_pp_schedule_2bw(p, m, steps, 0, &a, &na, err); /* checks the sizes */
    free(a);
    if (st) return st;
    mpt_pp_timeline t, one;
    memset(&one, 0, sizeof one);
    st = mpt_pp_simulate(MPT_PP_2BW, p, m * steps, 1, cost, &t, err);
    if (st) return st;
    if ((st = mpt_pp_simulate(MPT_PP_2BW, p, m, 1, cost, &one, err))) {
        mpt_pp_timeline_free(&t);
        return st;
    }
    rep->bubble = t.bubble;
    rep->bubble_flush = one.bubble; /* every step drained: each step's bubble is one's */
    rep->makespan = t.makespan;
    /* per step: the latest end of its B and the earliest start of its F over all ranks */
    double *b_end = calloc((size_t)steps, sizeof *b_end);
    double *f_start = calloc((size_t)steps, sizeof *f_start);
    char *seen = calloc((size_t)steps, 1);
    if (!b_end || !f_start || !seen) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory simulating 2bw");
        goto done;
    }
    for (int r = 0; r < p; r++) {
        int *count = calloc((size_t)steps, sizeof *count);
        if (!count) {
            st = mpt_fail(err, MPT_ERR_RUN, "out of memory simulating 2bw");
            goto done;
        }
        for (size_t i = t.first[r]; i < t.first[r + 1]; i++) {
            const mpt_pp_event *e = &t.ev[i];
            int s = e->a.mb / m;
            if (e->a.op == MPT_PP_F) {
                if (!seen[s] || e->start < f_start[s]) f_start[s] = e->start;
                seen[s] = 1;
                count[s]++;
            } else if (e->a.op == MPT_PP_B) {
                if (e->end > b_end[s]) b_end[s] = e->end;
                count[s]--;
            }
            int versions = 0; /* steps with a micro-batch forwarded and not yet backwarded */
            for (int k = 0; k < steps; k++) versions += count[k] > 0;
            if (versions > rep->versions) rep->versions = versions;
        }
        free(count);
    }
    /* step n+1 runs on W(n) = W(n-1) - AdamW(gradient of step n-1): that update (with its norm
     * over every rank) must be done before any rank's first forward of step n+1 */
    rep->slack = steps > 2 ? 1e300 : 0.0;
    for (int n = 1; n + 1 < steps; n++) {
        double s = f_start[n + 1] - b_end[n - 1];
        if (s < rep->slack) rep->slack = s;
    }
done:
    free(b_end);
    free(f_start);
    free(seen);
    mpt_pp_timeline_free(&t);
    mpt_pp_timeline_free(&one);
    return st;
}

int mpt_pp_2bw_window_ends(int p, int m, int rank, int n, int op, int mb) {
    if (rank == p - 1) return (op == MPT_PP_F || op == MPT_PP_B) && mb / m >= n + 2;
    int shift = (2 * (p - 2 - rank) + 1) / 3;
    return op == MPT_PP_B && mb >= (n + 2) * m - 1 - shift;
}

mpt_status mpt_pp_2bw_window_bubble(int p, int m, int steps, int n, int deferred,
                                    const double *costs, double *bubble, mpt_error *err) {
    *bubble = -1.0;
    if (n < 0 || n >= steps)
        return mpt_fail(err, MPT_ERR_INPUT, "2bw window %d of %d steps", n, steps);
    /* window n ends before the first B of step n+1 (deferred: the first F of step n+2) */
    int ahead = deferred ? 2 : 1;
    if (deferred && steps > 1 && n == steps - 1) return MPT_OK; /* empty: n-1's ran to the end */
    /* the steady state repeats: a middle window is simulated as window min(n, 1) of as few
     * steps as keep it one, the one reaching the end as the last of at most 3 */
    int last = n + ahead >= steps, target, sim;
    if (last) {
        sim = steps < 3 ? steps : 3;
        target = sim - (steps - n);
    } else {
        target = n < 1 ? n : 1;
        sim = target + ahead + 1;
    }
    mpt_pp_timeline t;
    mpt_status st = mpt_pp_simulate_replay(MPT_PP_2BW, p, m * sim, 1, costs, &t, err);
    if (st) return st;
    double busy = 0.0, wall = 0.0;
    for (int r = 0; r < p; r++) {
        double prev_end = 0.0, w_start = 0.0, w_end = 0.0, b = 0.0;
        int w = 0;
        for (size_t i = t.first[r]; i < t.first[r + 1]; i++) {
            const mpt_pp_event *e = &t.ev[i];
            int s = e->a.mb / m;
            while (deferred ? w < sim - 2 && mpt_pp_2bw_window_ends(p, m, r, w, e->a.op, e->a.mb)
                            : e->a.op != MPT_PP_F && s > w) { /* window w ends before this */
                if (w == target) w_end = prev_end;
                w++;
                if (w == target) w_start = prev_end;
            }
            if (w == target) b += e->end - e->start;
            prev_end = e->end;
        }
        if (w == target) w_end = prev_end;
        busy += b;
        if (w_end - w_start > wall) wall = w_end - w_start;
    }
    *bubble = wall > 0 ? 1.0 - busy / ((double)p * wall) : -1.0;
    mpt_pp_timeline_free(&t);
    return MPT_OK;
}
