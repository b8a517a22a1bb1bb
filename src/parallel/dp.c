/* dp.c — data parallelism and ZeRO-1/2/3 (see dp.h). */
#include "parallel/dp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct dp_bucket_ {
    int u_lo, u_hi;  /* units [u_lo, u_hi] */
    size_t begin, n; /* flat range; n % R == 0; this rank owns [begin + r*n/R, +n/R) */
    int waiting;     /* units of the bucket whose gradients are not final yet */
    mpt_req req;
    int inflight;
};

struct dp_segment_ {
    size_t flat;  /* first element, in the full flat layout */
    size_t shard; /* the same element in the compact slice space (AdamW state, zero 2/3) */
    size_t gflat; /* zero 1: where its reduced gradient sits (reduce-scatter in place puts the
                   * slice at the start of its bucket) */
    size_t n;
    int decay;
    int replicated; /* the tensor is whole on every tensor-parallel rank */
    int is_copy;    /* the last pipeline stage's copy of the tied wte (counted once, at stage 0) */
};

enum { SLOT_EMBED, SLOT_FINAL, SLOT_LAYER };

size_t mpt_dp_unit_align(int R) { return 16 * (size_t)(R > 0 ? R : 1); }

static size_t unit_n_(const mpt_param_table *pt, int u) {
    return pt->unit_end[u] - pt->unit_begin[u];
}

static size_t max_layer_(const mpt_param_table *pt) {
    size_t mx = 0;
    for (int u = 1; u + 1 < pt->n_units; u++)
        if (unit_n_(pt, u) > mx) mx = unit_n_(pt, u);
    return mx;
}

/* Slot sizes of the staging / working pools: embeddings, final unit, two layer slots. */
static void slot_sizes_(const mpt_param_table *pt, size_t n[4]) {
    n[SLOT_EMBED] = unit_n_(pt, 0);
    n[SLOT_FINAL] = unit_n_(pt, pt->n_units - 1);
    n[SLOT_LAYER] = n[SLOT_LAYER + 1] = max_layer_(pt);
}

static int slot_of_(const mpt_param_table *pt, int u) {
    if (u == 0) return SLOT_EMBED;
    if (u == pt->n_units - 1) return SLOT_FINAL;
    return SLOT_LAYER + (u % 2);
}

/* The table's tied wte on a pipeline end (the embedding on the first stage, the head's copy on
 * the last), or SIZE_MAX. */
static size_t tied_tensor_(const mpt_param_table *pt) {
    for (size_t i = 0; i < pt->n; i++)
        if (pt->t[i].full_id == 0) return i;
    return SIZE_MAX;
}

void mpt_dp_plan_for(const mpt_param_table *pt, int R, int zero, size_t bucket_elems, int tied,
                     int z3_whole, mpt_dp_plan *plan) {
    (void)bucket_elems;
    memset(plan, 0, sizeof *plan);
    size_t P = pt->total, S = P / (size_t)R, n[4];
    slot_sizes_(pt, n);
    size_t pool = n[0] + n[1] + n[2] + n[3];
    plan->elements = P;
    plan->pool = pool;
    plan->gpt_flags = zero <= 1 ? MPT_GPT_TRAIN
                      : zero == 2 ? (MPT_GPT_PARAMS | MPT_GPT_BACKWARD)
                                  : MPT_GPT_BACKWARD;
    plan->bytes[MPT_MEM_OPTIMIZER] = 2 * (zero == 0 ? P : S) * sizeof(float);
    if (zero >= 2) plan->bytes[MPT_MEM_GRADS] = (S + pool + pool / (size_t)R) * sizeof(float);
    if (zero == 3) plan->bytes[MPT_MEM_PARAMS] = (S + (z3_whole ? P : pool)) * sizeof(float);
    size_t ti = tied_tensor_(pt);
    if (tied && zero >= 2 && ti != SIZE_MAX) plan->bytes[MPT_MEM_GRADS] += pt->t[ti].numel * 4;
}

/* ---- requests ------------------------------------------------------------------------------ */

