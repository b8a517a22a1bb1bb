/* plan.h — the planner's memory model: what one training job needs per rank, from the runtime's
 * own memory plan (plan/memplan.h), evaluated for every pipeline stage of a layout.
 *
 * Nothing here allocates training state: a 175B model on thousands of ranks is planned in
 * milliseconds. The per-stage split comes from parallel/partition.h, the activation sets alive
 * at once from the pipeline schedule (mpt_pp_sets_needed), the bytes of every buffer from
 * mpt_memplan_rank — the same calls the trainer makes before it allocates, so that what `plan`
 * predicts is what `train` reserves.
 *
 *   mpt_plan_job job;   mpt_plan_job_defaults(&job);
 *   mpt_plan_model(&job.cfg, "gpt3-175b", &err);  job.batch = 1536;  job.seq_len = 2048;
 *   mpt_plan_layout lay; mpt_plan_layout_defaults(&lay);
 *   lay.tp = 8; lay.pp = 16; lay.dp = 8; lay.zero = 1; lay.microbatches = 64;
 *   mpt_plan_memory mem;
 *   if (mpt_plan_memory_eval(&job, &lay, &mem, &err)) ... err.msg says what to change
 *   mem.worst.total: bytes of the largest rank; mem.sum_total: all ranks together.
 *
 * Precision: the runtime keeps fp32 parameters, gradients and AdamW state in both precisions
 * (4 + 4 + 8 = 16 bytes per parameter, before ZeRO divides them). bf16 (`train --dtype bf16`)
 * stores the linear layers' saved inputs in bf16 (model/gpt.h mpt_gpt_act_dtype: fewer
 * activation bytes, one block's fp32 staging in the workspace) and adds the bf16 GEMMs' operand
 * scratch (workspace, MPT_WORK_BF16): it rounds the fp32 weights tile by tile instead of
 * keeping a 2-byte working copy, so it stays at 16 bytes per parameter where Megatron's mixed precision takes 18 (2 bf16 weights + 4 fp32
 * gradients + 4 master + 8 Adam), or 6 + 12/N with its distributed optimizer against ZeRO-1's
 * 8 + 8/N here. Pure and thread-compatible. */
#ifndef MPT_PLAN_H
#define MPT_PLAN_H

#include <stddef.h>

#include "core/status.h"
#include "model/config.h"
#include "plan/memplan.h"
#include "parallel/schedule.h"

#define MPT_PLAN_MAX_STAGES 1024 /* pipeline stages x virtual stages */
#define MPT_PLAN_MAX_CHUNKS 64   /* model chunks per pipeline rank (train's MPT_MAX_VIRTUAL) */

enum { MPT_PREC_FP32, MPT_PREC_BF16 };

/* What is trained: the architecture, the global batch, the precision. */
typedef struct mpt_plan_job {
    mpt_config cfg;      /* padded_vocab is recomputed per layout (a multiple of 64*tp) */
    int batch;           /* sequences per optimizer step (global) */
    int seq_len;         /* tokens per sequence (<= cfg.n_positions) */
    int precision;       /* MPT_PREC_* */
    double bucket_mb;    /* data-parallel gradient bucket, MiB; 0 (the default): as the
                          * trainer's default, the whole gradient when the layout's ranks fit
                          * one node (per_node), else 4 (parallel/dp.h) */
    int per_node;        /* ranks per node (a cluster's); 0: every rank on this one node */
    double moe_imbalance;/* MoE: rows of the busiest expert over the mean (train's logged
                          * moe_imbalance; <= 1: balanced). With ep > 1 the busiest ep rank's
                          * experts run at most that many times the mean rows, and every rank
                          * of the group waits for it in the combine all-to-all: the simulator
                          * stretches the experts' compute by it (ep 1: one rank runs every
                          * row whatever the split) */
    double moe_dropped;  /* MoE with a capacity factor: the share of the assignments dropped at
                          * capacity (train's logged moe_dropped_frac; 0, the default: none
                          * beyond what a capacity factor below 1 drops by itself). moe.c skips
                          * a dropped row everywhere after the routing (gathers, all-to-alls,
                          * the experts' GEMMs): the experts run on (1 - dropped) of the rows on
                          * the mean rank, while the busiest ep rank is capped at the capacity
                          * (sim.c) */
    int threads;         /* compute threads per rank (the fused attention's workspace grows
                          * with them); 0: this node's cores / the layout's ranks, as `train`
                          * defaults on one node */
    size_t mem_limit;    /* bytes per rank the job may use (0: none): decides ZeRO-3's
                          * whole-stage gathering as the trainer does */
} mpt_plan_job;

