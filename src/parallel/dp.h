/* dp.h — data parallelism and ZeRO-1/2/3 over the data-parallel group.
 *
 * Every replica runs the whole model on its slice of the global batch; this module makes the
 * gradients the sum over replicas (each replica's loss is already scaled by 1/(B*T) of the
 * GLOBAL batch, so the sum is the gradient of the global mean loss) and runs AdamW.
 *   zero 0  all-reduce of gradient buckets; every rank holds and updates everything.
 *   zero 1  reduce-scatter of buckets; each rank updates its 1/R slice of every bucket with its
 *           slice of the AdamW state, then the slices are all-gathered.
 *   zero 2  as 1, and gradients live only as the rank's slice: backward writes each unit's
 *           gradients into a staging buffer that is reduce-scattered (every micro-batch) into
 *           the slice and reused; no full gradient buffer exists.
 *   zero 3  as 2, and parameters live only as the rank's slice: each unit is all-gathered into
 *           a working buffer before its forward and again before its backward, the next unit
 *           prefetched, and released after use. The embeddings (unit 0) and the final unit stay
 *           gathered for the whole step, since the tied head needs wte at both ends of it.
 *           z3_whole instead keeps every unit of the rank, gathered once per step: a pipeline
 *           stage runs each layer 2m times a step, so this trades one stage's full parameters
 *           of memory for 2m-1 fewer all-gathers per layer (the trainer picks it for pp > 1
 *           when the memory plan allows).
 * Buckets: for zero 0/1, consecutive units merged in backward order up to bucket_elems; each
 * bucket's reduction starts, during the LAST micro-batch's backward, as soon as its units'
 * gradients are final, and is progressed with MPI_Test at every later unit (overlap). For zero
 * 2/3, a bucket is one unit and reduces every micro-batch. Units are padded (params.h) to a
 * multiple of 16*R elements, so a bucket splits evenly over the ranks.
 * Pipeline stages: a stage's units may be empty (no embeddings, no head); they take no part.
 * With a tied head split over the first and last stage, the two wte gradients are summed over
 * the embed group at mpt_dp_finish_grads, before the data-parallel reduction of their bucket
 * (which therefore does not overlap the backward).
 * Which ranks call: every function here is called by all ranks of the dp group, in step. */
#ifndef MPT_DP_H
#define MPT_DP_H

#include <stddef.h>

#include "comm/comm.h"
#include "core/arena.h"
#include "model/gpt.h"
#include "train/adamw.h"

/* Bytes by category that the dp/ZeRO machinery adds to or takes from mpt_gpt's own buffers. */
typedef struct mpt_dp_plan {
    int gpt_flags;                     /* what mpt_gpt_init must allocate itself */
    size_t bytes[MPT_MEM_KINDS];       /* what mpt_dp_init allocates */
    size_t elements;                   /* flat parameter elements (padded table) */
    size_t pool;                       /* elements of one staging / working pool (zero 2/3) */
} mpt_dp_plan;

/* Pure: what the dp module needs for this table (built with unit_align = mpt_dp_unit_align);
 * tied: this stage's wte gets summed with the other end of the pipeline's. */
void mpt_dp_plan_for(const mpt_param_table *pt, int R, int zero, size_t bucket_elems, int tied,
                     int z3_whole, mpt_dp_plan *plan);
size_t mpt_dp_unit_align(int R);

typedef struct dp_bucket_ dp_bucket_;
typedef struct dp_segment_ dp_segment_;

