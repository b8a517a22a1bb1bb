/* trainer_2bw.c — --schedule 2bw's deferred update: no rank waits for another at a step's end.
 *
 * Without a flush the pipeline ranks reach a step's end at different times: the last stage
 * finishes its backwards of step n about (p-1) backwards before the first stage does, and
 * then at once wants to start step n+1's (parallel/pp_2bw.h). A blocking reduction there (the
 * global gradient norm, the tied embedding's gradient sum) would hold it until the first
 * stage arrives, every step. So, when deferred (mpt_run_2bw_deferred), each rank at its update
 * point of step n (grads_done_, called by the executor):
 *   - with replicas (dp x cp > 1), finishes the dp reduction its last backward started (the
 *     replicas of a stage run the same actions: they arrive together) and sums the loss over
 *     dp and cp;
 *   - swaps its gradient buffer for a second one (step n+1's backwards accumulate there);
 *   - starts the tied wte's sum: the last stage sends its replica's copy of the gradient to
 *     the first, which (the later of the two) adds it before its dp reduction and sends the
 *     whole reduced sum back (ZeRO-1: its slices all-gathered first);
 *   - computes this stage's squared norm (over tp, in step) and starts one non-blocking sum of
 *     (loss, squared norm, non-finite flag) over the pipeline group;
 * and finishes the update where W(n+1) is first needed (update_: before its first forward of
 * step n+2), by which time every message has long arrived: stash <- W(n), AdamW on step n's
 * buffer. The executor returns to the trainer's loop (its per-step collectives) at the end of
 * window n, about the same moment on every rank (schedule.h, mpt_pp_2bw_window_ends). The numbers are those of the blocking path (the same sums), so pp 2 equals
 * one rank and the serial simulation (t_pp_2bw.sh). Deferred when pp > 1, dense, ZeRO 0/1 (any
 * dp, cp; plan/stage_plan.c); otherwise trainer.c's step_ updates at the update point. */
#include <math.h>
#include <string.h>
#include <time.h>

#include "parallel/tied.h"
#include "plan/stage_plan.h"
#include "train/trainer_internal.h"

int mpt_run_2bw_deferred(const mpt_train_opts *o, const mpt_config *cfg) {
    return o->schedule && strcmp(o->schedule, "2bw") == 0 &&
           mpt_stage_2bw_deferred(o->pp, o->dp, o->cp, o->zero, cfg->experts);
}

float *mpt_run_2bw_live(const mpt_run *r) {
    return r->dp.zero == 3 ? r->dp.pshard : r->model.params;
}

size_t mpt_run_2bw_version_n(const mpt_run *r) {
    return r->dp.zero == 3 ? r->dp.shard_n : r->model.pt.total;
}

/* Points where the step's gradients accumulate at another buffer: the model's gradient table
 * at a full buffer laid out by pt (ZeRO 0/1), or the dp module's gradient slice and held
 * (tied wte) gradient at a slice and a whole-tensor buffer (ZeRO-2). */
static void point_grads_(mpt_run *r, float *base, float *held) {
    mpt_gpt *m = &r->model;
    if (r->dp.zero == 2) {
        r->dp.gshard = base;
        if (held) m->g[r->dp.o.held] = r->dp.held_grad = held;
        return;
    }
    m->grads = base;
    for (size_t i = 0; i < m->pt.n; i++) m->g[i] = base + m->pt.t[i].offset;
}

enum { TIED_TAG_ = 30000 };

int mpt_run_2bw_segment(const mpt_run *r, long a) {
    const mpt_train_opts *o = r->o;
    long b = a + 1;
    /* drained every step: m < p (a third version would be in flight); MoE, whose per-step
     * statistics (aux loss, expert loads) are summed from the model between steps */
    if (r->pp.m < r->pp.p || r->cfg.experts > 0) return 1;
    while (b < o->steps && b - a < 1024 && !(o->eval_every > 0 && b % o->eval_every == 0) &&
           !(o->save_dir && o->save_every > 0 && b % o->save_every == 0))
        b++;
    return (int)(b - a);
}

