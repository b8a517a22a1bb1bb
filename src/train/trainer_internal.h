/* trainer_internal.h — the state of one training run, shared by trainer.c (the loop) and
 * trainer_setup.c (validation, allocation, checkpoints). Not public. */
#ifndef MPT_TRAINER_INTERNAL_H
#define MPT_TRAINER_INTERNAL_H

#include "core/arena.h"
#include "model/gpt.h"
#include "model/params.h"
#include "parallel/cp.h"
#include "parallel/dp.h"
#include "parallel/ep.h"
#include "parallel/groups.h"
#include "parallel/placement.h"
#include "parallel/pp.h"
#include "parallel/pp_2bw.h"
#include "parallel/pp_replay.h"
#include "train/data.h"
#include "train/jsonlog.h"
#include "train/trace.h"
#include "train/trainer_stats.h"
#include "train/trainer.h"

/* 2bw's deferred update of one step in flight (train/trainer_2bw.c) */
typedef struct mpt_2bw_defer {
    double vals[3];           /* loss sum, squared norm, non-finite flag: summed over pp */
    mpt_req red, tied;        /* that sum; the tied wte's send */
    float *grads;             /* the gradient buffer holding the step's gradients (ZeRO-2: the
                               * slice) */
    float *held;              /* ZeRO-2: its held (tied wte) gradient, whole; or NULL */
    double loss, norm;        /* the step's results, from its update */
    float lr;
    int skipped;
} mpt_2bw_defer;

typedef struct mpt_run {
    mpt_comm *world;          /* not owned */
    const mpt_train_opts *o;  /* not owned */
    double bucket_mb;         /* the dp bucket in MiB, o->bucket_mb or its default by node
                               * (MPT_DP_BUCKET_WHOLE: the whole gradient; parallel/dp.h) */
    mpt_config cfg;           /* the architecture (from the checkpoint when resuming) */
    int T;                    /* tokens per sequence */
    int Tl;                   /* of them on this rank: T / cp (zigzag chunks, parallel/cp.h) */
    int Bm;                   /* sequences per micro-batch on this rank */
    char ckpt[1024];          /* checkpoint to start from, or "" */
    mpt_placement place;      /* where this rank sits: coordinates, sizes, its stage's blocks */
    mpt_groups groups;        /* this rank's tp / dp / pp communicators */
    mpt_comm embed;           /* first + last pipeline stage (tied wte), when pp > 1 */
    mpt_comm dpcp;            /* cp > 1: the dp x cp group gradients are reduced over */
    mpt_cp cp;                /* cp > 1: the ring attention's context and buffers */
    mpt_ep ep;                /* ep > 1: dispatch counts and expert gradients (comm NULL else) */
    mpt_comm edp;             /* ep > 1: the dp ranks holding the same experts */
    int stage_count[64];      /* the partition: blocks of every pipeline stage */
    mpt_pp_kind kind;
    int v;                    /* model chunks per pipeline rank (interleaved; else 1) */
    float *stash;             /* --schedule 2bw: the previous step's weights (pt.total; ZeRO-3:
                               * the rank's slice, dp.shard_n), kind params; the step's forwards
                               * and backwards run on them */
    mpt_buflist stash_bufs;   /* owned: the list stash comes from */
    int stash_loaded;         /* the stash came from the checkpoint resumed (W(t-1)) */
    mpt_pp_2bw bw;            /* 2bw: the running segment without a flush (pp_2bw.h) */
    float *grads1, *grads2;   /* 2bw deferred: the model's gradient buffer and a second one
                               * (pt.total, kind grads, from stash_bufs; ZeRO-2: the dp
                               * module's gradient slice and a second one); NULL otherwise */
    float *held1, *held2;     /* 2bw deferred, ZeRO-2: the dp module's held gradient (the tied
                               * wte's, whole) and a second one; NULL otherwise */
    mpt_2bw_defer defer[2];   /* by step parity */
    double carry[6];          /* 2bw deferred: the figures of the window the next step's log
                               * line reports (seconds, busy, wall, bubble_sim, its mean, the
                               * world's CPU seconds) */
    const mpt_adamw *opt;     /* 2bw deferred: the run's optimizer settings (not owned) */
    mpt_run_stats stats;      /* 2bw deferred: the log's figures gathered a window late */
    int z3_whole;             /* ZeRO-3 gathers every unit once per step (--zero3-gather step) */
    mpt_param_table full;     /* the whole-tensor table checkpoints use */
    mpt_arena arena;
    mpt_gpt model;
    mpt_moe_stats moe;       /* the last step's MoE statistics, summed over the ranks */
    mpt_dp dp;
    mpt_pp pp;                /* the pipeline executor (one stage when pp == 1) */
    int32_t *inputs, *targets;/* (Bm, T), kind workspace */
    mpt_buflist token_bufs;   /* owned: the list inputs and targets come from */
    size_t batch_n;
    mpt_data data;            /* the training stream (--data: one file or shards) */
    mpt_data val;             /* --val-data, when given */
    mpt_data_view train_view; /* what training's order rule reads */
    mpt_data_view val_view;   /* the validation set (n == 0: none) */
    mpt_jsonlog log;
    mpt_trace trace;
    int rank0;
    long step;                /* the step being run (for the data callback) */
    float *logits_copy;       /* --dump-step1 on one rank: step 1's logits (owned, malloc) */
    double plan_max;          /* the largest rank's planned bytes */
    double *rank_mem;         /* end of run: 4 figures per world rank (plan, peak, activations) */
} mpt_run;

