/* stage_plan.h — the memory plan of one pipeline rank of a run, the one function the trainer
 * (train/trainer_setup.c, before it allocates) and the planner (plan/plan_mem.c, for every
 * stage of a layout) both call, so that a schedule's pools are counted in one place.
 *
 * From the schedule's action lists (parallel/pp.h) it takes the activation sets of each chunk
 * alive at once (mpt_pp_chunk_sets) and, with a split backward (zb-h1, zb-v), the until-B pool
 * (mpt_pp_chunk_sets_b); zb-v puts both ends of the model on pipeline rank 0; 2bw stashes a
 * second weight version. The rest is mpt_memplan_rank (plan/memplan.h).
 *     mpt_stage_run run = {.kind = MPT_PP_1F1B, .microbatches = 4, .v = 1, .Bm = 2, .T = 64,
 *                          .bucket_mb = 4, .threads = 1};
 *     mpt_placement q = mpt_placement_at_stage(&pl, s, first_layer, n_layers);
 *     mpt_stage_plan(&cfg, &run, &q, &plan, &err);
 * Pure. The action lists' set counts of the last few (kind, p, m, v, stage) are kept (the
 * planner's search asks for the same ones many times): call from one thread. */
#ifndef MPT_STAGE_PLAN_H
#define MPT_STAGE_PLAN_H

#include <stddef.h>

#include "parallel/schedule.h"
#include "plan/memplan.h"

#define MPT_STAGE_MAX_CHUNKS 64 /* model chunks per pipeline rank (train's MPT_MAX_VIRTUAL) */

/* How a run trains, as far as one pipeline rank's memory is concerned. */
typedef struct mpt_stage_run {
    mpt_pp_kind kind;     /* the schedule (any with one stage) */
    int microbatches;     /* m per step and replica */
    int v;                /* model chunks per pipeline rank (interleaved v, zb-v 2; else 1) */
    int Bm, T;            /* sequences per micro-batch; tokens per sequence (before cp) */
    int sp, zero, recompute, z3_whole, bf16;
    int two_bw;           /* 2bw's rule: the previous step's weights stashed (any pp) */
    int two_bw_deferred;  /* 2bw's deferred update (train/trainer_2bw.c): a 2nd gradient buffer */
    double bucket_mb;     /* data-parallel gradient bucket, MiB (0: the whole gradient) */
    int threads;          /* compute threads per rank */
    const size_t *ckpt_bytes; /* mpt_memplan_ckpt_bytes of cfg, or NULL (computed) */
} mpt_stage_run;

/* Does 2bw defer its update (train/trainer_2bw.c: a second gradient buffer, the update run
 * before the first forward that needs it)? A pipeline (pp > 1) of a dense model under ZeRO 0-2,
 * any dp and cp; otherwise the update runs, blocking, at the step's end. */
int mpt_stage_2bw_deferred(int pp, int dp, int cp, int zero, int experts);

/* The plan of the rank at placement q (its stage's blocks from mpt_placement_at_stage; its
 * layout's sizes, ep included). MPT_ERR_INPUT / MPT_ERR_RUN as mpt_memplan_rank. */
mpt_status mpt_stage_plan(const mpt_config *cfg, const mpt_stage_run *run,
                          const mpt_placement *q, mpt_mem_plan *plan, mpt_error *err);

#endif
