/* dp_reduce.c — gradient reduction of ZeRO 0/1 (see dp.h): buckets of consecutive units in
 * backward order, each summed over the dp group by a ring (dp_ring.h: all-reduce for zero 0,
 * reduce-scatter for zero 1, which leaves rank r's summed slice in place at chunk r).
 *
 * During the last micro-batch's backward a bucket is queued as soon as its units' gradients
 * are final; queued buckets start in bucket order (the same order on every rank) when one of
 * the MPT_DP_RING_BUFS receive buffers is free, and every hook call advances every running
 * ring as far as its messages have arrived. The held unit (tied wte) is a bucket of its own,
 * reduced in mpt_dp_reduce_finish after the pre_reduce callback. */
#include "parallel/dp_internal.h"

enum { BUCKET_TAG = 100, TAG_SPAN = 30000 };

void mpt_dp_buckets_walk(const mpt_param_table *pt, int split, int R, int eR, int zero,
                         size_t bucket_elems, int held_unit, mpt_dp_bucket *b, int *part_bucket,
                         int *nb, size_t *max_n) {
    int open = 0, hi = 0, n_b = 0, grp = 0, parts = 0;
    size_t mx = 0, begin = 0, n = 0;
    for (int k = 2 * pt->n_units - 1; k >= -1; k--) { /* backward order: final unit first */
        size_t kn = k >= 0 ? mpt_dp_part_n(pt, split, k) : 0;
        int g = split && k % 2 != 0, held = held_unit >= 0 && k == 2 * held_unit && kn > 0;
        int close_before = open && (k < 0 || held || (kn > 0 && g != grp));
        if (close_before) { /* emit the open bucket [k_lo, hi] */
            if (n / (size_t)(grp ? eR : R) > mx) mx = n / (size_t)(grp ? eR : R);
            n_b++;
            open = 0;
        }
        if (k < 0) break;
        if (kn == 0) { /* an expert part of a dense unit; a stage without embeddings or head */
            if (part_bucket) part_bucket[k] = -1;
            continue;
        }
        if (!open) {
            hi = k;
            open = 1;
            grp = g;
            parts = 0;
        }
        parts++;
        begin = mpt_dp_part_begin(pt, split, k);
        n = mpt_dp_part_end(pt, split, hi) - begin;
        if (part_bucket) part_bucket[k] = n_b;
        if (b) b[n_b] = (mpt_dp_bucket){.u_lo = k, .u_hi = hi, .grp = grp, .parts = parts,
                                        .begin = begin, .n = n, .ring_buf = -1};
        if (zero >= 2 || n >= bucket_elems || k == 0 || held) {
            if (n / (size_t)(grp ? eR : R) > mx) mx = n / (size_t)(grp ? eR : R);
            n_b++;
            open = 0;
        }
    }
    *nb = n_b;
    *max_n = mx;
}

static int held_bucket_(const mpt_dp *dp) {
    return dp->held_unit >= 0 ? dp->unit_bucket[2 * dp->held_unit] : -1;
}

static mpt_status start_(mpt_dp *dp, int i, int k, mpt_error *err) {
    mpt_dp_bucket *b = &dp->b[i];
    b->state = MPT_DP_B_RUNNING;
    b->ring_buf = k;
    dp->ring_busy[k] = 1;
    return mpt_ring_start_dt(&b->ring, mpt_dp_gcomm(dp, b->grp),
                             dp->zero == 0 ? MPT_RING_ALLREDUCE : MPT_RING_REDUCE_SCATTER,
                             dp->model->grads + b->begin, b->n, dp->ring_buf[k], dp->o.grad_wire,
                             BUCKET_TAG + i % TAG_SPAN, err);
}

/* Gives back the receive buffer of a bucket whose ring will never write it again
 * (mpt_ring_uses_tmp: no receive into it pending or still to be posted); the next bucket's
 * ring may then receive into it at once. */
static void release_(mpt_dp *dp, mpt_dp_bucket *b) {
    if (b->ring_buf >= 0 && !mpt_ring_uses_tmp(&b->ring)) {
        dp->ring_busy[b->ring_buf] = 0;
        b->ring_buf = -1;
    }
}

mpt_status mpt_dp_reduce_progress(mpt_dp *dp, mpt_error *err) {
    for (int i = 0; i < dp->n_buckets; i++) {
        mpt_dp_bucket *b = &dp->b[i];
        mpt_status st = MPT_OK;
        if (b->state == MPT_DP_B_QUEUED) { /* in bucket order: nothing later starts first */
            int k = 0;
            while (k < dp->n_ring_bufs && dp->ring_busy[k]) k++;
            if (k == dp->n_ring_bufs) return MPT_OK;
            st = start_(dp, i, k, err);
        }
        if (!st && b->state == MPT_DP_B_RUNNING) {
            int done = 0;
            st = mpt_ring_progress(&b->ring, &done, err);
            if (!st && done) b->state = MPT_DP_B_DONE;
            release_(dp, b);
        }
        if (st) return st;
    }
    return MPT_OK;
}

mpt_status mpt_dp_reduce_unit_done(mpt_dp *dp, int u, mpt_error *err) {
    if (!dp->last_microbatch) return MPT_OK;
    for (int k = 2 * u; k <= 2 * u + 1; k++) {
        int i = dp->unit_bucket[k];
        if (i < 0) continue;
        mpt_dp_bucket *b = &dp->b[i];
        /* the held unit's bucket waits for pre_reduce: reduced in finish */
        if (--b->waiting == 0 && mpt_dp_gR(dp, b->grp) > 1 && i != held_bucket_(dp))
            b->state = MPT_DP_B_QUEUED;
    }
    return mpt_dp_reduce_progress(dp, err);
}

mpt_status mpt_dp_reduce_finish(mpt_dp *dp, mpt_error *err) {
    mpt_status st = MPT_OK;
    int h = held_bucket_(dp);
    if (h >= 0 && dp->o.pre_reduce) {
        const mpt_tensor *t = &dp->model->pt.t[dp->o.held];
        st = dp->o.pre_reduce(dp->o.pre_reduce_ctx, dp->model->grads + t->offset, t->numel, err);
    }
    if (st || dp->R == 1) return st;
    /* every other bucket in order (when bucket i is reached, every earlier one is done and its
     * buffer free, so a queued i starts), then the held one alone */
    for (int i = 0; i <= dp->n_buckets && !st; i++) {
        int j = i < dp->n_buckets ? i : h;
        if (j < 0 || (i < dp->n_buckets && i == h)) continue;
        mpt_dp_bucket *b = &dp->b[j];
        if (mpt_dp_gR(dp, b->grp) == 1) continue; /* an edp group of one rank */
        if (j == h) b->state = MPT_DP_B_QUEUED;
        if (b->state == MPT_DP_B_IDLE)
            return mpt_fail(err, MPT_ERR_RUN, "dp: bucket %d was never reduced (%d units left)",
                            j, b->waiting);
        if (b->state == MPT_DP_B_QUEUED) st = mpt_dp_reduce_progress(dp, err);
        if (!st && b->state == MPT_DP_B_RUNNING) {
            st = mpt_ring_wait(&b->ring, err);
            b->state = MPT_DP_B_DONE;
            release_(dp, b);
        }
    }
    return st;
}