/* Adds a finished staging slot's reduced slice into the gradient slice. */
static void absorb_slot_(mpt_dp *dp, int slot) {
    int u = dp->stage_unit[slot];
    const mpt_param_table *pt = &dp->model->pt;
    size_t off = pt->unit_begin[u] / (size_t)dp->R, n = unit_n_(pt, u) / (size_t)dp->R;
    float *g = dp->gshard + off;
    const float *src = dp->R == 1 ? dp->stage[slot] : dp->recv[slot];
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) g[i] += src[i];
    dp->stage_unit[slot] = -1;
}

/* Tests every request in flight once, so MPI progresses them while we compute. */
static mpt_status progress_(mpt_dp *dp, mpt_error *err) {
    int done;
    for (int i = 0; i < dp->n_buckets; i++)
        if (dp->b[i].inflight) {
            mpt_status st = mpt_test(&dp->b[i].req, &done, err);
            if (st) return st;
            if (done) dp->b[i].inflight = 0;
        }
    for (int s = 0; s < dp->n_work; s++)
        if (dp->work_inflight[s]) {
            mpt_status st = mpt_test(&dp->work_req[s], &done, err);
            if (st) return st;
            if (done) {
                dp->work_inflight[s] = 0;
                dp->work_ready[s] = 1;
            }
        }
    for (int s = 0; s < 4; s++)
        if (dp->stage_inflight[s]) {
            mpt_status st = mpt_test(&dp->stage_req[s], &done, err);
            if (st) return st;
            if (done) {
                dp->stage_inflight[s] = 0;
                absorb_slot_(dp, s);
            }
        }
    return MPT_OK;
}

static mpt_status finish_stage_slot_(mpt_dp *dp, int s, mpt_error *err) {
    if (dp->stage_inflight[s]) {
        mpt_status st = mpt_wait(&dp->stage_req[s], err);
        if (st) return st;
        dp->stage_inflight[s] = 0;
        absorb_slot_(dp, s);
    } else if (dp->stage_unit[s] >= 0 && dp->R == 1) {
        absorb_slot_(dp, s);
    }
    return MPT_OK;
}

/* ---- ZeRO-3: gathered working copies of units ----------------------------------------------- */

/* The working slot of unit u: its own in whole-stage mode, else the staging pool's. */
static int work_slot_(const mpt_dp *dp, int u) {
    return dp->z3_whole ? u : slot_of_(&dp->model->pt, u);
}

static mpt_status start_gather_(mpt_dp *dp, int u, mpt_error *err) {
    const mpt_param_table *pt = &dp->model->pt;
    int s = work_slot_(dp, u);
    if (dp->work_unit[s] == u && (dp->work_ready[s] || dp->work_inflight[s])) return MPT_OK;
    if (dp->work_inflight[s]) { /* a gather of another unit still running: let it land */
        mpt_status st = mpt_wait(&dp->work_req[s], err);
        if (st) return st;
        dp->work_inflight[s] = 0;
    }
    size_t n = unit_n_(pt, u) / (size_t)dp->R;
    const float *src = dp->pshard + pt->unit_begin[u] / (size_t)dp->R;
    dp->work_unit[s] = u;
    dp->work_ready[s] = 0;
    if (dp->R == 1) {
        memcpy(dp->work[s], src, n * sizeof(float));
        dp->work_ready[s] = 1;
        return MPT_OK;
    }
    mpt_status st = mpt_iallgather(dp->comm, src, dp->work[s], n, &dp->work_req[s], err);
    if (!st) dp->work_inflight[s] = 1;
    return st;
}

static mpt_status ensure_gathered_(mpt_dp *dp, int u, mpt_error *err) {
    int s = work_slot_(dp, u);
    mpt_status st = start_gather_(dp, u, err);
    if (!st && dp->work_inflight[s]) {
        st = mpt_wait(&dp->work_req[s], err);
        dp->work_inflight[s] = 0;
        dp->work_ready[s] = !st;
    }
    if (!st) mpt_gpt_point_unit(dp->model, dp->model->w, u, dp->work[s]);
    return st;
}

/* ---- hooks ----------------------------------------------------------------------------------- */

