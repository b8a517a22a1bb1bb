/* dp.h — data parallelism and ZeRO-1/2/3 over the data-parallel group.
 *
 * Every replica runs the whole model (or its pipeline stage) on its slice of the global batch;
 * this module makes the gradients the sum over replicas (each replica's loss is already scaled
 * by 1/(B*T) of the GLOBAL batch, so the sum is the gradient of the global mean loss) and runs
 * AdamW on what the rank owns.
 *   zero 0  all-reduce of gradient buckets; every rank holds and updates everything.
 *   zero 1  reduce-scatter of buckets; each rank updates its 1/R slice of every bucket with its
 *           slice of the AdamW state, then the slices are all-gathered.
 *   zero 2  as 1, and gradients live only as the rank's slice: backward writes each unit's
 *           gradients into a staging buffer that is reduce-scattered (every micro-batch) into
 *           the slice and reused; no full gradient buffer exists.
 *   zero 3  as 2, and parameters live only as the rank's slice: each unit is all-gathered into
 *           a working buffer before its forward and again before its backward, the next unit
 *           prefetched, and released after use (z3_whole 0, the default: 16/N bytes per
 *           parameter plus a few layers' working copies). z3_whole 1 (--zero3-gather step)
 *           instead keeps every unit of the rank gathered from its first use to the end of the
 *           step, in one buffer as large as the rank's parameters: a pipeline stage runs each
 *           layer 2m times a step, so this trades 4 bytes per parameter for 2m-1 fewer
 *           all-gathers per layer.
 * Units are padded (params.h) to a multiple of mpt_dp_unit_align(R) elements, so every unit
 * and bucket splits evenly over the ranks.
 *
 * Expert parallelism with ZeRO 1-3 (opts.edp_size > 0; parallel/ep.h): the table holds this ep
 * rank's E/ep experts, which differ between the dp ranks of one ep group, so they cannot be
 * sharded over dp with the dense tensors. Each unit is then two parts: its dense tensors and
 * its expert part (from unit_xbegin, aligned by the table), and every part is sharded,
 * reduce-scattered, all-gathered and gathered (ZeRO-3) over its own group: the dp group for
 * dense parts, the expert-data-parallel group (the dp x cp ranks holding the same experts) for
 * expert parts. Buckets never mix the two; zero 2/3 stage an expert part in slots of its own.
 * The slice space is the parts' slices back to back, so AdamW, the norm and the checkpoint code
 * see one flat shard as before. The norm's sum over the dp group counts every expert once: the
 * dp group is edp x ep, and ep ranks hold different experts. When edp is one rank (ep = dp x
 * cp) an expert part's slice is the whole part: zero 2/3 accumulate its gradients in the slice
 * and zero 3 points its weights there, with no staging or working slot (mpt_dp_direct).
 * Without the split (zero 0 or ep 1) part 2u is the whole unit u and everything is as described
 * above.
 *
 * The module is five files, one concern each:
 *   dp.c        the buffer list, init/free, the model's hooks and the step protocol
 *   dp_reduce.c gradient reduction of zero 0/1: buckets of units merged in backward order up to
 *               bucket_elems, each reduced by a ring (dp_ring.h) that starts, during the LAST
 *               micro-batch's backward, as soon as its units' gradients are final, and is
 *               advanced from the backward's hooks between layers
 *   dp_shard.c  ZeRO sharding: the rank's slices and segments, the staging of zero 2/3 (one
 *               unit per slot, ring reduce-scatter every micro-batch), the zero-3 working
 *               copies, and parameters / optimizer state in and out
 *   dp_optim.c  the optimizer over flat shards: global gradient norm and AdamW on the rank's
 *               segments (core/adamw.h), then the parameter slices all-gathered
 *   dp_node.c   the default bucket: the whole gradient when every rank is on one node, else
 *               MPT_DP_BUCKET_MB_NODES
 *
 * A held tensor (opts.held: the tied wte at a pipeline end, parallel/tied.h) keeps its
 * gradient whole through the step; mpt_dp_finish_grads calls opts.pre_reduce on it (the sum
 * with the other end of the pipeline) and only then reduces its unit over dp, so that unit does
 * not overlap the backward.
 * A pipeline stage's units may be empty (no embeddings, no head); they take no part.
 *
 * Step protocol (every function: all ranks of the dp group, in step; with tp or pp, every
 * rank of the model, since the norm sums over those groups too):
 *   mpt_dp_begin_step                  zero the gradients, forget gathered copies
 *   per micro-batch: mpt_dp_set_last_microbatch, then the model's forward and backward (the
 *                    hooks installed by mpt_dp_init reduce and gather on the way)
 *   mpt_dp_finish_grads                wait for every reduction (held tensor: pre_reduce first)
 *   mpt_dp_grad_norm                   global L2 norm, for clipping and the log
 *   mpt_dp_update                      AdamW on what the rank owns, parameters all-gathered */
#ifndef MPT_DP_H
#define MPT_DP_H

#include <stddef.h>
#include <stdint.h>

