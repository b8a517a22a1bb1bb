/* trainer_stats.c — a --schedule 2bw log line's cross-rank figures without a barrier between
 * windows (declared in trainer_internal.h).
 *
 * Without a flush (parallel/pp_2bw.h) the trainer's blocking per-step collectives (the largest
 * arena peak, the CPU seconds, the pipeline's busy sum and longest wall, the records bubble_sim
 * replays, the log write's agreement) hold every rank at its window's end until the last one
 * arrives. The ranks that arrived first then resume late, and the next window waits for what
 * they would have sent meanwhile: idle time the schedule itself does not have. A deferred 2bw
 * line reports window k-1 anyway (mpt_run_2bw_attribute), so window k's figures go into two
 * non-blocking sums, one over the world and one over the pipeline group (each rank fills its
 * own slots, so a sum gathers them), started at window k's end and completed at window k+1's
 * end, by which time the executor's waits have progressed them. Each sum runs on a group of
 * its own (the same ranks), so it never has to be ordered against the trainer's collectives.
 * The segment's first and last windows keep the blocking path (mpt_run_2bw_attribute: they
 * start and end drained, nothing in flight to hold up). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/trainer_internal.h"

enum { STATS_W_ = 3 }; /* per world rank: arena peak, CPU seconds, a failed log write */

int mpt_run_stats_async(const mpt_run *r, long step) {
    long k = step - r->bw.first;
    return r->grads2 && r->o->pp > 1 && !mpt_pp_2bw_ended(&r->bw, step) && k >= 1 &&
           k < r->bw.steps - 1;
}

/* The groups and buffers, on the first use (every rank at the same step; agreed). */
static mpt_status ready_(mpt_run *r, mpt_error *err) {
    mpt_run_stats *s = &r->stats;
    if (s->ready) return MPT_OK;
    mpt_comm *ppc = &r->groups.dim[MPT_DIM_PP];
    s->ready = 1;
    mpt_status st = mpt_comm_split(r->world, 0, r->world->rank, "stats", &s->world, err);
    if (!st) st = mpt_comm_split(ppc, 0, ppc->rank, "stats-pp", &s->pp, err);
    s->wn = (size_t)r->world->size * STATS_W_;
    s->pn = (size_t)ppc->size * mpt_pp_record_len(&r->pp);
    s->wbuf = calloc(s->wn + s->pn, sizeof *s->wbuf);
    if (!st && !s->wbuf) st = mpt_fail(err, MPT_ERR_RUN, "out of memory for the step statistics");
    s->pbuf = s->wbuf ? s->wbuf + s->wn : NULL;
    return mpt_comm_agree(r->world, st, err);
}

/* Completes the reductions in flight: fig = that window's seconds (this rank's), largest peak,
 * CPU sum, pipeline busy sum, longest wall, bubble_sim per action and per stage mean. A failed
 * log write seen in them is agreed on by every rank (they all see it at once). */
static mpt_status complete_(mpt_run *r, double fig[7], mpt_error *err) {
    mpt_run_stats *s = &r->stats;
    mpt_status st = mpt_wait(&s->wreq, err);
    mpt_status st2 = mpt_wait(&s->preq, err);
    s->pending = 0;
    if (st || st2) return st ? st : st2;
    double peak = 0.0, cpu = 0.0, bad = 0.0;
    for (int i = 0; i < r->world->size; i++) {
        const double *x = s->wbuf + (size_t)i * STATS_W_;
        peak = x[0] > peak ? x[0] : peak;
        cpu += x[1];
        bad += x[2];
    }
    if (bad > 0) {
        if (r->rank0 && s->log_st) mpt_fail(err, s->log_st, "%s", s->log_msg);
        st = mpt_comm_agree(r->world, r->rank0 ? s->log_st : MPT_OK, err);
        if (st) return st;
    }
    double costs[64 * MPT_PP_COSTS], busy = 0.0, wall = 0.0, sim[2] = {-1.0, -1.0};
    mpt_pp_record_costs(r->pp.p, r->pp.v, r->pp.mw, s->pbuf, costs, &busy, &wall);
    mpt_error quiet;
    /* pure, on the same records on every rank of the pipeline: failing (out of memory) leaves
     * the line without bubble_sim rather than stopping the run */
    if (mpt_run_2bw_sim(r, (int)s->window, s->pbuf, costs, sim, &quiet))
        sim[0] = sim[1] = -1.0;
    double out[7] = {s->dt, peak, cpu, busy, wall, sim[0], sim[1]};
    memcpy(fig, out, sizeof out);
    return MPT_OK;
}