static mpt_status hook_need_(void *ctx, int u, mpt_gpt_phase phase, mpt_error *err) {
    mpt_dp *dp = ctx;
    const mpt_param_table *pt = &dp->model->pt;
    int L = pt->n_units - 2;
    mpt_status st = progress_(dp, err);
    if (st || unit_n_(pt, u) == 0) return st;
    if (dp->zero == 3) {
        if ((st = ensure_gathered_(dp, u, err))) return st;
        int next = phase == MPT_PHASE_FORWARD ? u + 1 : u - 1;
        if (u != 0 && next >= 1 && next <= L && (st = start_gather_(dp, next, err))) return st;
        if (phase == MPT_PHASE_FORWARD && u == 0 && L >= 1 && (st = start_gather_(dp, 1, err)))
            return st;
    }
    if (dp->zero >= 2 && phase == MPT_PHASE_BACKWARD) {
        int s = slot_of_(pt, u);
        if ((st = finish_stage_slot_(dp, s, err))) return st;
        memset(dp->stage[s], 0, unit_n_(pt, u) * sizeof(float));
        dp->stage_unit[s] = u;
        mpt_gpt_point_unit(dp->model, dp->model->g, u, dp->stage[s]);
        if (u == dp->tied_unit) dp->model->g[dp->tied] = dp->tied_grad; /* kept whole */
    }
    return MPT_OK;
}

static mpt_status hook_grads_done_(void *ctx, int u, mpt_error *err) {
    mpt_dp *dp = ctx;
    const mpt_param_table *pt = &dp->model->pt;
    mpt_status st;
    if (unit_n_(pt, u) == 0) return MPT_OK;
    if (dp->zero >= 2) {
        int s = slot_of_(pt, u);
        if (dp->R > 1) {
            size_t n = unit_n_(pt, u) / (size_t)dp->R;
            if ((st = mpt_ireduce_scatter_sum(dp->comm, dp->stage[s], dp->recv[s], n,
                                              &dp->stage_req[s], err)))
                return st;
            dp->stage_inflight[s] = 1;
        }
        return progress_(dp, err);
    }
    if (!dp->last_microbatch) return MPT_OK;
    dp_bucket_ *b = &dp->b[dp->unit_bucket[u]];
    /* the tied wte's bucket waits for the other pipeline end: reduced in finish_grads */
    if (--b->waiting == 0 && dp->R > 1 && u != dp->tied_unit) {
        float *g = dp->model->grads + b->begin;
        if (dp->zero == 0) st = mpt_iallreduce_sum(dp->comm, g, b->n, &b->req, err);
        else st = mpt_ireduce_scatter_sum(dp->comm, NULL, g, b->n / (size_t)dp->R, &b->req, err);
        if (st) return st;
        b->inflight = 1;
    }
    return progress_(dp, err);
}

/* ---- set-up ----------------------------------------------------------------------------------- */

static mpt_status build_buckets_(mpt_dp *dp, size_t bucket_elems, mpt_error *err) {
    const mpt_param_table *pt = &dp->model->pt;
    int U = pt->n_units;
    dp->b = calloc((size_t)U, sizeof *dp->b);
    dp->unit_bucket = calloc((size_t)U, sizeof *dp->unit_bucket);
    if (!dp->b || !dp->unit_bucket) return mpt_fail(err, MPT_ERR_RUN, "out of memory (buckets)");
    int nb = 0;
    for (int u = U - 1; u >= 0; u--) { /* backward order: final unit first */
        dp->unit_bucket[u] = -1;
        if (unit_n_(pt, u) == 0) continue; /* a pipeline stage without embeddings or head */
        dp_bucket_ *b = &dp->b[nb];
        if (b->n == 0) b->u_hi = u;
        b->u_lo = u;
        b->begin = pt->unit_begin[u];
        b->n = pt->unit_end[b->u_hi] - b->begin;
        dp->unit_bucket[u] = nb;
        if (dp->zero >= 2 || b->n >= bucket_elems || u == 0 || u == dp->tied_unit) nb++;
    }
    if (nb < U && dp->b[nb].n > 0) nb++; /* a bucket left open by trailing empty units */
    dp->n_buckets = nb;
    return MPT_OK;
}

