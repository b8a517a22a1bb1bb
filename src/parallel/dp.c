/* dp.c — data parallelism and ZeRO-1/2/3 (see dp.h): the module's buffer list, init/free, the
 * model's hooks and the step protocol; the work itself is in dp_reduce.c (gradient buckets),
 * dp_shard.c (slices, staging, working copies) and dp_optim.c (norm, AdamW). */
#include "parallel/dp_internal.h"
#include "core/kernels.h"

#include <stdlib.h>
#include <string.h>

void mpt_dp_opts_defaults(mpt_dp_opts *o) {
    memset(o, 0, sizeof *o);
    o->bucket_elems = (size_t)4 << 20 >> 2; /* 4 MiB of floats */
    o->held = SIZE_MAX;
}

size_t mpt_dp_unit_align(int R) { return 16 * (size_t)(R > 0 ? R : 1); }

int mpt_dp_gpt_flags(int zero) {
    return zero <= 1 ? MPT_GPT_TRAIN
           : zero == 2 ? (MPT_GPT_PARAMS | MPT_GPT_BACKWARD)
                       : MPT_GPT_BACKWARD;
}

size_t mpt_dp_pool_elems(const mpt_param_table *pt, int split) {
    size_t n[MPT_DP_SLOTS], pool = 0;
    mpt_dp_slot_sizes(pt, split, n);
    for (int s = 0; s < MPT_DP_SLOTS; s++) pool += n[s];
    return pool;
}

static int held_ok_(const mpt_param_table *pt, const mpt_dp_opts *o) {
    return o->held != SIZE_MAX && o->held < pt->n;
}

void mpt_dp_buffers(const mpt_param_table *pt, int R, const mpt_dp_opts *o, mpt_dp *dp,
                    mpt_buflist *l) {
#define DST_(field) (dp ? (void **)&dp->field : NULL)
    int split = o->edp_size > 0, eR = split ? o->edp_size : R, zero = o->zero;
    size_t P = pt->total, S = 0, n[MPT_DP_SLOTS];
    for (int k = 0; k < 2 * pt->n_units; k++) /* the parts' slices */
        S += mpt_dp_part_n(pt, split, k) / (size_t)(split && k % 2 ? eR : R);
    mpt_dp_slot_sizes(pt, split, n);
    mpt_buflist_add(l, "adamw_m", MPT_MEM_OPTIMIZER, MPT_F32, zero == 0 ? P : S, DST_(m));
    mpt_buflist_add(l, "adamw_v", MPT_MEM_OPTIMIZER, MPT_F32, zero == 0 ? P : S, DST_(v));
    if (zero <= 1 && R > 1) { /* the rings' receive buffers: a chunk of the largest bucket */
        int nb, held_unit = held_ok_(pt, o) ? mpt_tensor_unit(pt, &pt->t[o->held]) : -1;
        size_t max_n;
        mpt_dp_buckets_walk(pt, split, R, eR, zero, o->bucket_elems, held_unit, NULL, NULL, &nb,
                            &max_n);
        /* no more buffers than buckets (one bucket of the whole gradient: one buffer) */
        int bufs = nb < MPT_DP_RING_BUFS ? (nb > 0 ? nb : 1) : MPT_DP_RING_BUFS;
        if (dp) dp->n_ring_bufs = bufs;
        for (int k = 0; k < bufs; k++)
            mpt_buflist_add(l, "dp_ring", MPT_MEM_WORKSPACE, MPT_F32, max_n, DST_(ring_buf[k]));
    }
    if (zero >= 2) {
        mpt_buflist_add(l, "grad_slice", MPT_MEM_GRADS, MPT_F32, S, DST_(gshard));
        for (int s = 0; s < MPT_DP_SLOTS; s++) {
            if (s >= 4 && (!split || eR == 1)) continue; /* the expert parts' slots (edp 1:
                                                          * written in the slice directly) */
            mpt_buflist_add(l, "grad_stage", MPT_MEM_GRADS, MPT_F32, n[s], DST_(stage[s]));
            mpt_buflist_add(l, "grad_stage_ring", MPT_MEM_GRADS, MPT_F32,
                            n[s] / (size_t)(s >= 4 ? eR : R), DST_(stage_tmp[s]));
        }
        if (held_ok_(pt, o))
            mpt_buflist_add(l, "held_grad", MPT_MEM_GRADS, MPT_F32, pt->t[o->held].numel,
                            DST_(held_grad));
    }
    if (zero == 3) {
        mpt_buflist_add(l, "param_slice", MPT_MEM_PARAMS, MPT_F32, S, DST_(pshard));
        if (o->z3_whole)
            mpt_buflist_add(l, "param_whole", MPT_MEM_PARAMS, MPT_F32, P, DST_(whole));
        else
            for (int s = 0; s < MPT_DP_SLOTS; s++)
                if (s < 4 || (split && eR > 1))
                    mpt_buflist_add(l, "param_work", MPT_MEM_PARAMS, MPT_F32, n[s],
                                    DST_(work_buf[s]));
    }
#undef DST_
}