mpt_status mpt_run_stats_swap(mpt_run *r, long step, double *dt, double *peak, double *cpu,
                              double busy[2], double bubble_sim[2], mpt_error *err) {
    mpt_run_stats *s = &r->stats;
    mpt_status st = ready_(r, err);
    if (st) return st;
    double mine[3] = {*dt, *peak, *cpu};
    if (s->pending) { /* window k-1 */
        double fig[7];
        if ((st = complete_(r, fig, err))) return st;
        *dt = fig[0];
        *peak = fig[1];
        *cpu = fig[2];
        busy[0] = fig[3];
        busy[1] = fig[4];
        bubble_sim[0] = fig[5];
        bubble_sim[1] = fig[6];
    } else { /* k = 1: the second half of window 0 (mpt_run_2bw_attribute's carry) */
        *dt = r->carry[0];
        busy[0] = r->carry[1];
        busy[1] = r->carry[2];
        bubble_sim[0] = r->carry[3];
        bubble_sim[1] = r->carry[4];
        *peak = s->last_peak;
        *cpu = 0.5 * s->last_cpu;
    }
    /* window k's: this rank's slots, summed over the groups while window k+1 runs */
    memset(s->wbuf, 0, (s->wn + s->pn) * sizeof *s->wbuf);
    double *w = s->wbuf + (size_t)r->world->rank * STATS_W_;
    w[0] = mine[1];
    w[1] = mine[2];
    w[2] = r->rank0 && s->log_st ? 1.0 : 0.0;
    mpt_pp_record(&r->pp, s->pbuf + (size_t)r->groups.dim[MPT_DIM_PP].rank *
                                        mpt_pp_record_len(&r->pp));
    s->window = step - r->bw.first;
    s->dt = mine[0];
    s->cpu = mine[2];
    st = mpt_iallreduce_dt(&s->world, s->wbuf, s->wn, MPT_F64, MPT_RED_SUM, &s->wreq, err);
    if (!st) st = mpt_iallreduce_dt(&s->pp, s->pbuf, s->pn, MPT_F64, MPT_RED_SUM, &s->preq, err);
    if (!st) s->pending = 1;
    return st;
}

mpt_status mpt_run_stats_finish(mpt_run *r, double *cpu, mpt_error *err) {
    mpt_run_stats *s = &r->stats;
    if (!s->pending) return MPT_OK;
    double fig[7];
    mpt_status st = complete_(r, fig, err);
    if (st) return st;
    /* the segment's last line reports this window and its own (mpt_run_2bw_attribute) */
    r->carry[0] = fig[0];
    r->carry[1] = fig[3];
    r->carry[2] = fig[4];
    r->carry[3] = fig[5];
    r->carry[4] = fig[6];
    r->carry[5] = fig[2]; /* (the world's CPU of window k-1: mpt_run_2bw_attribute adds it) */
    (void)cpu;
    return MPT_OK;
}

mpt_status mpt_run_stats_log(mpt_run *r, long step, mpt_status st, mpt_error *err) {
    mpt_run_stats *s = &r->stats;
    if (mpt_run_stats_async(r, step)) { /* agreed when the next sums complete */
        if (st && r->rank0 && !s->log_st) {
            s->log_st = st;
            memcpy(s->log_msg, err->msg, sizeof s->log_msg);
        }
        return MPT_OK;
    }
    if (!st && r->rank0 && s->log_st) st = mpt_fail(err, s->log_st, "%s", s->log_msg);
    return mpt_comm_agree(r->world, st, err);
}

void mpt_run_stats_free(mpt_run_stats *s) {
    if (!s || !s->ready) return;
    if (s->pending) return; /* (after an error: reductions in flight keep their buffers) */
    mpt_comm_free(&s->world);
    mpt_comm_free(&s->pp);
    free(s->wbuf);
    memset(s, 0, sizeof *s);
}