#include "comm/comm.h"
#include "core/adamw.h"
#include "core/arena.h"
#include "core/buflist.h"
#include "model/gpt.h"
#include "parallel/dp_ring.h"

/* Called by mpt_dp_finish_grads on every dp rank, before the held tensor's unit is reduced:
 * g (n elements) is that tensor's gradient summed over this replica's micro-batches; change it
 * in place (e.g. mpt_tied_sum). */
typedef mpt_status (*mpt_dp_pre_reduce_fn)(void *ctx, float *g, size_t n, mpt_error *err);

typedef struct mpt_dp_opts {
    int zero;                    /* 0..3 */
    int z3_whole;                /* zero 3: each unit gathered once per step (--zero3-gather step) */
    size_t bucket_elems;         /* zero 0/1: bucket size in elements */
    size_t held;                 /* tensor index whose gradient is held whole, or SIZE_MAX */
    mpt_dp_pre_reduce_fn pre_reduce; /* or NULL */
    void *pre_reduce_ctx;
    mpt_dtype grad_wire;         /* gradient rings' messages: MPT_F32 (default) or MPT_BF16
                                  * (--grad-reduce-dtype bf16; parallel/dp_ring.h) */
    int edp_size;                /* > 0: expert parts sharded over an edp group of this size
                                  * (ep > 1 with zero >= 1; above); 0: no split */
    mpt_comm *edp;               /* mpt_dp_init: that group (NULL when edp_size is 1) */
} mpt_dp_opts;

/* zero 0, 4 MiB buckets, nothing held. */
void mpt_dp_opts_defaults(mpt_dp_opts *o);
/* The default bucket (dp_node.c): one bucket of the whole gradient when every rank of the job
 * shares one node (MPT_DP_BUCKET_WHOLE), else MPT_DP_BUCKET_MB_NODES MiB overlapped with the
 * backward. */
#define MPT_DP_BUCKET_WHOLE 0.0     /* bucket_mb: the whole gradient in one bucket */
#define MPT_DP_BUCKET_MB_NODES 4.0  /* bucket_mb across nodes */
/* *one = 1 when every rank of world runs on one node. All ranks of world call. */
mpt_status mpt_dp_one_node(mpt_comm *world, int *one, mpt_error *err);
/* Bucket elements of a size in MiB; MPT_DP_BUCKET_WHOLE (or below) gives SIZE_MAX. */
size_t mpt_dp_bucket_elems(double bucket_mb);
/* Padding of units (the table must be built with it). */
size_t mpt_dp_unit_align(int R);
/* What mpt_gpt_init must allocate itself for this ZeRO stage (MPT_GPT_* flags). */
int mpt_dp_gpt_flags(int zero);
/* Elements of one ZeRO-2/3 staging (or per-layer working) pool: embeddings, final unit, two
 * layer slots and (split: opts.edp_size > 0) two expert-part slots. */
size_t mpt_dp_pool_elems(const mpt_param_table *pt, int split);

typedef struct mpt_dp_bucket mpt_dp_bucket;
typedef struct mpt_dp_segment mpt_dp_segment;

enum { MPT_DP_SLOTS = 6,    /* staging / working slots: embeddings, final unit, 2 layers,
                             * 2 layers' expert parts */
       MPT_DP_RING_BUFS = 2 /* zero 0/1: buckets whose ring reduce phase runs at once */ };

typedef struct mpt_dp {
    mpt_comm *comm;          /* dp group, not owned */
    mpt_comm *ecomm;         /* split: the edp group, not owned (NULL: one rank) */
    int split, eR, er;       /* expert parts apart (opts.edp_size > 0); edp size and rank */
    size_t *psh;             /* owned: 2 n_units + 1: where part k's slice starts in the slice
                              * space (psh[2 n_units] = shard_n) */
    mpt_comm *tp;            /* tensor-parallel group (for the global norm), not owned; or NULL */
    mpt_comm *pp;            /* pipeline group (for the global norm), not owned; or NULL */
    mpt_dp_opts o;
    int R, r, zero;
    mpt_gpt *model;          /* not owned; its hooks point here */
    mpt_arena *arena;        /* not owned */
    mpt_buflist bufs;        /* owned: everything init took from the arena */
    size_t shard_n;          /* elements of this rank's slice of everything (pt.total / R
                              * without the split) */
    int held_unit;           /* unit of o.held, or -1 */
    float *held_grad;        /* zero 2/3: o.held's gradient, whole through the step */
    int last_microbatch;     /* zero 0/1 reduce only during the last micro-batch */
    /* gradient reduction, zero 0/1 (dp_reduce.c) */
    int n_buckets;
    mpt_dp_bucket *b;        /* owned */
    int *unit_bucket;        /* owned: bucket of each part (2 per unit), -1 for an empty part */
    size_t ring_n;           /* elements of each ring receive buffer (largest bucket / R) */
    float *ring_buf[MPT_DP_RING_BUFS];
    int ring_busy[MPT_DP_RING_BUFS];
    int n_ring_bufs;         /* of them allocated: min(buckets, MPT_DP_RING_BUFS) */
    /* sharding (dp_shard.c) */
    int n_seg;
    mpt_dp_segment *seg;     /* owned: tensor pieces of this rank's slices (zero >= 1) */
    float *gshard;           /* zero 2/3: summed gradient slice */
    float *pshard;           /* zero 3: parameter slice */
    size_t slot_n[MPT_DP_SLOTS];
    float *stage[MPT_DP_SLOTS];      /* zero 2/3: a unit's gradient, then its ring partial sums */
    float *stage_tmp[MPT_DP_SLOTS];  /* zero 2/3: the ring's receive buffer (slot_n / R) */
    int stage_unit[MPT_DP_SLOTS];    /* part in each slot (-1 none) */
    int stage_reducing[MPT_DP_SLOTS];/* its gradients are written and its ring started */
    mpt_ring stage_ring[MPT_DP_SLOTS];
    int n_work;              /* zero 3 working copies: MPT_DP_SLOTS, or one per part (whole) */
    float *work_buf[MPT_DP_SLOTS];   /* per-layer working copies */
    float *whole;            /* z3_whole: the stage-sized buffer the per-unit slots point into */
    float **work;            /* owned arrays of n_work */
    int *work_unit, *work_ready, *work_inflight;
    mpt_req *work_req;
    /* optimizer (dp_optim.c) */
    float *m, *v;            /* AdamW state: full (zero 0) or slice */
} mpt_dp;