/* ---- hooks ----------------------------------------------------------------------------------- */

static mpt_status progress_(mpt_dp *dp, mpt_error *err) {
    return dp->zero <= 1 ? mpt_dp_reduce_progress(dp, err) : mpt_dp_shard_progress(dp, err);
}

static mpt_status hook_need_(void *ctx, int u, mpt_gpt_phase phase, mpt_error *err) {
    mpt_dp *dp = ctx;
    mpt_status st = progress_(dp, err);
    if (st || mpt_dp_unit_n(&dp->model->pt, u) == 0) return st;
    /* the split backward's W reads a block's weights only to recompute its forward */
    int reads = phase != MPT_PHASE_BACKWARD_W || dp->model->recompute == MPT_RECOMPUTE_FULL;
    if (dp->zero == 3 && reads && (st = mpt_dp_gather_unit(dp, u, phase, err))) return st;
    /* gradients are staged by the pass that writes them: the whole backward, or W */
    if (dp->zero >= 2 && (phase == MPT_PHASE_BACKWARD || phase == MPT_PHASE_BACKWARD_W))
        st = mpt_dp_stage_open(dp, u, err);
    return st;
}

static mpt_status hook_grads_done_(void *ctx, int u, mpt_error *err) {
    mpt_dp *dp = ctx;
    if (mpt_dp_unit_n(&dp->model->pt, u) == 0) return MPT_OK;
    if (dp->zero >= 2) return mpt_dp_stage_close(dp, u, err);
    return mpt_dp_reduce_unit_done(dp, u, err);
}

/* ---- set-up ----------------------------------------------------------------------------------- */

