/* dp_shard.c — ZeRO sharding (see dp.h): the rank's slice of every bucket and its segments,
 * the zero-2/3 gradient staging (a unit's gradients written into one of four slots, ring
 * reduce-scattered every micro-batch and added into the gradient slice), the zero-3 working
 * copies (each unit all-gathered before use, the next one prefetched; or, z3_whole, every unit
 * gathered once per step), and parameters / optimizer state in and out of the slices. */
#include "parallel/dp_internal.h"

#include <stdlib.h>
#include <string.h>

enum { SLOT_EMBED, SLOT_FINAL, SLOT_LAYER, SLOT_EXPERT = 4, STAGE_TAG = 10 };

/* The largest part x (0 dense, 1 experts) of a block. */
static size_t max_layer_(const mpt_param_table *pt, int split, int x) {
    size_t mx = 0;
    for (int u = 1; u + 1 < pt->n_units; u++)
        if (mpt_dp_part_n(pt, split, 2 * u + x) > mx) mx = mpt_dp_part_n(pt, split, 2 * u + x);
    return mx;
}

void mpt_dp_slot_sizes(const mpt_param_table *pt, int split, size_t n[MPT_DP_SLOTS]) {
    n[SLOT_EMBED] = mpt_dp_part_n(pt, split, 0);
    n[SLOT_FINAL] = mpt_dp_part_n(pt, split, 2 * (pt->n_units - 1));
    n[SLOT_LAYER] = n[SLOT_LAYER + 1] = max_layer_(pt, split, 0);
    n[SLOT_EXPERT] = n[SLOT_EXPERT + 1] = max_layer_(pt, split, 1);
}

int mpt_dp_slot_of(const mpt_param_table *pt, int k) {
    int u = k / 2;
    if (k % 2) return SLOT_EXPERT + (u % 2);
    if (u == 0) return SLOT_EMBED;
    if (u == pt->n_units - 1) return SLOT_FINAL;
    return SLOT_LAYER + (u % 2);
}

/* Points the model's table (w or g) entries of part k's tensors into base. */
static void point_part_(mpt_dp *dp, float **table, int k, float *base) {
    const mpt_param_table *pt = &dp->model->pt;
    size_t b = mpt_dp_part_begin(pt, dp->split, k), e = mpt_dp_part_end(pt, dp->split, k);
    for (size_t i = 0; i < pt->n; i++) {
        size_t off = pt->t[i].offset;
        if (off >= b && off < e) table[i] = base + (off - b);
    }
}

/* ---- segments ------------------------------------------------------------------------------- */

mpt_status mpt_dp_segments_build(mpt_dp *dp, mpt_error *err) {
    const mpt_param_table *pt = &dp->model->pt;
    dp->seg = calloc(pt->n + (size_t)dp->n_buckets, sizeof *dp->seg);
    if (!dp->seg) return mpt_fail(err, MPT_ERR_RUN, "out of memory (segments)");
    for (int i = 0; i < dp->n_buckets; i++) {
        const mpt_dp_bucket *b = &dp->b[i];
        size_t w = b->n / (size_t)mpt_dp_gR(dp, b->grp);
        size_t lo = b->begin + (size_t)mpt_dp_gr(dp, b->grp) * w, hi = lo + w;
        for (size_t k = 0; k < pt->n; k++) {
            const mpt_tensor *t = &pt->t[k];
            size_t a = t->offset > lo ? t->offset : lo;
            size_t e = t->offset + t->numel < hi ? t->offset + t->numel : hi;
            if (a >= e) continue;
            dp->seg[dp->n_seg++] = (mpt_dp_segment){
                .flat = a, .shard = b->sbegin + (a - lo), .n = e - a,
                .decay = t->decay, .replicated = t->split == MPT_SPLIT_NONE,
                .is_copy = t->is_copy};
        }
    }
    return MPT_OK;
}

/* ---- zero 3: gathered working copies of units ------------------------------------------------ */

