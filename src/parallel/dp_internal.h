/* dp_internal.h — what the files of the data-parallel module (dp.c, dp_reduce.c, dp_shard.c,
 * dp_optim.c) share: the bucket and segment records and the calls between them. Not public.
 * Every function here is called by all ranks of the dp group in step, like dp.h's. */
#ifndef MPT_DP_INTERNAL_H
#define MPT_DP_INTERNAL_H

#include "parallel/dp.h"

/* Consecutive parts (below) of one group, reduced together by one ring (zero 0/1; under
 * zero 2/3 each part is a bucket of its own). */
struct mpt_dp_bucket {
    int u_lo, u_hi;  /* parts [u_lo, u_hi] */
    int grp;         /* 1: expert parts, sharded over the edp group; 0: the dp group */
    int parts;       /* its non-empty parts */
    size_t begin, n; /* flat range; n % Rg == 0; this rank owns [begin + rg*n/Rg, +n/Rg) */
    size_t sbegin;   /* where its slices start in the compact slice space */
    int waiting;     /* parts of the bucket whose gradients are not final yet */
    int state;       /* MPT_DP_B_* */
    int ring_buf;    /* receive buffer its ring uses, or -1 */
    mpt_ring ring;
    mpt_ring gring;  /* the parameters' (and mpt_dp_gather_grads_unit's) all-gather: its own,
                      * as 2bw's deferred update gathers while the next step's ring runs */
};

enum { MPT_DP_B_IDLE, MPT_DP_B_QUEUED, MPT_DP_B_RUNNING, MPT_DP_B_DONE };

/* A piece of one tensor inside this rank's slice of one bucket (zero >= 1). */
struct mpt_dp_segment {
    size_t flat;    /* first element, in the full flat layout */
    size_t shard;   /* the same element in the compact slice space (AdamW state, zero 2/3) */
    size_t n;
    int decay;
    int replicated; /* the tensor is whole on every tensor-parallel rank */
    int is_copy;    /* the last pipeline stage's copy of the tied wte (counted once, at stage 0) */
};

static inline size_t mpt_dp_unit_n(const mpt_param_table *pt, int u) {
    return pt->unit_end[u] - pt->unit_begin[u];
}

/* Parts: unit u is parts 2u (its dense tensors, sharded over the dp group) and 2u+1 (its
 * experts, from unit_xbegin[u], sharded over the edp group) when `split` (ep > 1 with ZeRO
 * 1-3, dp.h); otherwise part 2u is the whole unit and 2u+1 is empty. */
static inline size_t mpt_dp_part_begin(const mpt_param_table *pt, int split, int k) {
    int u = k / 2;
    return k % 2 == 0 ? pt->unit_begin[u] : split ? pt->unit_xbegin[u] : pt->unit_end[u];
}
static inline size_t mpt_dp_part_end(const mpt_param_table *pt, int split, int k) {
    int u = k / 2;
    return k % 2 == 1 || !split ? pt->unit_end[u] : pt->unit_xbegin[u];
}
static inline size_t mpt_dp_part_n(const mpt_param_table *pt, int split, int k) {
    return mpt_dp_part_end(pt, split, k) - mpt_dp_part_begin(pt, split, k);
}
/* The group of part k (1: edp), its size and this rank's index in it, its communicator. */
static inline int mpt_dp_grp(const mpt_dp *dp, int k) { return dp->split && k % 2; }
static inline int mpt_dp_gR(const mpt_dp *dp, int g) { return g ? dp->eR : dp->R; }
static inline int mpt_dp_gr(const mpt_dp *dp, int g) { return g ? dp->er : dp->r; }
static inline mpt_comm *mpt_dp_gcomm(const mpt_dp *dp, int g) { return g ? dp->ecomm : dp->comm; }
/* An expert part whose edp group is one rank (ep = dp x cp): its slice is the whole part, so
 * zero 2/3 write its gradients into the slice and zero 3 reads its weights there: no staging
 * or working slot (dp_shard.c). */
static inline int mpt_dp_direct(const mpt_dp *dp, int k) { return dp->split && k % 2 && dp->eR == 1; }

/* ---- dp_reduce.c: buckets (zero 0/1) ---- */
/* Pure: walks the buckets of a table's parts (split: see above) in backward order; fills
 * b[0..*nb) and part_bucket when not NULL; *max_n = the largest bucket's elements per rank of
 * its group (R dp ranks, eR edp ranks). held_unit gets a bucket of its own. */
void mpt_dp_buckets_walk(const mpt_param_table *pt, int split, int R, int eR, int zero,
                         size_t bucket_elems, int held_unit, mpt_dp_bucket *b, int *part_bucket,
                         int *nb, size_t *max_n);
/* Backward has finished unit u's gradients in the last micro-batch: its buckets may start. */
mpt_status mpt_dp_reduce_unit_done(mpt_dp *dp, int u, mpt_error *err);
/* Advances every bucket ring as far as its messages have arrived; starts queued buckets. */
mpt_status mpt_dp_reduce_progress(mpt_dp *dp, mpt_error *err);
/* Reduces the held unit's bucket (after pre_reduce) and waits for every bucket. */
mpt_status mpt_dp_reduce_finish(mpt_dp *dp, mpt_error *err);

/* ---- dp_shard.c: slices, staging (zero 2/3), working copies (zero 3) ---- */
/* Pure: staging / working slot sizes, and the slot of part k. */
void mpt_dp_slot_sizes(const mpt_param_table *pt, int split, size_t n[MPT_DP_SLOTS]);
int mpt_dp_slot_of(const mpt_param_table *pt, int k);
mpt_status mpt_dp_segments_build(mpt_dp *dp, mpt_error *err);
mpt_status mpt_dp_work_init(mpt_dp *dp, mpt_error *err); /* slot tables (before the buffers) */
void mpt_dp_work_point(mpt_dp *dp);                        /* slots into the buffers (after) */
void mpt_dp_work_free(mpt_dp *dp);
void mpt_dp_work_forget(mpt_dp *dp);
/* zero 3: unit u gathered and the model's weights pointing at it; the next unit prefetched. */
mpt_status mpt_dp_gather_unit(mpt_dp *dp, int u, mpt_gpt_phase phase, mpt_error *err);
/* zero 2/3: backward is about to write unit u's gradients: point them into its staging slot. */
mpt_status mpt_dp_stage_open(mpt_dp *dp, int u, mpt_error *err);
/* zero 2/3: unit u's gradients are written: reduce-scatter its slot. */
mpt_status mpt_dp_stage_close(mpt_dp *dp, int u, mpt_error *err);
/* Advances staging rings and zero-3 gathers as far as their messages have arrived. */
mpt_status mpt_dp_shard_progress(mpt_dp *dp, mpt_error *err);
/* zero 2/3: finishes every slot, then reduces the held gradient (after pre_reduce). */
mpt_status mpt_dp_stage_finish(mpt_dp *dp, mpt_error *err);

#endif
