/* trainer.h — the training loop: data, micro-batches, AdamW, checkpoints, JSONL log.
 *
 * The caller (cli/) fills mpt_train_opts; mpt_train() validates everything it can before the
 * first step (MPT_ERR_INPUT), then trains, reporting each step to an optional callback (the
 * library never prints). A failure while running returns MPT_ERR_RUN and leaves the last
 * checkpoint as it was. */
#ifndef MPT_TRAINER_H
#define MPT_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "comm/comm.h"
#include "core/dtype.h"
#include "core/status.h"
#include "model/config.h"
#include "plan/memplan.h"
#include "train/adamw.h"

/* The ranges mpt_train accepts (MPT_ERR_INPUT outside them); the command line uses the same
 * numbers. Model sizes are limited in model/config.h. */
#define MPT_MAX_THREADS 1024          /* compute threads per rank */
#define MPT_MAX_BATCH 1048576         /* sequences per step, 2^20 */
#define MPT_MAX_STEPS 1000000000L     /* optimizer steps (and warm-up, save-every) */
#define MPT_MAX_PARALLEL 65536        /* each of dp, tp (pp: at most 64 stages) */
#define MPT_MAX_PP 64
#define MPT_MAX_VIRTUAL 64 /* --virtual-stages */
#define MPT_MAX_LR 10.0               /* lr in (0, 10] */
#define MPT_MAX_WEIGHT_DECAY 10.0     /* weight decay in [0, 10] */
#define MPT_MAX_GRAD_CLIP 1e6         /* grad clip in [0, 1e6]; 0 = no clipping */
#define MPT_MAX_BUCKET_MB 65536.0     /* gradient bucket in (0, 64 GiB] */
#define MPT_MAX_STALL_SECONDS 1e6     /* testing: --debug-stall-seconds */
#define MPT_MAX_EVAL_BATCHES 1000000  /* --eval-batches */
#define MPT_MAX_VAL_FRACTION 0.5      /* --val-fraction in [0, 0.5] */
#define MPT_MAX_DATA_FILES 1000000    /* token files (shards) of --data */

typedef struct mpt_train_opts {
    mpt_config cfg;          /* architecture (ignored when resuming / init-from: theirs wins) */
    const char *model_name;  /* for the log */
    const char *data_path;   /* llm.c token file (when n_data == 0; also named in the log) */
    const char *const *data_paths; /* n_data > 0: several token files (shards), one stream in
                              * this order (train/data.h) */
    int n_data;
    const char *val_path;    /* validation token file, or NULL */
    double val_fraction;     /* > 0: the last floor(n * fraction) tokens of the data stream are
                              * held out: training's order rule applies to the first n - that
                              * many only, and they are the validation set unless val_path */
    long eval_every;         /* evaluate after every this many steps and after the last; 0 never */
    int eval_batches;        /* K: evaluation batches of `batch` sequences (default 4) */
    int batch;               /* B: sequences per optimizer step */
    int microbatches;        /* M: B % M == 0 */
    int seq_len;             /* T <= n_positions */
    long steps;              /* train until this many optimizer steps are done */
    uint64_t seed;
    mpt_adamw opt;
    int threads;             /* OpenMP + BLAS threads */
    size_t mem_limit;        /* bytes, 0 = none */
    const char *log_path;    /* JSONL or NULL */
    const char *trace_path;  /* Chrome trace JSON or NULL */
    const char *save_dir;    /* NULL = no checkpoints */
    int save_every;          /* 0 = only at the end */
    int keep;                /* newest checkpoints kept, 0 = all */
    int save_sharded;        /* 1: every rank writes its own slices (train/ckpt_shard.h) in
                              * place of one model.safetensors (--save-format sharded) */
    const char *resume;      /* checkpoint dir (or root with latest) */
    const char *init_from;   /* Hugging Face GPT-2 dir: weights only */
    const char *dump_path;   /* testing: safetensors of step-1 logits + gradients */
    int dp;                  /* data-parallel replicas */
    int tp;                  /* tensor-parallel ranks (dp * tp = world size for now) */
    int sp;                  /* sequence parallelism over the tp ranks */
    int pp;                  /* pipeline stages (dp * tp * pp * cp = world size) */
    int cp;                  /* context-parallel ranks: each holds T/cp positions (zigzag) */
    int ep;                  /* expert-parallel ranks, inside dp (parallel/ep.h); 0 or 1: none */
    const char *schedule;    /* naive|gpipe|1f1b|interleaved|zb-h1|zb-v|2bw (default 1f1b) */
    const char *partition;   /* uniform | auto | L0,L1,... (default uniform) */
    int virtual_stages;      /* interleaved: model chunks per pipeline rank (0 or 1: one) */
    int recompute;           /* mpt_recompute: none, selective, full */
    mpt_dtype dtype;         /* MPT_F32 (default) or MPT_BF16: GEMMs take bf16 operands and
                              * accumulate in fp32 (core/gemm_bf16.h); master weights, gradients,
                              * AdamW, LayerNorm, attention and the loss stay fp32 */
    mpt_dtype grad_reduce_dtype; /* MPT_F32 (default) or MPT_BF16: the dp gradient rings send
                              * bf16 and add in fp32 on receipt (parallel/dp_ring.h) */
    int zero;                /* ZeRO stage 0..3 */
    int z3_gather_step;      /* zero 3: gather every unit once per step (--zero3-gather step)
                              * instead of per layer pass (layer, the default) */
    double bucket_mb;        /* gradient bucket size in MiB for zero 0/1; 0 (the default): one
                              * bucket of the whole gradient when the job runs on one node, else
                              * 4 (parallel/dp.h, dp_node.c) */
    int stall_rank;          /* testing: this world rank sleeps stall_seconds before ... */
    long stall_step;         /* ... this step (1-based; 0 = never), to exercise the watchdog */
    double stall_seconds;
    int on_nan_skip;         /* a non-finite loss or gradient norm: 0 stops the run (MPT_ERR_RUN,
                              * before anything is saved), 1 skips the step's update */
    double probe_seconds;    /* testing (bench/plan_vs_measured.sh): > 0: after every step's
                              * figures but the last's, outside its timed span, world rank 0
                              * takes the machine-state probe (plan/probe.h, this many seconds per phase,
                              * one thread per online core) while every rank waits at a barrier,
                              * and the step line logs probe_solo and probe_pair (FLOP/s); 0 =
                              * none. Every rank must get the same value. */
    long nan_step;           /* testing: poison this step (1-based; 0 = never) on the last
                              * world rank: its loss (nan_grad 0) or its gradients (nan_grad 1) */
    int nan_grad;
} mpt_train_opts;