mpt_status mpt_dp_work_init(mpt_dp *dp, mpt_error *err) {
    dp->n_work = dp->o.z3_whole ? 2 * dp->model->pt.n_units : MPT_DP_SLOTS;
    size_t n = (size_t)dp->n_work;
    dp->work = calloc(n, sizeof *dp->work);
    dp->work_unit = calloc(n, sizeof *dp->work_unit);
    dp->work_ready = calloc(n, sizeof *dp->work_ready);
    dp->work_inflight = calloc(n, sizeof *dp->work_inflight);
    dp->work_req = calloc(n, sizeof *dp->work_req);
    if (!dp->work || !dp->work_unit || !dp->work_ready || !dp->work_inflight || !dp->work_req)
        return mpt_fail(err, MPT_ERR_RUN, "out of memory (ZeRO-3 slots)");
    for (int s = 0; s < dp->n_work; s++) dp->work_unit[s] = -1;
    return MPT_OK;
}

void mpt_dp_work_point(mpt_dp *dp) {
    const mpt_param_table *pt = &dp->model->pt;
    for (int s = 0; s < dp->n_work; s++)
        dp->work[s] = dp->whole ? dp->whole + mpt_dp_part_begin(pt, dp->split, s)
                      : s < MPT_DP_SLOTS ? dp->work_buf[s] : NULL;
}

void mpt_dp_work_free(mpt_dp *dp) {
    free(dp->work);
    free(dp->work_unit);
    free(dp->work_ready);
    free(dp->work_inflight);
    free(dp->work_req);
}

mpt_status mpt_dp_settle(mpt_dp *dp, mpt_error *err) {
    for (int s = 0; s < dp->n_work; s++)
        if (dp->work_inflight[s]) {
            dp->work_inflight[s] = 0;
            mpt_status st = mpt_wait(&dp->work_req[s], err);
            if (st) return st;
        }
    mpt_dp_work_forget(dp);
    return MPT_OK;
}

/* All slots stale: the parameters changed. */
void mpt_dp_work_forget(mpt_dp *dp) {
    for (int s = 0; s < dp->n_work; s++) {
        dp->work_unit[s] = -1;
        dp->work_ready[s] = 0;
    }
}

/* The working slot of part k: its own in whole-stage mode, else the staging pool's. */
static int work_slot_(const mpt_dp *dp, int k) {
    return dp->o.z3_whole ? k : mpt_dp_slot_of(&dp->model->pt, k);
}

/* Starts the all-gather of part k (over its group) into its working slot. */
static mpt_status start_gather_(mpt_dp *dp, int k, mpt_error *err) {
    const mpt_param_table *pt = &dp->model->pt;
    int s = work_slot_(dp, k), g = mpt_dp_grp(dp, k), u = k;
    if (mpt_dp_part_n(pt, dp->split, k) == 0 || mpt_dp_direct(dp, k)) return MPT_OK;
    if (dp->work_unit[s] == u && (dp->work_ready[s] || dp->work_inflight[s])) return MPT_OK;
    if (dp->work_inflight[s]) { /* a gather of another unit still running: let it land */
        mpt_status st = mpt_wait(&dp->work_req[s], err);
        if (st) return st;
        dp->work_inflight[s] = 0;
    }
    size_t n = mpt_dp_part_n(pt, dp->split, k) / (size_t)mpt_dp_gR(dp, g);
    const float *src = dp->pshard + dp->psh[k];
    dp->work_unit[s] = u;
    dp->work_ready[s] = 0;
    if (mpt_dp_gR(dp, g) == 1) {
        memcpy(dp->work[s], src, n * sizeof(float));
        dp->work_ready[s] = 1;
        return MPT_OK;
    }
    mpt_status st = mpt_iallgather(mpt_dp_gcomm(dp, g), src, dp->work[s], n, &dp->work_req[s],
                                   err);
    if (!st) dp->work_inflight[s] = 1;
    return st;
}