mpt_status mpt_dp_init(mpt_dp *dp, mpt_gpt *model, mpt_comm *comm, mpt_comm *tp, mpt_comm *pp,
                       const mpt_dp_opts *o, mpt_arena *arena, mpt_error *err) {
    memset(dp, 0, sizeof *dp);
    const mpt_param_table *pt = &model->pt;
    dp->o = *o;
    dp->o.z3_whole = o->zero == 3 && o->z3_whole;
    if (!held_ok_(pt, o)) dp->o.held = SIZE_MAX;
    dp->comm = comm;
    dp->tp = tp && tp->size > 1 ? tp : NULL;
    dp->pp = pp && pp->size > 1 ? pp : NULL;
    dp->R = comm ? comm->size : 1;
    dp->r = comm ? comm->rank : 0;
    dp->split = o->edp_size > 0;
    dp->ecomm = dp->split && o->edp && o->edp->size > 1 ? o->edp : NULL;
    dp->eR = dp->split ? o->edp_size : dp->R;
    dp->er = dp->ecomm ? dp->ecomm->rank : 0;
    dp->zero = o->zero;
    dp->model = model;
    dp->arena = arena;
    dp->held_unit = dp->o.held != SIZE_MAX ? mpt_tensor_unit(pt, &pt->t[dp->o.held]) : -1;
    mpt_dp_slot_sizes(pt, dp->split, dp->slot_n);
    for (int s = 0; s < MPT_DP_SLOTS; s++) dp->stage_unit[s] = -1;
    mpt_buflist_init(&dp->bufs);
    mpt_status st = MPT_OK;
    if (dp->split && (dp->eR < 1 || dp->R % dp->eR || (o->edp && o->edp->size != dp->eR)))
        st = mpt_fail(err, MPT_ERR_RUN, "dp: an edp group of %d ranks in a dp group of %d",
                      dp->eR, dp->R);
    int np = 2 * pt->n_units;
    if (!st) st = mpt_dp_work_init(dp, err);
    if (!st) {
        dp->b = calloc((size_t)np, sizeof *dp->b);
        dp->unit_bucket = calloc((size_t)np, sizeof *dp->unit_bucket);
        dp->psh = calloc((size_t)np + 1, sizeof *dp->psh);
        if (!dp->b || !dp->unit_bucket || !dp->psh)
            st = mpt_fail(err, MPT_ERR_RUN, "out of memory (buckets)");
    }
    if (!st) {
        for (int k = 0; k < np; k++)
            dp->psh[k + 1] = dp->psh[k] + mpt_dp_part_n(pt, dp->split, k) /
                                              (size_t)mpt_dp_gR(dp, mpt_dp_grp(dp, k));
        dp->shard_n = dp->psh[np];
        mpt_dp_buckets_walk(pt, dp->split, dp->R, dp->eR, dp->zero, dp->o.bucket_elems,
                            dp->held_unit, dp->b, dp->unit_bucket, &dp->n_buckets, &dp->ring_n);
        for (int i = 0; i < dp->n_buckets; i++) dp->b[i].sbegin = dp->psh[dp->b[i].u_lo];
    }
    if (!st && dp->zero >= 1) st = mpt_dp_segments_build(dp, err);
    if (!st) {
        mpt_dp_buffers(pt, dp->R, &dp->o, dp, &dp->bufs);
        st = mpt_buflist_alloc(&dp->bufs, arena, err);
    }
    if (st) {
        mpt_dp_free(dp);
        return st;
    }
    mpt_dp_work_point(dp);
    /* the held gradient is written from the first backward on, whichever unit comes first (zb-v
     * runs the tied head, on the same rank, before the embeddings' unit is opened) */
    if (dp->held_grad) model->g[dp->o.held] = dp->held_grad;
    model->hooks = (mpt_gpt_hooks){.ctx = dp, .need = hook_need_, .grads_done = hook_grads_done_};
    return MPT_OK;
}

void mpt_dp_free(mpt_dp *dp) {
    if (!dp || !dp->model) return;
    mpt_buflist_release(&dp->bufs, dp->arena);
    mpt_buflist_free(&dp->bufs);
    mpt_dp_work_free(dp);
    dp->model->hooks = (mpt_gpt_hooks){0};
    free(dp->b);
    free(dp->unit_bucket);
    free(dp->psh);
    free(dp->seg);
    memset(dp, 0, sizeof *dp);
}

/* ---- the step --------------------------------------------------------------------------------- */

void mpt_dp_begin_step(mpt_dp *dp) {
    if (dp->zero <= 1) mpt_zero(dp->model->grads, dp->model->pt.total); /* threaded */
    else memset(dp->gshard, 0, dp->shard_n * sizeof(float));
    if (dp->held_grad)
        memset(dp->held_grad, 0, dp->model->pt.t[dp->o.held].numel * sizeof(float));
    for (int i = 0; i < dp->n_buckets; i++) {
        dp->b[i].state = MPT_DP_B_IDLE;
        dp->b[i].ring_buf = -1;
        /* the units whose last micro-batch's gradients are still to come (counted here, not
         * when the flag is set: with several chunks per rank the flag is set once per chunk) */
        dp->b[i].waiting = dp->b[i].parts;
    }
    for (int k = 0; k < MPT_DP_RING_BUFS; k++) dp->ring_busy[k] = 0;
    /* parameters changed: regather (mpt_dp_update settled the gathers in flight; after a
     * step without an update one may still be, and start_gather_ waits for it before its slot
     * takes another gather) */
    mpt_dp_work_forget(dp);
    dp->last_microbatch = 0;
}

void mpt_dp_set_last_microbatch(mpt_dp *dp, int last) {
    dp->last_microbatch = last;
}

mpt_status mpt_dp_finish_grads(mpt_dp *dp, mpt_error *err) {
    return dp->zero >= 2 ? mpt_dp_stage_finish(dp, err) : mpt_dp_reduce_finish(dp, err);
}