/* Where the ranks go. world = dp * tp * pp * cp (ep splits dp x cp: experts / ep per rank). */
typedef struct mpt_plan_layout {
    int dp, tp, pp, cp, ep;
    int sp;              /* sequence parallelism over tp */
    int zero;            /* 0..3 */
    int microbatches;    /* m: micro-batches per step per replica */
    int virtual_stages;  /* v: model chunks per pipeline rank (interleaved) */
    mpt_pp_kind schedule;
    int recompute;       /* mpt_recompute */
    char partition[64];  /* "uniform" | "auto" | "L0,L1,..." */
} mpt_plan_layout;

/* The memory of every stage of a layout. */
typedef struct mpt_plan_memory {
    mpt_mem_plan worst;        /* the largest rank's plan */
    int worst_stage;
    int stages;                /* pp (interleaved: stage_* are per pipeline rank, its chunks
                                * together) */
    int stage_layers[MPT_PLAN_MAX_STAGES];
    size_t stage_total[MPT_PLAN_MAX_STAGES];
    int z3_whole;              /* ZeRO-3 keeps each stage gathered through the step */
    size_t sum[MPT_MEM_KINDS]; /* summed over all world ranks */
    size_t sum_total;
    long long n_params;        /* parameters as a checkpoint holds them */
} mpt_plan_memory;

void mpt_plan_job_defaults(mpt_plan_job *j);
void mpt_plan_layout_defaults(mpt_plan_layout *l);
/* world size of the layout, or -1 on overflow / a size < 1. */
long mpt_plan_layout_world(const mpt_plan_layout *l);
/* Model chunks per pipeline rank, as the trainer runs the schedule: interleaved v, zb-v 2 (the
 * V: rank r holds stages r and 2p-1-r), else 1. */
int mpt_plan_chunks(const mpt_plan_layout *l);
/* "dp8 tp4 pp12 zero1 m16 1f1b full" style into buf. */
void mpt_plan_layout_str(const mpt_plan_layout *l, char *buf, size_t n);

/* Model presets for planning, as well as the training presets (model/config.h):
 *   gpt3-175b     L96 D12288 H96, 2048 positions, vocab 50257 (Brown et al. 2020)
 *   bloom-176b    L70 D14336 H112, 2048 positions, vocab 250880 (BigScience 2022; its ALiBi
 *                 positions and embedding LayerNorm are planned as GPT-2's learned positions)
 *   gpt-1.7b, gpt-7.5b, gpt-39b, gpt-146b, gpt-530b, gpt-1t
 *                 the six models of Narayanan et al. 2021 Table 1 (vocab 51200, 2048 positions)
 * A FILE.json (Hugging Face GPT2Config) is read by the caller. */
mpt_status mpt_plan_model(mpt_config *cfg, const char *name, mpt_error *err);
/* The preset names, comma separated. */
const char *mpt_plan_model_names(void);

/* Checks a job and layout up front (MPT_ERR_INPUT naming the option to change): sizes >= 1,
 * ep as the trainer takes it (dividing the experts and inside dp x cp, parallel/mesh.h; no sp
 * with experts), tp divides heads and ffn, sp needs tp > 1 and
 * seq_len % tp == 0, batch divisible by dp * microbatches, pp*v <= layers, the schedule
 * (mpt_pp_check), ZeRO stage 0..3. Fills *cfg with the job's architecture finished for the
 * layout (padded vocabulary a multiple of 64*tp, as the trainer pads it). */
mpt_status mpt_plan_check(const mpt_plan_job *job, const mpt_plan_layout *l, mpt_config *cfg,
                          mpt_error *err);

/* Blocks of each of the p*v stages (v = mpt_plan_chunks): the runtime's partitioner. */
mpt_status mpt_plan_partition(const mpt_plan_job *job, const mpt_plan_layout *l,
                              const mpt_config *cfg, int *counts, mpt_error *err);

/* Evaluates the runtime's memory plan for every pipeline stage (every tp rank and replica of a
 * stage has the same plan) (--precision bf16: the runtime's bf16 tables), every schedule the
 * trainer runs (chunked ones: stage_* are per pipeline rank, its chunks together).
 * MPT_ERR_INPUT for a bad layout. */
mpt_status mpt_plan_memory_eval(const mpt_plan_job *job, const mpt_plan_layout *l,
                                mpt_plan_memory *out, mpt_error *err);
/* As mpt_plan_memory_eval for pipeline ranks 0 and p-1 only (sums and stage_total of the others
 * left 0): the search's first cut, as the first rank holds the most activation sets in flight
 * and the ends hold the embeddings and the head; a layout that passes it is evaluated whole. */
mpt_status mpt_plan_memory_ends(const mpt_plan_job *job, const mpt_plan_layout *l,
                                mpt_plan_memory *out, mpt_error *err);

#endif
