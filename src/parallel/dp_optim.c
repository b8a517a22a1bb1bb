/* dp_optim.c — the optimizer over flat shards (see dp.h): the global gradient norm (exact under
 * any sharding: every element counted once over dp, tp and pp) and AdamW (core/adamw.h) on
 * what this rank owns: every tensor (zero 0) or the segments of its slices (zero >= 1), after
 * which zero 1/2 all-gather the updated parameter slices by ring (zero 3 keeps only slices). */
#include <math.h>

#include "parallel/dp_internal.h"

enum { GATHER_TAG = 20000 };

mpt_status mpt_dp_grad_norm(mpt_dp *dp, double *norm, mpt_error *err) {
    /* Tensors replicated over tensor parallelism are counted on tp rank 0 only; the tied wte's
     * copy on the last pipeline stage is counted at the first. */
    int count_replicated = !dp->tp || dp->tp->rank == 0;
    const mpt_param_table *pt = &dp->model->pt;
    double sq = 0.0;
    if (dp->zero == 0) {
        for (size_t i = 0; i < pt->n; i++)
            if ((count_replicated || pt->t[i].split != MPT_SPLIT_NONE) && !pt->t[i].is_copy)
                sq += mpt_sum_squares(dp->model->grads + pt->t[i].offset, pt->t[i].numel);
    } else {
        for (int i = 0; i < dp->n_seg; i++) {
            const mpt_dp_segment *s = &dp->seg[i];
            if ((!count_replicated && s->replicated) || s->is_copy) continue;
            /* zero 1: the ring left the summed slice in place */
            const float *g = dp->zero == 1 ? dp->model->grads + s->flat : dp->gshard + s->shard;
            sq += mpt_sum_squares(g, s->n);
        }
    }
    mpt_status st = MPT_OK;
    if (dp->tp) st = mpt_allreduce_sum_f64(dp->tp, &sq, 1, err);
    if (!st && dp->pp) st = mpt_allreduce_sum_f64(dp->pp, &sq, 1, err); /* every stage's layers */
    if (!st && dp->zero >= 1 && dp->R > 1) st = mpt_allreduce_sum_f64(dp->comm, &sq, 1, err);
    *norm = sqrt(sq);
    return st;
}

mpt_status mpt_dp_gather_grads_unit(mpt_dp *dp, int u, mpt_error *err) {
    mpt_status st = MPT_OK;
    if (dp->zero != 1 || dp->R == 1 || u < 0) return MPT_OK;
    for (int k = 2 * u; k <= 2 * u + 1 && !st; k++) {
        int i = dp->unit_bucket[k];
        if (i < 0 || mpt_dp_gR(dp, dp->b[i].grp) == 1) continue;
        mpt_dp_bucket *b = &dp->b[i];
        st = mpt_ring_start(&b->gring, mpt_dp_gcomm(dp, b->grp), MPT_RING_ALLGATHER,
                            dp->model->grads + b->begin, b->n, NULL, GATHER_TAG + i % 10000, err);
        if (!st) st = mpt_ring_wait(&b->gring, err);
    }
    return st;
}

mpt_status mpt_dp_update(mpt_dp *dp, const mpt_adamw *opt, float lr, float clip, long t,
                         mpt_error *err) {
    mpt_gpt *m = dp->model;
    const mpt_param_table *pt = &m->pt;
    if (dp->zero == 0) {
        for (size_t i = 0; i < pt->n; i++) {
            const mpt_tensor *x = &pt->t[i];
            mpt_adamw_update(opt, m->params + x->offset, m->grads + x->offset, dp->m + x->offset,
                             dp->v + x->offset, x->numel, lr, x->decay ? opt->weight_decay : 0.0f,
                             clip, t);
        }
        return MPT_OK;
    }
    /* zero 3: a prefetched gather may still read this rank's slices (mpt_iallgather sends
     * from pshard): it lands before AdamW writes them (its copy is stale anyway) */
    if (dp->zero == 3) {
        mpt_status st = mpt_dp_settle(dp, err);
        if (st) return st;
    }
    for (int i = 0; i < dp->n_seg; i++) {
        const mpt_dp_segment *s = &dp->seg[i];
        float *p = dp->zero == 3 ? dp->pshard + s->shard : m->params + s->flat;
        const float *g = dp->zero == 1 ? m->grads + s->flat : dp->gshard + s->shard;
        mpt_adamw_update(opt, p, g, dp->m + s->shard, dp->v + s->shard, s->n, lr,
                         s->decay ? opt->weight_decay : 0.0f, clip, t);
    }
    if (dp->zero == 3 || dp->R == 1) return MPT_OK;
    /* every rank's updated slices back into everyone's full parameters (expert parts: the
     * edp group's), all rings at once */
    mpt_status st = MPT_OK;
    int started = 0;
    for (int i = 0; i < dp->n_buckets && !st; i++, started++) {
        mpt_dp_bucket *b = &dp->b[i];
        st = mpt_ring_start(&b->gring, mpt_dp_gcomm(dp, b->grp), MPT_RING_ALLGATHER,
                            m->params + b->begin, b->n, NULL, GATHER_TAG + i % 10000, err);
    }
    for (int i = 0; i < started && !st; i++) st = mpt_ring_wait(&dp->b[i].gring, err);
    return st;
}