void mpt_run_2bw_free(mpt_run *r) {
    mpt_run_stats_free(&r->stats);
    mpt_pp_2bw_free(&r->bw);
    if (r->grads1) point_grads_(r, r->grads1, r->held1);
}


/* The executor's callback at step n's update point (see above). */
static mpt_status grads_done_(void *ctx, long n, double loss_sum, mpt_error *err) {
    mpt_run *r = ctx;
    const mpt_train_opts *o = r->o;
    mpt_gpt *m = &r->model;
    mpt_status st = MPT_OK;
    mpt_2bw_defer *d = &r->defer[n & 1];
    if (o->nan_step == n + 1 && !o->nan_grad && r->world->rank == r->world->size - 1)
        loss_sum = NAN; /* testing (--debug-nan) */
    int z2 = r->dp.zero == 2;
    d->grads = z2 ? r->dp.gshard : m->grads;
    d->held = r->dp.held_grad;
    mpt_dp_pre_reduce_fn tied = r->dp.o.pre_reduce; /* the tied wte: one copy on each end */
    const mpt_tensor *t = tied ? &m->pt.t[mpt_tied_tensor(&m->pt)] : NULL;
    /* (ZeRO-2: the whole gradient held through the step, which the reduction leaves as is) */
    float *g = t ? (z2 ? d->held : m->grads + t->offset) : NULL;
    float *tmp = t ? r->stash + t->offset : NULL;
    if (t && r->embed.rank == 1) { /* this replica's copy (from the stash, W(n-1): free), before
                                    * the dp reduction below changes g */
        memcpy(tmp, g, t->numel * sizeof(float));
        st = mpt_isend(&r->embed, tmp, t->numel, 0, TIED_TAG_, &d->tied, err);
    } else if (t) { /* this replica's sum of the two copies, then reduced over dp with its unit */
        st = mpt_recv(&r->embed, tmp, t->numel, 1, TIED_TAG_, err);
        for (size_t i = 0; !st && i < t->numel; i++) g[i] += tmp[i];
    }
    /* dp (x cp) > 1: the replicas' sums, started during the last micro-batch's backward and
     * finished here (the replicas of a stage run the same actions, so none waits for another
     * stage); the held tied unit without pre_reduce (done above) */
    r->dp.o.pre_reduce = NULL;
    if (!st) st = mpt_dp_finish_grads(&r->dp, err);
    r->dp.o.pre_reduce = tied;
    if (!st && t && r->embed.rank == 0) { /* the whole sum back to the last stage (ZeRO-1 left
                                           * only this rank's slice of it: gathered; ZeRO-2:
                                           * this replica's, summed over dp there) */
        st = mpt_dp_gather_grads_unit(&r->dp, r->dp.held_unit, err);
        if (!st) st = mpt_isend(&r->embed, g, t->numel, 1, TIED_TAG_ + 1, &d->tied, err);
    }
    /* the loss: the last stage's replicas (and cp ranks, their tokens) hold parts */
    mpt_comm *dpc = &r->groups.dim[MPT_DIM_DP], *cpc = &r->groups.dim[MPT_DIM_CP];
    if (!st && dpc->size > 1) st = mpt_allreduce_sum_f64(dpc, &loss_sum, 1, err);
    if (!st && cpc->size > 1) st = mpt_allreduce_sum_f64(cpc, &loss_sum, 1, err);
    double norm = 0.0;
    mpt_comm *save = r->dp.pp; /* this stage's part: the pipeline's sum is the one below */
    r->dp.pp = NULL;
    if (!st) st = mpt_dp_grad_norm(&r->dp, &norm, err);
    r->dp.pp = save;
    int32_t bad = !isfinite(loss_sum);
    mpt_comm *tpc = &r->groups.dim[MPT_DIM_TP];
    if (!st && tpc->size > 1) st = mpt_allreduce_dt(tpc, &bad, 1, MPT_I32, MPT_RED_MAX, err);
    d->vals[0] = loss_sum;
    d->vals[1] = norm * norm;
    d->vals[2] = bad;
    if (!st) st = mpt_iallreduce_dt(&r->groups.dim[MPT_DIM_PP], d->vals, 3, MPT_F64, MPT_RED_SUM,
                                    &d->red, err);
    /* the buffer switched to held step n-1's gradients: its tied sum has gone by now */
    if (!st) st = mpt_wait(&r->defer[(n + 1) & 1].tied, err);
    if (st) return st;
    point_grads_(r, d->grads == r->grads2 ? r->grads1 : r->grads2,
                 d->held == r->held2 ? r->held1 : r->held2);
    mpt_dp_begin_step(&r->dp);
    return MPT_OK;
}