static mpt_status ensure_gathered_(mpt_dp *dp, int k, mpt_error *err) {
    if (mpt_dp_part_n(&dp->model->pt, dp->split, k) == 0) return MPT_OK;
    if (mpt_dp_direct(dp, k)) { /* its slice is the whole part */
        point_part_(dp, dp->model->w, k, dp->pshard + dp->psh[k]);
        return MPT_OK;
    }
    int s = work_slot_(dp, k);
    mpt_status st = start_gather_(dp, k, err);
    if (!st && dp->work_inflight[s]) {
        st = mpt_wait(&dp->work_req[s], err);
        dp->work_inflight[s] = 0;
        dp->work_ready[s] = !st;
    }
    if (!st) point_part_(dp, dp->model->w, k, dp->work[s]);
    return st;
}

/* Both parts of unit u. */
static mpt_status start_gather_unit_(mpt_dp *dp, int u, mpt_error *err) {
    mpt_status st = start_gather_(dp, 2 * u, err);
    return st ? st : start_gather_(dp, 2 * u + 1, err);
}

mpt_status mpt_dp_gather_unit(mpt_dp *dp, int u, mpt_gpt_phase phase, mpt_error *err) {
    int L = dp->model->pt.n_units - 2;
    mpt_status st = ensure_gathered_(dp, 2 * u, err);
    if (!st) st = ensure_gathered_(dp, 2 * u + 1, err);
    if (st) return st;
    int next = phase == MPT_PHASE_FORWARD ? u + 1 : u - 1;
    if (u != 0 && next >= 1 && next <= L) return start_gather_unit_(dp, next, err);
    if (phase == MPT_PHASE_FORWARD && u == 0 && L >= 1) return start_gather_unit_(dp, 1, err);
    return MPT_OK;
}

/* ---- zero 2/3: gradient staging ------------------------------------------------------------- */

/* Adds slot s's reduced slice (chunk r of the ring's buffer) into the gradient slice. */
static void absorb_(mpt_dp *dp, int s) {
    const mpt_param_table *pt = &dp->model->pt;
    int k = dp->stage_unit[s], gr = mpt_dp_grp(dp, k);
    size_t n = mpt_dp_part_n(pt, dp->split, k) / (size_t)mpt_dp_gR(dp, gr);
    float *g = dp->gshard + dp->psh[k];
    const float *src = dp->stage[s] + (size_t)mpt_dp_gr(dp, gr) * n;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) g[i] += src[i];
    dp->stage_unit[s] = -1;
    dp->stage_reducing[s] = 0;
}

/* Slot s free again: its ring (if any) done and its slice absorbed. */
static mpt_status finish_slot_(mpt_dp *dp, int s, mpt_error *err) {
    if (dp->stage_unit[s] < 0) return MPT_OK;
    mpt_status st = mpt_ring_wait(&dp->stage_ring[s], err);
    if (!st) absorb_(dp, s);
    return st;
}

/* Starts the ring reduce-scatter of the unit in slot s (with one rank: nothing to do). */
static mpt_status reduce_slot_(mpt_dp *dp, int s, mpt_error *err) {
    int k = dp->stage_unit[s];
    dp->stage_reducing[s] = 1;
    return mpt_ring_start_dt(&dp->stage_ring[s], mpt_dp_gcomm(dp, mpt_dp_grp(dp, k)),
                             MPT_RING_REDUCE_SCATTER, dp->stage[s],
                             mpt_dp_part_n(&dp->model->pt, dp->split, k), dp->stage_tmp[s],
                             dp->o.grad_wire, STAGE_TAG + s, err);
}

mpt_status mpt_dp_stage_open(mpt_dp *dp, int u, mpt_error *err) {
    const mpt_param_table *pt = &dp->model->pt;
    for (int k = 2 * u; k <= 2 * u + 1; k++) {
        size_t n = mpt_dp_part_n(pt, dp->split, k);
        if (n == 0) continue;
        if (mpt_dp_direct(dp, k)) { /* accumulated in its slice, nothing to reduce */
            point_part_(dp, dp->model->g, k, dp->gshard + dp->psh[k]);
            continue;
        }
        int s = mpt_dp_slot_of(pt, k);
        mpt_status st = finish_slot_(dp, s, err);
        if (st) return st;
        memset(dp->stage[s], 0, n * sizeof(float));
        dp->stage_unit[s] = k;
        point_part_(dp, dp->model->g, k, dp->stage[s]);
    }
    if (u == dp->held_unit) dp->model->g[dp->o.held] = dp->held_grad; /* kept whole */
    return MPT_OK;
}