void mpt_train_opts_defaults(mpt_train_opts *o);

typedef struct mpt_step_info {
    long step, steps;        /* step is 1-based */
    double loss, lr, grad_norm;
    double tokens_per_s, step_ms, mfu;
    size_t peak_mem_bytes;
    double bubble;           /* pp > 1: idle fraction of the pipeline ranks; else -1 */
    double bubble_sim;       /* pp > 1: the schedule's simulated bubble on this step's measured
                              * costs, every action at its own duration (parallel/pp_replay.h);
                              * else -1 */
    double bubble_sim_mean;  /* pp > 1: the same on the stages' mean costs (mpt_pp_measure) */
    double val_loss;         /* evaluation steps: the mean validation loss; else -1 */
    double cpu_share;        /* the ranks' CPU seconds in the step over step time x the cores
                              * they could use (min(ranks x threads, this node's cores)): 1 on a
                              * quiet machine, less when other work shares the cores */
    int skipped;             /* --on-nan skip: the loss (1) or else the gradient norm (2) was not
                              * finite on some rank and the update was skipped (parameters and
                              * AdamW state unchanged); 0: a normal step */
    const struct mpt_moe_stats *moe; /* MoE models: the step's routing statistics, summed over
                              * the global batch (model/moe.h); else NULL */
    int experts;             /* E of the MoE blocks */
    double probe_solo, probe_pair; /* probe_seconds > 0: the probe after this step (FLOP/s per
                              * thread, plan/probe.h); 0 otherwise */
} mpt_step_info;

typedef struct mpt_train_result {
    long first_step, last_step;     /* 1-based steps run in this call */
    double first_loss, last_loss;
    double val_loss;                /* the last evaluation's mean loss, -1 if none */
    long val_step;                  /* the step it followed */
    size_t train_tokens, val_tokens;/* tokens training's order rule reads; of the validation set */
    double seconds, tokens_per_s, mfu;
    double peak_flops;              /* measured FMA peak of the cores used */
    mpt_mem_plan plan;              /* planned bytes of this rank */
    size_t plan_max;                /* the largest rank's planned total */
    size_t peak[6];                 /* measured peak by mpt_mem_kind, [5] = total */
    char saved_dir[1024];           /* last checkpoint written, "" if none */
    mpt_config cfg;                 /* the architecture trained */
    long long n_params;
    int stage_layers[64];           /* pp > 1: blocks of each pipeline stage */
} mpt_train_result;

typedef void (*mpt_step_fn)(const mpt_step_info *info, void *ctx);
/* Called once after validation, before the first step (plan and sizes known). */
typedef void (*mpt_start_fn)(const mpt_train_result *res, void *ctx);

/* All ranks of world call with the same options. Callbacks run on world rank 0 only; res is
 * filled on every rank (memory figures: the largest rank). Errors are agreed: every rank
 * returns the same status and message. */
mpt_status mpt_train(mpt_comm *world, const mpt_train_opts *o, mpt_start_fn on_start,
                     mpt_step_fn on_step, void *ctx, mpt_train_result *res, mpt_error *err);

#endif