/* The executor's callback where W(n+1) is first needed: step n's update (see above). */
static mpt_status update_(void *ctx, long n, mpt_error *err) {
    mpt_run *r = ctx;
    const mpt_train_opts *o = r->o;
    mpt_gpt *m = &r->model;
    mpt_2bw_defer *d = &r->defer[n & 1];
    mpt_status st;
    if ((st = mpt_wait(&d->red, err))) return st;
    /* the last stage's send of its copy's gradient is long received (the first stage's sum
     * needed it); the first stage's send of the sum is waited when its buffer is zeroed */
    if (r->embed.rank == 1 && (st = mpt_wait(&d->tied, err))) return st;
    if (r->dp.o.pre_reduce && r->embed.rank == 1) { /* the sum, from the first stage */
        const mpt_tensor *t = &m->pt.t[mpt_tied_tensor(&m->pt)];
        float *into = r->dp.zero == 2 ? d->held : d->grads + t->offset;
        if ((st = mpt_recv(&r->embed, into, t->numel, 0, TIED_TAG_ + 1, err))) return st;
        if (r->dp.zero == 2) { /* the replicas' sums, and this rank's slice of the total */
            if (r->dp.R > 1 &&
                (st = mpt_allreduce_dt(r->dp.comm, into, t->numel, MPT_F32, MPT_RED_SUM, err)))
                return st;
            int grp;
            size_t x0, x1, at;
            mpt_dp_owned(&r->dp, t, -1, &grp, &x0, &x1, &at);
            memcpy(d->grads + at, into + (x0 - t->offset), (x1 - x0) * sizeof(float));
        }
    }
    d->loss = d->vals[0] / ((double)o->batch * r->T);
    d->norm = sqrt(d->vals[1]);
    d->lr = mpt_adamw_lr(r->opt, n);
    int bad0 = !isfinite(d->loss) || d->vals[2] > 0, bad1 = !isfinite(d->norm);
    if ((bad0 || bad1) && !o->on_nan_skip)
        return mpt_fail(err, MPT_ERR_RUN,
                        "the %s became non-finite at step %ld: lower --lr or check the data "
                        "(--on-nan skip skips such steps); nothing of this step was saved and "
                        "the last checkpoint is intact",
                        bad0 ? "loss" : "gradient norm", n + 1);
    d->skipped = bad0 ? 1 : bad1 ? 2 : 0;
    /* W(n) to the stash (step n+1's micro-batches in flight run on it); params -> W(n+1) */
    memcpy(r->stash, mpt_run_2bw_live(r), mpt_run_2bw_version_n(r) * sizeof(float));
    r->bw.ver = n + 1;
    if (d->skipped) return MPT_OK;
    double t0 = mpt_comm_clock();
    /* the optimizer reads model->grads (ZeRO-2: dp.gshard): step n's buffer for this call */
    float **gp = r->dp.zero == 2 ? &r->dp.gshard : &m->grads, *cur = *gp;
    *gp = d->grads;
    st = mpt_dp_update(&r->dp, r->opt, d->lr, mpt_clip_factor(r->opt, d->norm), n + 1, err);
    *gp = cur;
    mpt_trace_add(&r->trace, MPT_TRACE_COMPUTE, "optimizer", NULL, -1, t0, mpt_comm_clock());
    return st;
}