/* Everything that can fail before the first step. All ranks call both, in order; each returns
 * this rank's status (the caller agrees on it). */
mpt_status mpt_run_prepare(mpt_run *r, mpt_train_result *res, mpt_error *err);
mpt_status mpt_run_allocate(mpt_run *r, long *start, mpt_error *err);
void mpt_run_free(mpt_run *r);

/* Initial values, or the checkpoint r->ckpt (this rank's part of it); *start = its step
 * (all ranks call). */
mpt_status mpt_run_load(mpt_run *r, long *start, mpt_error *err);
/* Checkpoint of step `step` (all ranks call; world rank 0 writes). */
mpt_status mpt_run_save(mpt_run *r, long step, mpt_train_result *res, mpt_error *err);
/* --schedule 2bw (train/trainer_2bw.c): 1 when its update is deferred (pp > 1, dense,
 * ZeRO 0/1, any dp and cp); the steps from step a run without a flush (to the next evaluation,
 * checkpoint or the end; 1 when m < p or MoE); one step (the trainer's step_ when deferred); free. */
int mpt_run_2bw_deferred(const mpt_train_opts *o, const mpt_config *cfg);
int mpt_run_2bw_segment(const mpt_run *r, long a);
/* Where this rank keeps the live weight version (the model's params; ZeRO-3: the dp module's
 * parameter slice, between windows) and its length in elements (the stash's). */
float *mpt_run_2bw_live(const mpt_run *r);
size_t mpt_run_2bw_version_n(const mpt_run *r);
mpt_status mpt_run_2bw_step(mpt_run *r, const mpt_adamw *opt, long step, double *loss,
                            double *norm, float *lr, double busy[2], int *skipped,
                            mpt_error *err);
/* 2bw deferred (train/trainer_stats.c): 1 when step's log line takes its cross-rank figures
 * from reductions started a window earlier (a window inside its segment: no barrier between
 * windows). mpt_run_stats_swap then completes window k-1's reductions (k = the step's window;
 * for k = 1 the carry of window 0), puts its figures into dt, peak, cpu, busy and bubble_sim
 * (per action, per stage mean) for the line, and starts window k's from this rank's values
 * given in them (with rank 0's failed log write, agreed when they complete). All ranks call,
 * at the same steps.
 * mpt_run_stats_finish completes what is in flight into r->carry (for the segment's last line,
 * mpt_run_2bw_attribute, which adds the carried window's CPU sum to the line's own; cpu is
 * left as it is);
 * mpt_run_stats_log: the log write's status, agreed now or (async) later. */
int mpt_run_stats_async(const mpt_run *r, long step);
mpt_status mpt_run_stats_swap(mpt_run *r, long step, double *dt, double *peak, double *cpu,
                              double busy[2], double bubble_sim[2], mpt_error *err);
mpt_status mpt_run_stats_finish(mpt_run *r, double *cpu, mpt_error *err);
mpt_status mpt_run_stats_log(mpt_run *r, long step, mpt_status st, mpt_error *err);
/* trainer_probe.c (train --debug-probe-seconds; every rank calls it between the same two
 * steps): world rank 0 takes the machine-state probe (plan/probe.h: `seconds` a phase, one
 * thread per online core; FLOP/s per thread into *solo, *pair, 0 on the other ranks) while the
 * others wait at a barrier; then restores `threads` as the OpenMP team size. */
mpt_status mpt_run_probe(mpt_run *r, double seconds, int threads, double *solo, double *pair,
                         mpt_error *err);
void mpt_run_stats_free(mpt_run_stats *s);
void mpt_run_2bw_free(mpt_run *r);
/* The step's log figures (after the pipeline group's sums: busy[0] summed, busy[1] the
 * longest window; bubble_sim) when deferred. A segment's window k ends before the last
 * stage's first forward of step k+2, so window 0 holds the fill and about two steps' work,
 * window k (0 < k < S-1) about step k+1's, window S-1 only the last update. Step 0's and 1's
 * lines get half of window 0 each, step k's (1 < k < S-1) window k-1's, step S-1's window
 * S-2's and its own, CPU seconds (cpu, the world's) the same way. Otherwise (not deferred, or
 * one step) unchanged. */
void mpt_run_2bw_attribute(mpt_run *r, long step, double *dt, double *cpu, double busy[2],
                           double bubble_sim[2]);
/* 2bw: window n's bubble_sim from the pipeline's gathered records (recs) and their per-stage
 * costs: sim[0] on each action's own duration (parallel/pp_replay.h), sim[1] on the stages'
 * means (mpt_pp_2bw_window_bubble); -1 where a window has none. Pure. */
mpt_status mpt_run_2bw_sim(const mpt_run *r, int n, const double *recs, const double *costs,
                           double sim[2], mpt_error *err);
/* The trainer's data callback (micro-batch mb of step r->step). */
void mpt_run_batch(void *ctx, int mb, int32_t *inputs, int32_t *targets);

/* Step-1 gradients (+ logits on one rank) for reference comparisons (all ranks call). */
mpt_status mpt_run_dump(mpt_run *r, const float *logits_copy, mpt_error *err);

#endif