typedef struct mpt_dp {
    mpt_comm *comm;          /* dp group, not owned */
    mpt_comm *tp;            /* tensor-parallel group (for the global norm), not owned; or NULL */
    mpt_comm *pp;            /* pipeline group (for the global norm), not owned; or NULL */
    mpt_comm *embed;         /* first + last pipeline stage, whose two copies of the tied wte
                              * get the sum of their gradients; not owned; or NULL */
    size_t tied;             /* index of the tied wte (or its copy) in the model's table */
    int tied_unit;           /* its unit, or -1 */
    float *tied_grad;        /* zero 2/3: its gradient, kept whole through the step */
    int R, r, zero;
    mpt_gpt *model;          /* not owned; its hooks point here */
    mpt_arena *arena;        /* not owned */
    int n_buckets;
    dp_bucket_ *b;           /* owned */
    int *unit_bucket;        /* owned: bucket of each unit */
    int n_seg;
    dp_segment_ *seg;        /* owned: tensor pieces of this rank's slices (zero >= 1) */
    size_t shard_n;          /* elements of this rank's slice of everything (pt.total / R) */
    float *m, *v;            /* AdamW state: full (zero 0) or slice */
    float *gshard;           /* zero 2/3: summed gradient slice */
    float *pshard;           /* zero 3: parameter slice */
    float *stage[4];         /* zero 2/3: staging: [0] unit 0, [1] final unit, [2..3] layer slots */
    float *recv[4];          /* zero 2/3: reduce-scatter results of the staging slots */
    int stage_unit[4];       /* unit in each slot (-1 none) */
    mpt_req stage_req[4];    /* reduce-scatter of each slot */
    int stage_inflight[4];
    /* zero 3: gathered weights. Per layer (default): the same four slots as the staging; whole
     * stage (z3_whole): one slot per unit inside one buffer as large as the stage's parameters,
     * each unit gathered once per step */
    int z3_whole;
    int n_work;
    float **work;            /* owned arrays of n_work */
    int *work_unit, *work_ready, *work_inflight;
    mpt_req *work_req;
    float *whole;            /* z3_whole: the buffer the slots point into */
    int last_microbatch;     /* zero 0/1 reduce only during the last micro-batch */
    size_t max_layer_n;      /* largest layer unit */
} mpt_dp;

/* model must be initialised with the gpt_flags of mpt_dp_plan_for and unit_align
 * mpt_dp_unit_align(R); installs the model's hooks. tp (or NULL): the model's tensor-parallel
 * group, whose ranks hold different shards but identical copies of the replicated tensors.
 * pp (or NULL): the pipeline group, whose stages hold different layers; embed (or NULL): the
 * first and last stage when both hold a copy of the tied wte. */
mpt_status mpt_dp_init(mpt_dp *dp, mpt_gpt *model, mpt_comm *comm, mpt_comm *tp, mpt_comm *pp,
                       mpt_comm *embed, int zero, int z3_whole, size_t bucket_elems,
                       mpt_arena *arena, mpt_error *err);
void mpt_dp_free(mpt_dp *dp);

/* Initial values (CONTRACT §2) of what this rank holds; AdamW state zero. */
void mpt_dp_init_values(mpt_dp *dp, uint64_t seed);
/* Takes full values laid out by the model's table (identical on every rank): parameters, and
 * optionally AdamW m and v (NULL: zero). Each rank keeps what it owns. */
void mpt_dp_load(mpt_dp *dp, const float *params, const float *m, const float *v);
/* Assembles full parameters, m and v (each pt.total, caller's buffers) on every rank. */
mpt_status mpt_dp_gather(mpt_dp *dp, float *params, float *m, float *v, mpt_error *err);

/* Step protocol: begin_step; per micro-batch set_last + forward + backward; finish_grads;
 * grad_norm; update. */
void mpt_dp_begin_step(mpt_dp *dp);
void mpt_dp_set_last_microbatch(mpt_dp *dp, int last);
mpt_status mpt_dp_finish_grads(mpt_dp *dp, mpt_error *err);
/* Global L2 norm of the summed gradients (exact under sharding). */
mpt_status mpt_dp_grad_norm(mpt_dp *dp, double *norm, mpt_error *err);
/* AdamW with the clip factor on everything this rank owns, then the parameters all-gathered. */
mpt_status mpt_dp_update(mpt_dp *dp, const mpt_adamw *opt, float lr, float clip, long t,
                         mpt_error *err);

#endif
