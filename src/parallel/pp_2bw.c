/* pp_2bw.c — PipeDream-2BW's no-flush list on the pipeline executor, a step at a time, over two
 * weight versions (see pp_2bw.h). */
#include "parallel/pp_2bw.h"

#include "parallel/dp_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Points the model at one version: its weight table w[] at a full buffer laid out by pt, or
 * under ZeRO-3 the data-parallel module's parameter slice at a slice buffer (dp->shard_n), from
 * which its hooks gather each unit. The working copies gathered from the other version are
 * dropped (after the gathers in flight land: every rank of the dp group runs the same actions,
 * so they switch at the same points and their collectives stay matched). */
static mpt_status point_(mpt_pp_2bw *s, const float *base, mpt_error *err) {
    mpt_gpt *m = s->pp->model;
    mpt_dp *dp = s->pp->dp;
    if (s->base == base) return MPT_OK;
    if (dp && dp->zero == 3) {
        mpt_status st = mpt_dp_settle(dp, err);
        if (st) return st;
        dp->pshard = (float *)base;
    } else {
        for (size_t i = 0; i < m->pt.n; i++) m->w[i] = (float *)base + m->pt.t[i].offset;
    }
    s->base = base;
    return MPT_OK;
}

/* The executor's batch callback: the running action's step and micro-batch within it. */
static void batch_(void *ctx, int mb, int32_t *inputs, int32_t *targets) {
    mpt_pp_2bw *s = ctx;
    (void)mb; /* the executor's entry (g % 2m); the segment's g is s->g */
    if (s->step_out) *s->step_out = s->first + s->g / s->pp->m;
    s->batch(s->ctx, (int)(s->g % s->pp->m), inputs, targets);
}

mpt_status mpt_pp_2bw_begin(mpt_pp_2bw *s, mpt_pp *pp, long first, int steps, float *live,
                            float *old, mpt_error *err) {
    mpt_pp_2bw_free(s);
    memset(s, 0, sizeof *s);
    mpt_status st = mpt_pp_schedule_2bw(pp->p, pp->m, steps, pp->stage, &s->acts, &s->n, err);
    if (st) return st;
    mpt_pp_recv_at_use(s->acts, s->n); /* (as mpt_pp_init's single-chunk lists) */
    s->pp = pp;
    s->first = first;
    s->steps = steps;
    s->live = live;
    s->old = old;
    s->ver = first;
    s->base = live; /* (between segments w[] points at live) */
    s->loss_step[0] = s->loss_step[1] = -1;
    s->gdone = s->udone = first - 1;
    s->nan_step = -1;
    pp->inputs_mb = -1;
    return MPT_OK;
}

void mpt_pp_2bw_defer(mpt_pp_2bw *s, mpt_status (*grads_done)(void *, long, double, mpt_error *),
                      mpt_status (*update)(void *, long, mpt_error *), void *ctx) {
    s->grads_done = grads_done;
    s->update = update;
    s->hook_ctx = ctx;
}

/* (The callbacks' time is the step's reduction and optimizer, which the flushed schedules run
 * outside their window: it is left out of the window's wall, see mpt_pp_2bw_run.) */
static mpt_status update_(mpt_pp_2bw *s, long n, mpt_error *err) {
    double t0 = mpt_comm_clock();
    s->udone = n;
    mpt_status st = s->update(s->hook_ctx, n, err);
    s->hook_s += mpt_comm_clock() - t0;
    return st;
}

/* Step n's update point: its loss and the callback. */
static mpt_status grads_done_(mpt_pp_2bw *s, long n, mpt_error *err) {
    double t0 = mpt_comm_clock();
    s->gdone = n;
    mpt_status st =
        s->grads_done(s->hook_ctx, n, s->loss_step[n & 1] == n ? s->loss[n & 1] : 0.0, err);
    s->hook_s += mpt_comm_clock() - t0;
    return st;
}

int mpt_pp_2bw_ended(const mpt_pp_2bw *s, long n) {
    return !s->acts || n >= s->first + s->steps;
}