mpt_status mpt_run_2bw_sim(const mpt_run *r, int n, const double *recs, const double *costs,
                           double sim[2], mpt_error *err) {
    mpt_status st = mpt_pp_2bw_window_bubble(r->pp.p, r->pp.m, r->bw.steps, n,
                                             r->grads2 != NULL, costs, &sim[1], err);
    if (!st) st = mpt_pp_2bw_replay_bubble(r->pp.p, r->pp.m, r->bw.steps, n, r->grads2 != NULL,
                                           recs, &sim[0], err);
    return st;
}

void mpt_run_2bw_attribute(mpt_run *r, long step, double *dt, double *cpu, double busy[2],
                           double bubble_sim[2]) {
    long k = step - r->bw.first;
    int S = r->bw.steps;
    if (!r->grads2 || S < 2) return;
    double here[6] = {*dt, busy[0], busy[1], bubble_sim[0], bubble_sim[1], *cpu};
    if (k == 0) { /* the fill and the first two steps' work: half each to steps 0 and 1 (the
                   * CPU seconds too: the line's cpu_share is over its half of the time) */
        for (int i = 0; i < 3; i++) here[i] *= 0.5;
        here[5] *= 0.5;
        memcpy(r->carry, here, sizeof here);
    } else { /* window k-1's figures; the last line adds its own (its update) */
        memcpy(here, r->carry, sizeof here); /* (its CPU: mpt_run_stats_finish's, or window
                                              * 0's half) */
        if (k < S - 1) {
            r->carry[0] = *dt;
            r->carry[1] = busy[0];
            r->carry[2] = busy[1];
            r->carry[3] = bubble_sim[0];
            r->carry[4] = bubble_sim[1];
            r->carry[5] = *cpu;
        } else {
            here[0] += *dt;
            here[1] += busy[0];
            here[2] += busy[1];
            here[5] += *cpu;
        }
    }
    *dt = here[0];
    busy[0] = here[1];
    busy[1] = here[2];
    bubble_sim[0] = here[3];
    bubble_sim[1] = here[4];
    *cpu = here[5];
}

mpt_status mpt_run_2bw_step(mpt_run *r, const mpt_adamw *opt, long step, double *loss,
                            double *norm, float *lr, double busy[2], int *skipped,
                            mpt_error *err) {
    const mpt_train_opts *o = r->o;
    int B = o->batch, T = r->T;
    float dloss = 1.0f / ((float)B * (float)T);
    double loss_sum = 0.0;
    mpt_status st;
    r->step = step;
    r->opt = opt;
    mpt_comm_set_step(step + 1);
    if (o->stall_step == step + 1 && o->stall_rank == r->world->rank) {
        struct timespec ts = {(time_t)o->stall_seconds, 0};
        nanosleep(&ts, NULL);
    }
    if (mpt_pp_2bw_ended(&r->bw, step)) {
        mpt_dp_begin_step(&r->dp); /* (then at each update point, for the next step) */
        if ((st = mpt_pp_2bw_begin(&r->bw, &r->pp, step, mpt_run_2bw_segment(r, step),
                                   mpt_run_2bw_live(r), r->stash, err)))
            return st;
        mpt_pp_2bw_defer(&r->bw, grads_done_, update_, r);
    }
    if (o->nan_grad && r->world->rank == r->world->size - 1) /* testing (--debug-nan grad) */
        r->bw.nan_step = o->nan_step - 1;
    st = mpt_pp_2bw_run(&r->bw, step, mpt_run_batch, r, &r->step, r->inputs, r->targets, r->Bm,
                        r->Tl, dloss, &loss_sum, err);
    r->step = step;
    busy[0] = r->pp.busy;
    busy[1] = r->pp.wall;
    if (st) return st;
    const mpt_2bw_defer *d = &r->defer[step & 1];
    if (r->bw.udone < step)
        return mpt_fail(err, MPT_ERR_RUN, "2bw: step %ld was not updated in its window", step + 1);
    *loss = d->loss;
    *norm = d->norm;
    *lr = d->lr;
    *skipped = d->skipped;
    return MPT_OK;
}