mpt_status mpt_dp_stage_close(mpt_dp *dp, int u, mpt_error *err) {
    const mpt_param_table *pt = &dp->model->pt;
    for (int k = 2 * u; k <= 2 * u + 1; k++) {
        if (mpt_dp_part_n(pt, dp->split, k) == 0 || mpt_dp_direct(dp, k)) continue;
        mpt_status st = reduce_slot_(dp, mpt_dp_slot_of(pt, k), err);
        if (st) return st;
    }
    return mpt_dp_shard_progress(dp, err);
}

mpt_status mpt_dp_shard_progress(mpt_dp *dp, mpt_error *err) {
    int done;
    for (int s = 0; s < dp->n_work; s++)
        if (dp->work_inflight[s]) {
            mpt_status st = mpt_test(&dp->work_req[s], &done, err);
            if (st) return st;
            if (done) {
                dp->work_inflight[s] = 0;
                dp->work_ready[s] = 1;
            }
        }
    if (dp->zero < 2) return MPT_OK;
    for (int s = 0; s < MPT_DP_SLOTS; s++)
        if (dp->stage_reducing[s]) {
            mpt_status st = mpt_ring_progress(&dp->stage_ring[s], &done, err);
            if (st) return st;
            if (done) absorb_(dp, s);
        }
    return MPT_OK;
}

/* The held tensor (tied wte): after pre_reduce, its whole gradient goes through its unit's
 * slot (zeros elsewhere: the unit's other tensors are already in the slice) into the slice. */
static mpt_status finish_held_(mpt_dp *dp, mpt_error *err) {
    const mpt_param_table *pt = &dp->model->pt;
    const mpt_tensor *t = &pt->t[dp->o.held];
    int k = 2 * dp->held_unit, s = mpt_dp_slot_of(pt, k); /* a dense part */
    mpt_status st = MPT_OK;
    if (dp->o.pre_reduce)
        st = dp->o.pre_reduce(dp->o.pre_reduce_ctx, dp->held_grad, t->numel, err);
    if (st || (st = finish_slot_(dp, s, err))) return st;
    memset(dp->stage[s], 0, mpt_dp_part_n(pt, dp->split, k) * sizeof(float));
    memcpy(dp->stage[s] + (t->offset - mpt_dp_part_begin(pt, dp->split, k)), dp->held_grad,
           t->numel * sizeof(float));
    dp->stage_unit[s] = k;
    if ((st = reduce_slot_(dp, s, err))) return st;
    return finish_slot_(dp, s, err);
}

mpt_status mpt_dp_stage_finish(mpt_dp *dp, mpt_error *err) {
    mpt_status st = MPT_OK;
    for (int s = 0; s < MPT_DP_SLOTS && !st; s++) st = finish_slot_(dp, s, err);
    if (!st && dp->held_unit >= 0) st = finish_held_(dp, err);
    return st;
}

/* ---- state in and out ------------------------------------------------------------------------ */

/* Copies this rank's slice of every bucket between a full buffer and a compact slice buffer. */
static void slices_(const mpt_dp *dp, float *full, float *slice, int to_slice) {
    for (int i = 0; i < dp->n_buckets; i++) {
        const mpt_dp_bucket *b = &dp->b[i];
        size_t w = b->n / (size_t)mpt_dp_gR(dp, b->grp);
        float *f = full + b->begin + (size_t)mpt_dp_gr(dp, b->grp) * w, *s = slice + b->sbegin;
        if (to_slice) memcpy(s, f, w * sizeof(float));
        else memcpy(f, s, w * sizeof(float));
    }
}