static mpt_status build_segments_(mpt_dp *dp, mpt_error *err) {
    const mpt_param_table *pt = &dp->model->pt;
    dp->seg = calloc(pt->n + (size_t)dp->n_buckets, sizeof *dp->seg);
    if (!dp->seg) return mpt_fail(err, MPT_ERR_RUN, "out of memory (segments)");
    for (int i = 0; i < dp->n_buckets; i++) {
        const dp_bucket_ *b = &dp->b[i];
        size_t w = b->n / (size_t)dp->R, lo = b->begin + (size_t)dp->r * w, hi = lo + w;
        for (size_t k = 0; k < pt->n; k++) {
            const mpt_tensor *t = &pt->t[k];
            size_t a = t->offset > lo ? t->offset : lo;
            size_t e = t->offset + t->numel < hi ? t->offset + t->numel : hi;
            if (a >= e) continue;
            dp_segment_ *s = &dp->seg[dp->n_seg++];
            s->flat = a;
            s->shard = b->begin / (size_t)dp->R + (a - lo);
            s->gflat = b->begin + (a - lo);
            s->n = e - a;
            s->decay = t->decay;
            s->replicated = t->split == MPT_SPLIT_NONE;
            s->is_copy = t->is_copy;
        }
    }
    return MPT_OK;
}

/* The zero-3 working slots: four from the staging pool's sizes, or one per unit inside one
 * buffer of the whole table (z3_whole). */
static mpt_status alloc_work_(mpt_dp *dp, const size_t n[4], mpt_error *err) {
    const mpt_param_table *pt = &dp->model->pt;
    dp->n_work = dp->z3_whole ? pt->n_units : 4;
    dp->work = calloc((size_t)dp->n_work, sizeof *dp->work);
    dp->work_unit = calloc((size_t)dp->n_work, sizeof *dp->work_unit);
    dp->work_ready = calloc((size_t)dp->n_work, sizeof *dp->work_ready);
    dp->work_inflight = calloc((size_t)dp->n_work, sizeof *dp->work_inflight);
    dp->work_req = calloc((size_t)dp->n_work, sizeof *dp->work_req);
    if (!dp->work || !dp->work_unit || !dp->work_ready || !dp->work_inflight || !dp->work_req)
        return mpt_fail(err, MPT_ERR_RUN, "out of memory (ZeRO-3 slots)");
    for (int s = 0; s < dp->n_work; s++) dp->work_unit[s] = -1;
    if (dp->zero != 3) return MPT_OK;
    if (dp->z3_whole) {
        mpt_status st = mpt_arena_alloc(dp->arena, MPT_MEM_PARAMS, pt->total, MPT_F32,
                                        &dp->whole, err);
        for (int u = 0; !st && u < pt->n_units; u++) dp->work[u] = dp->whole + pt->unit_begin[u];
        return st;
    }
    for (int s = 0; s < 4; s++) {
        mpt_status st = mpt_arena_alloc(dp->arena, MPT_MEM_PARAMS, n[s], MPT_F32,
                                        &dp->work[s], err);
        if (st) return st;
    }
    return MPT_OK;
}

static void free_work_(mpt_dp *dp, const size_t n[4]) {
    if (dp->whole) mpt_arena_release(dp->arena, MPT_MEM_PARAMS, dp->whole, dp->model->pt.total,
                                     MPT_F32);
    else
        for (int s = 0; dp->work && s < 4; s++)
            mpt_arena_release(dp->arena, MPT_MEM_PARAMS, dp->work[s], n[s], MPT_F32);
    free(dp->work);
    free(dp->work_unit);
    free(dp->work_ready);
    free(dp->work_inflight);
    free(dp->work_req);
}

/* All slots stale: the parameters changed. */
static void forget_work_(mpt_dp *dp) {
    for (int s = 0; s < dp->n_work; s++) {
        dp->work_unit[s] = -1;
        dp->work_ready[s] = 0;
    }
}