/* The module's buffers, the one statement of what it takes from the arena: AdamW m and v,
 * gradient slice, staging and ring buffers, ZeRO-3 parameter slice and working copies, the held
 * gradient. Pure when dp is NULL (the memory plan sums the list); mpt_dp_init passes itself, so
 * the entries point at its fields. pt built with unit_align mpt_dp_unit_align(R). */
void mpt_dp_buffers(const mpt_param_table *pt, int R, const mpt_dp_opts *o, mpt_dp *dp,
                    mpt_buflist *l);

/* model must be initialised with mpt_dp_gpt_flags(o->zero) and unit_align mpt_dp_unit_align(R);
 * installs the model's hooks. comm: the dp group (NULL: one replica). tp (or NULL): the model's
 * tensor-parallel group, whose ranks hold different shards but identical copies of the
 * replicated tensors. pp (or NULL): the pipeline group, whose stages hold different layers.
 * dp must stay where it is until mpt_dp_free (its buffer list and the model's hooks point into
 * it). All ranks of the dp group call. */
mpt_status mpt_dp_init(mpt_dp *dp, mpt_gpt *model, mpt_comm *comm, mpt_comm *tp, mpt_comm *pp,
                       const mpt_dp_opts *o, mpt_arena *arena, mpt_error *err);
void mpt_dp_free(mpt_dp *dp);

/* Initial values (CONTRACT §2) of what this rank holds; AdamW state zero. Local. */
void mpt_dp_init_values(mpt_dp *dp, uint64_t seed);
/* Takes full values laid out by the model's table (identical on every rank): parameters, and
 * optionally AdamW m and v (NULL: zero). Each rank keeps what it owns. Local. */
void mpt_dp_load(mpt_dp *dp, const float *params, const float *m, const float *v);
/* Assembles full parameters, m and v (each pt.total, caller's buffers) on every rank. */
mpt_status mpt_dp_gather(mpt_dp *dp, float *params, float *m, float *v, mpt_error *err);

/* Where tensor t (of the model's table) lives in the slices (zero >= 1): *g its group (0 dp,
 * 1 edp, above), whose rank d (-1: this rank) holds its flat elements [*x0, *x1), kept at
 * slice[*at]. Pure. */
void mpt_dp_owned(const mpt_dp *dp, const mpt_tensor *t, int d, int *g, size_t *x0, size_t *x1,
                  size_t *at);

/* The step protocol (above). */
void mpt_dp_begin_step(mpt_dp *dp);
void mpt_dp_set_last_microbatch(mpt_dp *dp, int last);
mpt_status mpt_dp_finish_grads(mpt_dp *dp, mpt_error *err);
/* After a forward-only pass (evaluation) between steps: waits for the ZeRO-3 gathers the
 * forward prefetched and forgets the working copies (all ranks of the dp group call). */
mpt_status mpt_dp_settle(mpt_dp *dp, mpt_error *err);
/* zero 1, after mpt_dp_finish_grads: all-gathers the summed slices of unit u's gradients (its
 * buckets must hold that unit alone, as the held unit's does), so that every rank of the dp
 * group holds the whole sum (2bw's deferred update sends the tied wte's to the other end of
 * the pipeline). Other stages, one rank, u < 0: nothing. All ranks of the dp group call. */
mpt_status mpt_dp_gather_grads_unit(mpt_dp *dp, int u, mpt_error *err);
/* Global L2 norm of the summed gradients (exact under sharding). */
mpt_status mpt_dp_grad_norm(mpt_dp *dp, double *norm, mpt_error *err);
/* AdamW with the clip factor on everything this rank owns, then the parameters all-gathered. */
mpt_status mpt_dp_update(mpt_dp *dp, const mpt_adamw *opt, float lr, float clip, long t,
                         mpt_error *err);

#endif
