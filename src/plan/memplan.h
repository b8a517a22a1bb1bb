/* memplan.h — the per-rank memory plan: bytes by category, computed before anything is
 * allocated, from the same buffer tables the engine (model/gpt.h) and the parallel modules
 * (parallel/dp.h, pp.h) allocate from. The trainer checks it against --mem-limit; the planner
 * predicts with it; tests compare it with the arena's measured peak. It sits in plan/, above
 * model/ and parallel/, because it sums both (model/ never includes parallel/). */
#ifndef MPT_MEMPLAN_H
#define MPT_MEMPLAN_H

#include <stddef.h>

#include "core/arena.h"
#include "core/status.h"
#include "model/config.h"
#include "parallel/placement.h"

typedef struct mpt_mem_plan {
    size_t bytes[MPT_MEM_KINDS];
    size_t total;
    size_t param_elements;   /* flat parameter buffer (padded table), full model */
    size_t pool_elements;    /* ZeRO-2/3 staging / working pool, in elements */
} mpt_mem_plan;

/* One rank of a training layout, as far as its memory is concerned: where it sits (sizes,
 * its pipeline stage's blocks and ends) and how it trains. */
typedef struct mpt_rank_layout {
    mpt_placement place;      /* sizes tp, dp, pp...; the stage's blocks, first / last */
    int sp;                   /* sequence parallelism over the tp group */
    int zero;                 /* ZeRO stage */
    int act_sets;             /* activation sets alive at once: 1, or the pipeline's count */
    int recompute;            /* mpt_recompute */
    int z3_whole;             /* ZeRO-3 keeps the stage's parameters gathered through a step */
    size_t bucket_elems;      /* data-parallel gradient bucket */
    int threads;              /* compute threads (--threads; <= 0: 1): the attention workspace */
    int bf16;                 /* bf16 GEMMs (--dtype bf16): their operand scratch */
    int chunks;               /* model chunks on the rank (interleaved; 0 or 1: one), its blocks
                               * split evenly; then chunk_sets[c] sets of chunk c's blocks are
                               * counted instead of act_sets (parallel/pp.h, mpt_pp_chunk_sets) */
    const int *chunk_sets;
    int split_w;              /* split backward (zb-h1): sets also hold the W pass's stash */
    const int *sets_b;        /* split_w, or NULL: the until-B parts (model/gpt.h
                               * mpt_gpt_slot_until_b) alive at once, per chunk (sets_b[0]
                               * with one), counted for those slots instead of the sets
                               * (parallel/pp.h mpt_pp_chunk_sets_b) */
    int weight_versions;      /* 2 for 2bw (the previous step's weights stashed: P, or under
                               * ZeRO-3 a slice as large as AdamW's m); 3 when its
                               * update is deferred (a second gradient buffer too:
                               * train/trainer_2bw.c); else 1 */
    const size_t *ckpt_bytes; /* the checkpoint staging's bytes per kind, from
                               * mpt_memplan_ckpt_bytes for the same cfg (the planner's search
                               * computes them once); NULL: computed here */
} mpt_rank_layout;

/* The checkpoint staging of train/checkpoint.h (bounded blocks every rank streams tensors
 * through; it depends on the whole model only), added into bytes[MPT_MEM_KINDS]. */
mpt_status mpt_memplan_ckpt_bytes(const mpt_config *cfg, size_t *bytes, mpt_error *err);

/* The training memory of one rank: the engine's buffers for micro-batches of B sequences of T
 * tokens (act_sets activation sets) plus what parallel/dp.c, pp.c and cp.c add. With cp > 1
 * (the placement's layout) the rank holds T/cp positions of each sequence plus the ring's
 * buffers, and gradients are sharded over dp x cp; T must split into 2cp chunks
 * (MPT_ERR_INPUT otherwise). */
mpt_status mpt_memplan_rank(const mpt_config *cfg, int B, int T, const mpt_rank_layout *lay,
                            mpt_mem_plan *plan, mpt_error *err);

/* "params 1.2 MiB, grads ..., total ..." into buf. */
void mpt_memplan_format(const mpt_mem_plan *plan, char *buf, size_t n);
/* Human-readable size ("12.5 MiB") into buf. */
void mpt_format_bytes(size_t bytes, char *buf, size_t n);
/* Parses "512M", "2G", "1048576", "64K" (binary units). Returns 0 on bad input: not a number,
 * negative, inf or nan, or 8 EiB (2^63 bytes) or more. */
int mpt_parse_bytes(const char *s, size_t *out);

#endif