mpt_status mpt_dp_init(mpt_dp *dp, mpt_gpt *model, mpt_comm *comm, mpt_comm *tp, mpt_comm *pp,
                       mpt_comm *embed, int zero, int z3_whole, size_t bucket_elems,
                       mpt_arena *arena, mpt_error *err) {
    memset(dp, 0, sizeof *dp);
    dp->z3_whole = zero == 3 && z3_whole;
    dp->comm = comm;
    dp->tp = tp && tp->size > 1 ? tp : NULL;
    dp->pp = pp && pp->size > 1 ? pp : NULL;
    dp->embed = embed && embed->size > 1 ? embed : NULL;
    dp->tied = tied_tensor_(&model->pt);
    dp->tied_unit = dp->embed && dp->tied != SIZE_MAX
                        ? mpt_tensor_unit(&model->pt, &model->pt.t[dp->tied])
                        : -1;
    dp->R = comm ? comm->size : 1;
    dp->r = comm ? comm->rank : 0;
    dp->zero = zero;
    dp->model = model;
    dp->arena = arena;
    const mpt_param_table *pt = &model->pt;
    size_t P = pt->total, S = P / (size_t)dp->R, n[4];
    dp->shard_n = S;
    slot_sizes_(pt, n);
    for (int s = 0; s < 4; s++) dp->stage_unit[s] = -1;
    mpt_status st = alloc_work_(dp, n, err);
    if (!st) st = build_buckets_(dp, bucket_elems, err);
    if (!st && zero >= 1) st = build_segments_(dp, err);
    size_t opt_n = zero == 0 ? P : S;
    if (!st) st = mpt_arena_alloc(arena, MPT_MEM_OPTIMIZER, opt_n, MPT_F32, &dp->m, err);
    if (!st) st = mpt_arena_alloc(arena, MPT_MEM_OPTIMIZER, opt_n, MPT_F32, &dp->v, err);
    if (!st && zero >= 2) {
        st = mpt_arena_alloc(arena, MPT_MEM_GRADS, S, MPT_F32, &dp->gshard, err);
        for (int s = 0; !st && s < 4; s++) {
            st = mpt_arena_alloc(arena, MPT_MEM_GRADS, n[s], MPT_F32, &dp->stage[s], err);
            if (!st)
                st = mpt_arena_alloc(arena, MPT_MEM_GRADS, n[s] / (size_t)dp->R, MPT_F32,
                                     &dp->recv[s], err);
        }
    }
    if (!st && zero >= 2 && dp->tied_unit >= 0)
        st = mpt_arena_alloc(arena, MPT_MEM_GRADS, pt->t[dp->tied].numel, MPT_F32,
                             &dp->tied_grad, err);
    if (!st && zero == 3)
        st = mpt_arena_alloc(arena, MPT_MEM_PARAMS, S, MPT_F32, &dp->pshard, err);
    if (st) {
        mpt_dp_free(dp);
        return st;
    }
    model->hooks = (mpt_gpt_hooks){.ctx = dp, .need = hook_need_, .grads_done = hook_grads_done_};
    return MPT_OK;
}

void mpt_dp_free(mpt_dp *dp) {
    if (!dp || !dp->model) return;
    const mpt_param_table *pt = &dp->model->pt;
    size_t P = pt->total, S = dp->shard_n, n[4];
    slot_sizes_(pt, n);
    size_t opt_n = dp->zero == 0 ? P : S;
    mpt_arena_release(dp->arena, MPT_MEM_OPTIMIZER, dp->m, opt_n, MPT_F32);
    mpt_arena_release(dp->arena, MPT_MEM_OPTIMIZER, dp->v, opt_n, MPT_F32);
    mpt_arena_release(dp->arena, MPT_MEM_GRADS, dp->gshard, S, MPT_F32);
    mpt_arena_release(dp->arena, MPT_MEM_PARAMS, dp->pshard, S, MPT_F32);
    if (dp->tied_grad)
        mpt_arena_release(dp->arena, MPT_MEM_GRADS, dp->tied_grad, pt->t[dp->tied].numel,
                          MPT_F32);
    for (int s = 0; s < 4; s++) {
        mpt_arena_release(dp->arena, MPT_MEM_GRADS, dp->stage[s], n[s], MPT_F32);
        mpt_arena_release(dp->arena, MPT_MEM_GRADS, dp->recv[s], n[s] / (size_t)dp->R,
                          MPT_F32);
    }
    free_work_(dp, n);
    dp->model->hooks = (mpt_gpt_hooks){0};
    free(dp->b);
    free(dp->unit_bucket);
    free(dp->seg);
    memset(dp, 0, sizeof *dp);
}

