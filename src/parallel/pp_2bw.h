/* pp_2bw.h — PipeDream-2BW without the flush (Narayanan et al. 2021): runs the no-flush action
 * list of parallel/schedule_2bw.c (S steps' micro-batches as one 1F1B order) on the pipeline
 * executor, a step at a time, over two weight versions.
 *
 * Semantics (the trainer's --schedule 2bw): every micro-batch of step n runs its forward AND
 * its backward on W(n-1) (weight stashing), and W(n+1) = W(n) - AdamW(gradient of step n): one
 * update per m micro-batches with their averaged gradient, one step stale. Two buffers hold the
 * versions: `live` (the model's params, which the optimizer updates) and `old` (the stash).
 * Before every compute action the model's weight table w[] is pointed at the buffer holding
 * the version its step needs; a third version is never needed when m >= p (checked: it fails).
 * Under ZeRO-3 (pp->dp->zero 3) the versions are the rank's parameter slices instead (live:
 * the dp module's pshard; old: a slice-sized stash): dp->pshard is pointed at the version, and
 * the per-unit gathers (with their prefetch) read it; a switch waits for the gathers in flight
 * and drops the working copies of the other version.
 *
 * A segment is S steps without a flush. mpt_pp_2bw_run(step n) runs this rank's actions up to
 * step n's update point: just before its first backward of step n+1 (whose gradients would mix
 * with step n's) or the end of the list. At that point step n's gradients are complete on this
 * rank and no backward of step n+1 has run; forwards of step n+1 may have (on W(n), in live).
 * The caller then copies live into old (old = W(n)), updates live to W(n+1) and calls run for
 * step n+1. The segment ends drained (the caller puts its ends where it needs a pipeline with
 * nothing in flight: evaluation, checkpoints, the last step).
 *
 *   mpt_pp_2bw_begin(&s, &pp, first, S, params, stash, err);
 *   for (n = first; n < first + S; n++) {
 *       mpt_pp_2bw_run(&s, n, batch, ctx, ..., &loss_sum, err);  // micro-batch g of the segment
 *       memcpy(stash, params, ...); s.ver = n + 1; update(params); //   is (first + g/m, g % m)
 *   }
 *   mpt_pp_2bw_free(&s);
 * Every rank of the pipeline group runs the same segments. */
#ifndef MPT_PP_2BW_H
#define MPT_PP_2BW_H

#include "parallel/pp.h"

typedef struct mpt_pp_2bw {
    mpt_pp *pp;              /* not owned */
    mpt_pp_action *acts;     /* owned: this rank's list for the segment */
    size_t n, pos;           /* its length, and the next action to run */
    long first;              /* the segment's first step */
    int steps;               /* S */
    float *live, *old;       /* not owned: W(ver) and W(ver-1) (params, pt.total; ZeRO-3: the
                              * rank's slices, dp->shard_n) */
    long ver;                /* the version live holds: the caller sets it after each update */
    const float *base;       /* the buffer w[] points at now */
    double loss[2];          /* loss sums of the steps in flight, by step parity */
    long loss_step[2];
    /* the batch callback of the running action: (first + g/m, g % m) */
    mpt_pp_batch_fn batch;
    void *ctx;
    long g;
    long *step_out;          /* where the caller's batch function reads the step (or NULL) */
    /* the deferred update (mpt_pp_2bw_defer): called at each step's update point */
    mpt_status (*grads_done)(void *ctx, long n, double loss_sum, mpt_error *err);
    mpt_status (*update)(void *ctx, long n, mpt_error *err);
    void *hook_ctx;
    long gdone, udone;       /* the last step grads_done / update was called for */
    double hook_s;           /* seconds in those callbacks during the running window */
    long nan_step;           /* testing: this step's forwards get a NaN dloss (-1: none) */
} mpt_pp_2bw;

/* Starts a segment of `steps` steps from step `first` (a drained pipeline; live holds W(first),
 * old W(first-1)). Fails with MPT_ERR_INPUT for a bad size (mpt_pp_schedule_2bw). */
mpt_status mpt_pp_2bw_begin(mpt_pp_2bw *s, mpt_pp *pp, long first, int steps, float *live,
                            float *old, mpt_error *err);
/* Runs this rank's actions up to step n's update point (see above; n = the segment's next
 * step). batch gets the micro-batch within the step, after *step_out = its step. *loss_sum: step
 * n's loss sum (last stage). pp->busy / pp->wall and the F/B/W/message measurements cover this
 * call (a window; the wall without the deferred update's callbacks, the step's reduction and
 * optimizer, which the flushed schedules run outside their window too). At the segment's end, waits for the sends and points w[] at live; under
 * ZeRO-3, dp->pshard points at live at the end of every window (the update writes it). */
mpt_status mpt_pp_2bw_run(mpt_pp_2bw *s, long n, mpt_pp_batch_fn batch, void *ctx,
                          long *step_out, int32_t *inputs, int32_t *targets, int Bm, int T,
                          float dloss, double *loss_sum, mpt_error *err);
/* The deferred update, so that no rank waits for another at a step's end. run(n) then calls
 * grads_done(ctx, k, loss of k) at every step k's update point it passes (step k's gradients
 * complete on this rank; the callback moves them aside, e.g. to a second gradient buffer, and
 * starts non-blocking reductions), and update(ctx, k) before this rank's first forward of step
 * k+2, the first action that needs W(k+1) (by then the reductions have had the intervening
 * actions' time to arrive; at the segment's end after its last action). It returns at the end
 * of window n (mpt_pp_2bw_window_ends: about the same moment on every rank, so that the
 * caller's per-step collectives find the others there), having updated step n. */
void mpt_pp_2bw_defer(mpt_pp_2bw *s, mpt_status (*grads_done)(void *, long, double, mpt_error *),
                      mpt_status (*update)(void *, long, mpt_error *), void *ctx);
/* 1 when step n is not in the running segment (none began, or n is past its last step): the
 * caller begins the next one. */
int mpt_pp_2bw_ended(const mpt_pp_2bw *s, long n);
/* Safe on a zeroed or freed state. Points w[] back at live. */
void mpt_pp_2bw_free(mpt_pp_2bw *s);

#endif