mpt_status mpt_pp_2bw_run(mpt_pp_2bw *s, long n, mpt_pp_batch_fn batch, void *ctx,
                          long *step_out, int32_t *inputs, int32_t *targets, int Bm, int T,
                          float dloss, double *loss_sum, mpt_error *err) {
    mpt_pp *pp = s->pp;
    int m = pp->m, window = pp->mw / pp->v;
    mpt_status st = MPT_OK;
    int ran = 0;
    *loss_sum = 0.0;
    if (!s->acts || n < s->first || n >= s->first + s->steps)
        return mpt_fail(err, MPT_ERR_RUN, "2bw: step %ld is not in the running segment", n + 1);
    s->batch = batch;
    s->ctx = ctx;
    s->step_out = step_out;
    mpt_pp_window_begin(pp);
    s->hook_s = 0.0;
    double start = mpt_comm_clock();
    for (; s->pos < s->n; s->pos++) {
        const mpt_pp_action *a = &s->acts[s->pos];
        long step = s->first + a->mb / m;
        int compute = mpt_pp_op_is_compute(a->op);
        if (compute && !s->grads_done && a->op != MPT_PP_F && step > n)
            break; /* step n's update point */
        if (compute && s->grads_done) { /* deferred: see mpt_pp_2bw_defer */
            int k = (int)(n - s->first); /* (window steps-2 runs to the end) */
            if (a->op == MPT_PP_F && step - 2 > s->udone && (st = update_(s, step - 2, err)))
                return st;
            if (a->op != MPT_PP_F && step - 1 > s->gdone && (st = grads_done_(s, step - 1, err)))
                return st;
            if (k < s->steps - 2 && mpt_pp_2bw_window_ends(pp->p, m, pp->stage, k, a->op, a->mb))
                break;
        }
        ran += compute;
        if (compute) { /* the version its step runs on: W(step - 1) */
            long need = step - 1;
            if (need != s->ver && need != s->ver - 1)
                return mpt_fail(err, MPT_ERR_RUN,
                                "2bw: pipeline stage %d needs weight version %ld while it holds "
                                "%ld and %ld (more micro-batches than stages are needed: "
                                "--microbatches >= --pp)",
                                pp->stage, need, s->ver - 1, s->ver);
            if ((st = point_(s, need == s->ver ? s->live : s->old, err))) return st;
        }
        int slot = (int)(step & 1);
        if (s->loss_step[slot] != step) {
            s->loss_step[slot] = step;
            s->loss[slot] = 0.0;
        }
        mpt_pp_action ra = *a; /* the executor's entry: two steps' micro-batches */
        ra.mb = a->mb % window;
        s->g = a->mb;
        float dl = step == s->nan_step ? NAN : dloss;
        if ((st = mpt_pp_act(pp, &ra, batch_, s, inputs, targets, Bm, T, dl, &s->loss[slot],
                             err)))
            return st;
    }
    if (s->pos == s->n) { /* the segment's end: drained */
        st = mpt_pp_sends_done(pp, err);
        /* the last step's, in its own (empty) window: its gradient buffer is the one step
         * n-1's update (after this window) still reads */
        long last = s->first + s->steps - 1;
        if (!st && s->grads_done && last - 1 >= s->first && n >= last - 1 && s->udone < last - 1)
            st = update_(s, last - 1, err);
        if (!st && s->grads_done && n == last && s->gdone < n) st = grads_done_(s, n, err);
        if (!st && s->grads_done && n == last && s->udone < n) st = update_(s, n, err);
    }
    /* w[] may stay on the stash (the caller's update writes params); ZeRO-3's update writes
     * the slice dp->pshard points at: back to live */
    if (!st && (s->pos == s->n || (pp->dp && pp->dp->zero == 3))) st = point_(s, s->live, err);
    pp->model->cur = &pp->model->own;
    if (s->loss_step[n & 1] == n) *loss_sum = s->loss[n & 1];
    /* 0: an empty window (no bubble); the deferred update's callbacks are not pipeline time */
    pp->wall = ran ? mpt_comm_clock() - start - s->hook_s : 0.0;
    return st;
}

void mpt_pp_2bw_free(mpt_pp_2bw *s) {
    if (!s) return;
    if (s->pp && s->live && s->base != s->live) { /* (after an error: no wait) */
        mpt_dp *dp = s->pp->dp;
        if (dp && dp->zero == 3) {
            dp->pshard = s->live;
            mpt_dp_work_forget(dp);
        } else {
            mpt_gpt *m = s->pp->model;
            for (size_t i = 0; i < m->pt.n; i++) m->w[i] = s->live + m->pt.t[i].offset;
        }
    }
    free(s->acts);
    memset(s, 0, sizeof *s);
}