/* ---- state in and out ------------------------------------------------------------------------ */

/* Copies this rank's slice of every bucket between a full buffer and a compact slice buffer. */
static void slices_(const mpt_dp *dp, float *full, float *slice, int to_slice) {
    for (int i = 0; i < dp->n_buckets; i++) {
        const dp_bucket_ *b = &dp->b[i];
        size_t w = b->n / (size_t)dp->R;
        float *f = full + b->begin + (size_t)dp->r * w, *s = slice + b->begin / (size_t)dp->R;
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
            const dp_bucket_ *b = &dp->b[i];
            size_t w = b->n / (size_t)dp->R;
            mpt_params_init_range(pt, dp->pshard + b->begin / (size_t)dp->R,
                                  b->begin + (size_t)dp->r * w, w, seed);
        }
    }
    size_t n = dp->zero == 0 ? pt->total : dp->shard_n;
    memset(dp->m, 0, n * sizeof(float));
    memset(dp->v, 0, n * sizeof(float));
    forget_work_(dp);
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
    forget_work_(dp);
}

/* All-gathers a compact slice buffer into a full one, bucket by bucket. */
static mpt_status gather_full_(mpt_dp *dp, const float *slice, float *full, mpt_error *err) {
    for (int i = 0; i < dp->n_buckets; i++) {
        const dp_bucket_ *b = &dp->b[i];
        size_t w = b->n / (size_t)dp->R;
        if (dp->R == 1) {
            memcpy(full + b->begin, slice + b->begin, w * sizeof(float));
            continue;
        }
        mpt_status st = mpt_allgather(dp->comm, slice + b->begin / (size_t)dp->R, full + b->begin,
                                      w, err);
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

/* ---- the step --------------------------------------------------------------------------------- */

void mpt_dp_begin_step(mpt_dp *dp) {
    if (dp->zero <= 1) memset(dp->model->grads, 0, dp->model->pt.total * sizeof(float));
    else memset(dp->gshard, 0, dp->shard_n * sizeof(float));
    if (dp->tied_grad) memset(dp->tied_grad, 0, dp->model->pt.t[dp->tied].numel * sizeof(float));
    forget_work_(dp); /* parameters changed: regather */
    dp->last_microbatch = 0;
}

void mpt_dp_set_last_microbatch(mpt_dp *dp, int last) {
    dp->last_microbatch = last;
    for (int i = 0; i < dp->n_buckets; i++) dp->b[i].waiting = dp->b[i].u_hi - dp->b[i].u_lo + 1;
}

/* The two ends of the pipeline hold a copy of the tied wte each: sum their gradients over the
 * embed group, then reduce the bucket holding it over dp (zero 0/1), or scatter it into the
 * gradient slice through its staging slot (zero 2/3). */
static mpt_status finish_tied_(mpt_dp *dp, mpt_error *err) {
    const mpt_param_table *pt = &dp->model->pt;
    const mpt_tensor *t = &pt->t[dp->tied];
    int u = dp->tied_unit;
    mpt_status st;
    if (dp->zero <= 1) {
        if ((st = mpt_allreduce_sum(dp->embed, dp->model->grads + t->offset, t->numel, err)))
            return st;
        dp_bucket_ *b = &dp->b[dp->unit_bucket[u]];
        if (dp->R == 1) return MPT_OK;
        float *g = dp->model->grads + b->begin;
        st = dp->zero == 0
                 ? mpt_iallreduce_sum(dp->comm, g, b->n, &b->req, err)
                 : mpt_ireduce_scatter_sum(dp->comm, NULL, g, b->n / (size_t)dp->R, &b->req, err);
        if (!st) b->inflight = 1;
        return st;
    }
    if ((st = mpt_allreduce_sum(dp->embed, dp->tied_grad, t->numel, err))) return st;
    int s = slot_of_(pt, u);
    if ((st = finish_stage_slot_(dp, s, err))) return st;
    memset(dp->stage[s], 0, unit_n_(pt, u) * sizeof(float));
    memcpy(dp->stage[s] + (t->offset - pt->unit_begin[u]), dp->tied_grad, t->numel * sizeof(float));
    dp->stage_unit[s] = u;
    if (dp->R > 1) {
        if ((st = mpt_ireduce_scatter_sum(dp->comm, dp->stage[s], dp->recv[s],
                                          unit_n_(pt, u) / (size_t)dp->R, &dp->stage_req[s], err)))
            return st;
        dp->stage_inflight[s] = 1;
    }
    return finish_stage_slot_(dp, s, err);
}

mpt_status mpt_dp_finish_grads(mpt_dp *dp, mpt_error *err) {
    mpt_status st = MPT_OK;
    if (dp->zero >= 2) {
        for (int s = 0; s < 4 && !st; s++) st = finish_stage_slot_(dp, s, err);
        if (!st && dp->tied_unit >= 0) st = finish_tied_(dp, err);
        return st;
    }
    if (dp->tied_unit >= 0) st = finish_tied_(dp, err);
    for (int i = 0; i < dp->n_buckets && !st; i++) {
        dp_bucket_ *b = &dp->b[i];
        if (b->inflight) {
            st = mpt_wait(&b->req, err);
            b->inflight = 0;
        } else if (dp->R > 1 && b->waiting != 0) {
            st = mpt_fail(err, MPT_ERR_RUN, "dp: bucket %d was never reduced (%d units left)", i,
                          b->waiting);
        }
    }
    return st;
}

mpt_status mpt_dp_grad_norm(mpt_dp *dp, double *norm, mpt_error *err) {
    /* Tensors replicated over tensor parallelism are counted on tp rank 0 only. */
    int count_replicated = !dp->tp || dp->tp->rank == 0;
    const mpt_param_table *pt = &dp->model->pt;
    double sq = 0.0;
    if (dp->zero == 0) {
        for (size_t i = 0; i < pt->n; i++)
            if ((count_replicated || pt->t[i].split != MPT_SPLIT_NONE) && !pt->t[i].is_copy)
                sq += mpt_sum_squares(dp->model->grads + pt->t[i].offset, pt->t[i].numel);
    } else {
        for (int i = 0; i < dp->n_seg; i++) {
            const dp_segment_ *s = &dp->seg[i];
            if ((!count_replicated && s->replicated) || s->is_copy) continue;
            const float *g = dp->zero == 1 ? dp->model->grads + s->gflat : dp->gshard + s->shard;
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
    for (int i = 0; i < dp->n_seg; i++) {
        const dp_segment_ *s = &dp->seg[i];
        float *p = dp->zero == 3 ? dp->pshard + s->shard : m->params + s->flat;
        const float *g = dp->zero == 1 ? m->grads + s->gflat : dp->gshard + s->shard;
        mpt_adamw_update(opt, p, g, dp->m + s->shard, dp->v + s->shard, s->n, lr,
                         s->decay ? opt->weight_decay : 0.0f, clip, t);
    }
    if (dp->zero == 3 || dp->R == 1) return MPT_OK;
    /* every rank's updated slices back into everyone's full parameters */
    for (int i = 0; i < dp->n_buckets; i++) {
        dp_bucket_ *b = &dp->b[i];
        size_t w = b->n / (size_t)dp->R;
        mpt_status st = mpt_iallgather(dp->comm, m->params + b->begin + (size_t)dp->r * w,
                                       m->params + b->begin, w, &b->req, err);
        if (st) return st;
        b->inflight = 1;
    }
    for (int i = 0; i < dp->n_buckets; i++) {
        mpt_status st = mpt_wait(&dp->b[i].req, err);
        dp->b[i].inflight = 0;
        if (st) return st;
    }
    return MPT_OK;
}