void mpt_dp_init_values(mpt_dp *dp, uint64_t seed) {
    const mpt_param_table *pt = &dp->model->pt;
    if (dp->zero < 3) {
        mpt_params_init_values(pt, dp->model->params, seed);
    } else {
        for (int i = 0; i < dp->n_buckets; i++) {
            const mpt_dp_bucket *b = &dp->b[i];
            size_t w = b->n / (size_t)mpt_dp_gR(dp, b->grp);
            mpt_params_init_range(pt, dp->pshard + b->sbegin,
                                  b->begin + (size_t)mpt_dp_gr(dp, b->grp) * w, w, seed);
        }
    }
    size_t n = dp->zero == 0 ? pt->total : dp->shard_n;
    memset(dp->m, 0, n * sizeof(float));
    memset(dp->v, 0, n * sizeof(float));
    mpt_dp_work_forget(dp);
}

void mpt_dp_load(mpt_dp *dp, const float *params, const float *m, const float *v) {
    size_t P = dp->model->pt.total;
    float *full[3] = {(float *)params, (float *)m, (float *)v};
    if (dp->zero == 3) slices_(dp, full[0], dp->pshard, 1);
    else if (dp->model->params != params) memcpy(dp->model->params, params, P * sizeof(float));
    float *state[2] = {dp->m, dp->v};
    for (int k = 0; k < 2; k++) {
        if (!full[k + 1]) memset(state[k], 0, (dp->zero == 0 ? P : dp->shard_n) * sizeof(float));
        else if (dp->zero == 0) memcpy(state[k], full[k + 1], P * sizeof(float));
        else slices_(dp, full[k + 1], state[k], 1);
    }
    mpt_dp_work_forget(dp);
}

/* All-gathers a compact slice buffer into a full one, bucket by bucket. */
static mpt_status gather_full_(mpt_dp *dp, const float *slice, float *full, mpt_error *err) {
    for (int i = 0; i < dp->n_buckets; i++) {
        const mpt_dp_bucket *b = &dp->b[i];
        size_t w = b->n / (size_t)mpt_dp_gR(dp, b->grp);
        if (mpt_dp_gR(dp, b->grp) == 1) {
            memcpy(full + b->begin, slice + b->sbegin, w * sizeof(float));
            continue;
        }
        mpt_status st = mpt_allgather(mpt_dp_gcomm(dp, b->grp), slice + b->sbegin,
                                      full + b->begin, w, err);
        if (st) return st;
    }
    return MPT_OK;
}

mpt_status mpt_dp_gather(mpt_dp *dp, float *params, float *m, float *v, mpt_error *err) {
    size_t P = dp->model->pt.total;
    mpt_status st = MPT_OK;
    if (dp->zero == 3) st = gather_full_(dp, dp->pshard, params, err);
    else memcpy(params, dp->model->params, P * sizeof(float));
    if (st) return st;
    if (dp->zero == 0) {
        memcpy(m, dp->m, P * sizeof(float));
        memcpy(v, dp->v, P * sizeof(float));
        return MPT_OK;
    }
    if ((st = gather_full_(dp, dp->m, m, err))) return st;
    return gather_full_(dp, dp->v, v, err);
}

void mpt_dp_owned(const mpt_dp *dp, const mpt_tensor *t, int d, int *g, size_t *x0, size_t *x1,
                  size_t *at) {
    const mpt_param_table *pt = &dp->model->pt;
    int u = mpt_tensor_unit(pt, t);
    int k = 2 * u + (dp->split && t->offset >= pt->unit_xbegin[u]);
    const mpt_dp_bucket *b = &dp->b[dp->unit_bucket[k]];
    *g = b->grp;
    if (d < 0) d = mpt_dp_gr(dp, b->grp);
    size_t w = b->n / (size_t)mpt_dp_gR(dp, b->grp), lo = b->begin + (size_t)d * w, hi = lo + w;
    *x0 = t->offset > lo ? t->offset : lo;
    *x1 = t->offset + t->numel < hi ? t->offset + t->numel : hi;
    if (*x1 < *x0) *x1 = *x0;
    *at = b->sbegin + (*x0 - lo);
}
