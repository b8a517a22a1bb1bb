/* gpt.h — the single-rank GPT-2 engine: weights, activations, forward and backward.
 *
 * One mpt_gpt holds the flat parameter buffer (and its gradient buffer when training) laid out
 * by model/params.h, plus the activations of one micro-batch of B sequences of T tokens, all
 * from the caller's arena. Forward saves what backward needs; backward accumulates (+=) into
 * the gradients, so micro-batches accumulate until the caller zeroes them.
 *
 *   mpt_gpt m;  mpt_gpt_init(&m, &cfg, B, T, MPT_GPT_TRAIN, 1, &arena, &err);
 *   mpt_params_init_values(&m.pt, m.params, seed);
 *   mpt_gpt_forward(&m, inputs, targets, B, T, 1.0f / (B_global * T), &loss_sum, &err);
 *   mpt_gpt_backward(&m, inputs, B, T, &err);
 *
 * The kernels reach every tensor through the pointer tables w[] and g[] (one per tensor of
 * the table), which point into params/grads by default. Parallel code may re-point them (ZeRO-3
 * at gathered working copies, ZeRO-2 at a gradient staging buffer) from the hooks, which the
 * engine calls at fixed points of forward and backward:
 *   forward:  need(0,F) embed, need(1,F) block 0 done(1,F), ..., need(L+1,F) [need(0,F) when
 *             tied] head and loss
 *   backward: need(L+1,B) [need(0,B) when tied] head, ln_f; grads_done(L+1);
 *             for blocks L..1: need(u,B) backward grads_done(u);  need(0,B) embed grads_done(0)
 */
#ifndef MPT_GPT_H
#define MPT_GPT_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/status.h"
#include "model/config.h"
#include "model/moe.h"
#include "model/params.h"
#include "model/parops.h"

/* Every activation buffer, in one table so that the memory plan and the allocation are the
 * same list. Per-layer buffers hold all L layers back to back. N = B*T tokens; with sequence
 * parallelism the LayerNorm / residual buffers (ENCODED, LN*, RES*, LNF*) hold only this rank's
 * N/tp rows (its contiguous block of the flattened tokens). */
typedef enum mpt_act_slot {
    MPT_ACT_ENCODED,  /* (N, D) */
    MPT_ACT_LN1,      /* (L, N, D) */
    MPT_ACT_LN1_MEAN, /* (L, N) */
    MPT_ACT_LN1_RSTD, /* (L, N) */
    MPT_ACT_QKV,      /* (L, N, 3D/tp) this rank's heads */
    MPT_ACT_ATTY,     /* (L, N, D/tp) attention output before c_proj */
    MPT_ACT_LSE,      /* (L, B, H/tp, T) per-row log-sum-exp of the attention scores (the fused
                       * kernel's only saved statistic, core/attention.h) */
    MPT_ACT_RES2,     /* (L, N, D) residual after attention */
    MPT_ACT_LN2,      /* (L, N, D) */
    MPT_ACT_LN2_MEAN, /* (L, N) */
    MPT_ACT_LN2_RSTD, /* (L, N) */
    MPT_ACT_FCH,      /* (L, N, F/tp) c_fc output */
    MPT_ACT_FCH_GELU, /* (L, N, F/tp) */
    MPT_ACT_RES3,     /* (L, N, D) block output */
    MPT_ACT_LNF,      /* (N, D) */
    MPT_ACT_LNF_MEAN, /* (N) */
    MPT_ACT_LNF_RSTD, /* (N) */
    MPT_ACT_LOGITS,   /* (N, Vp/tp); after a forward with targets: dloss * dL/dlogits */
    MPT_ACT_LOSSES,   /* (N) per-token cross-entropy */
    MPT_ACT_GRAD_IN,  /* (N, D) pipeline stages but the last: the gradient of the stage's
                       * output, received from the next stage */
    MPT_ACT_MOE,      /* (L, mpt_moe_act_elems(N)) MoE blocks' saved routing and expert
                       * activations (model/moe.h); every block of the stage gets the same
                       * share when the model has experts, 0 otherwise */
    /* split backward only (place->split_w): each block's output gradients of its four linear
     * layers, saved by the input-gradient pass (B) for the weight-gradient pass (W) */
    MPT_ACT_DY_FCPROJ,  /* (L, N, D) */
    MPT_ACT_DY_FC,      /* (L, N, F/tp) */
    MPT_ACT_DY_ATTPROJ, /* (L, N, D) */
    MPT_ACT_DY_QKV,     /* (L, N, 3D/tp) */
    MPT_ACT_DY_LN,      /* (L, 4D) the block's LayerNorm weight gradients of B, added by W:
                         * ln_1 w, b, ln_2 w, b (so that W alone writes a block's gradients);
                         * 0 when they fit the block's LN means and rstds (model/gpt.c) */
    MPT_ACT_SLOTS
} mpt_act_slot;

/* The activations of one micro-batch. A pipeline stage keeps one set per micro-batch in flight;
 * mpt_gpt_forward / _backward work on the set m->cur points at. A slot lives in a[] (fp32) or,
 * when its dtype is MPT_BF16 (mpt_gpt_act_dtype), in h[] (bf16 bit patterns); the other is NULL. */
typedef struct mpt_gpt_acts {
    float *a[MPT_ACT_SLOTS];
    uint16_t *h[MPT_ACT_SLOTS];
} mpt_gpt_acts;

/* The element type of activation slot s. fp32, except under bf16 mixed precision (bf16 set)
 * for the saved inputs of the blocks' linear layers, which their GEMMs round to bf16 anyway:
 * LN1, ATTY, FCH_GELU, and LN2 unless the model has experts (the router reads LN2 in fp32).
 * Storing them rounded changes no GEMM result (rounding is idempotent); only the attention's
 * backward then reads the bf16 ATTY, as the standard recipe does. Pure: the plan uses it. */
mpt_dtype mpt_gpt_act_dtype(const mpt_config *cfg, int bf16, mpt_act_slot s);

/* Activation checkpointing (Korthikanti et al. 2022):
 *   NONE       keep every block's activations for backward
 *   SELECTIVE  Korthikanti's selective recompute drops the attention's s^2 term (scores and
 *              probabilities) and recomputes it in backward. The fused kernel
 *              (core/attention.h) never stores that term: it keeps the (B, H, T) log-sum-exp
 *              and its backward always recomputes the scores block by block. So selective has
 *              nothing left to drop: it keeps what NONE keeps and gives bit-identical results;
 *              the option stays for scripts and the planner.
 *   FULL       keep only each block's input; run the block's forward again in its backward */
typedef enum mpt_recompute { MPT_RECOMPUTE_NONE, MPT_RECOMPUTE_SELECTIVE, MPT_RECOMPUTE_FULL } mpt_recompute;

/* Where this rank's part of the model sits. NULL in mpt_gpt_init: the whole model here. */
typedef struct mpt_gpt_place {
    const mpt_par_ops *ops; /* parallel operations (model/parops.h; copied), or NULL: one rank */
    int tp, tp_rank;     /* tensor-parallel size (0 or 1: whole tensors) and this rank in it */
    int sp;              /* sequence parallelism over the tp group */
    int first_layer;     /* pipeline stage: blocks [first_layer, first_layer + n_layers) */
    int n_layers;
    int chunk_layers;    /* several model chunks (interleaved schedules; 0: one): local block i
                          * is model block first_layer + (i / chunk_layers) * chunk_stride
                          * + i % chunk_layers (model/params.h, mpt_params_build_chunks) */
    int chunk_stride;
    int first, last;     /* holds the embeddings / ln_f, head and loss */
    int recompute;       /* mpt_recompute */
    int threads;         /* compute threads (the trainer's --threads; <= 0: 1): sizes the fused
                          * attention's backward workspace, so plan and allocation agree */
    int split_w;         /* split backward (zero-bubble schedules): mpt_gpt_backward computes
                          * input gradients only (B) and mpt_gpt_backward_weights the blocks'
                          * linear weight gradients later (W); needs recompute none/selective */
    int cp, cp_rank;     /* context parallelism (0 or 1: the whole sequence here): this rank
                          * holds T/cp positions per sequence, zigzag chunks cp_rank and
                          * 2cp-1-cp_rank of 2cp; attention goes through ops->ring_attention_* */
    int ep, ep_rank;     /* expert parallelism (0 or 1: every expert here): this rank holds
                          * experts [ep_rank*E/ep, ..) of each MoE block; tokens go through
                          * ops->expert_dispatch / _combine */
    int bf16;            /* bf16 GEMMs (--dtype bf16): sizes their scratch, MPT_WORK_BF16 */
} mpt_gpt_place;

/* Backward scratch (workspace category). */
typedef enum mpt_work_slot {
    MPT_WORK_DRES,  /* (N, D) gradient flowing down the residual stream */
    MPT_WORK_DTMP,  /* (N, D) dln / datty; also forward scratch for projections */
    MPT_WORK_DQKV,  /* (N, 3D) */
    MPT_WORK_FLASH, /* mpt_flash_workspace(B, T, D/tp, H/tp, threads): the fused attention's
                     * backward (drow + per-thread dq accumulators); 0 under cp (the ring's
                     * own buffers, parallel/cp.h) */
    MPT_WORK_DFCG,  /* (N, F) */
    MPT_WORK_DFC,   /* (N, F) */
    MPT_WORK_CE,    /* (3N (tp + 1)) tp > 1: row max, sum of exponentials, target logit; the
                     * tp ranks' gathered (model/gpt_tp.h) */
    MPT_WORK_GATHER,/* (N, D) sp: a LayerNorm output or gradient all-gathered over tp */
    MPT_WORK_LNGRAD,/* (4D) sp: this rank's part of a block's LayerNorm gradients */
    MPT_WORK_MOE,   /* mpt_moe_work_elems(N): MoE routing, dispatch and expert scratch */
    MPT_WORK_BF16,  /* place->bf16: the bf16 GEMMs' rounded operand tiles, fp32 values
                     * (core/gemm_bf16.h: mpt_gemm_bf16_workspace(N, widest operand)) */
    MPT_WORK_STAGE16, /* place->bf16: (N, max(D, Fl)) one block's fp32 copy of an activation
                       * stored in bf16: forward writes it here, the GEMM reads it, then it is
                       * rounded into its slot; backward decodes the slot here */
    MPT_WORK_SPRECV,  /* ((tp-1) N/tp, D) sp: the other ranks' partial sums of this rank's
                       * rows, received by the overlapped reduce-scatter (parops.h) */
    MPT_WORK_SLOTS
} mpt_work_slot;

/* The pass a hook is called from. The split backward (place->split_w) calls a block's need
 * twice: in B (its weights are read, no gradient is written) and in W (its gradients are
 * written; its weights are read only when W recomputes the block's forward, recompute full). */
typedef enum mpt_gpt_phase {
    MPT_PHASE_FORWARD,
    MPT_PHASE_BACKWARD,   /* the whole backward of the unit: weights read, gradients written */
    MPT_PHASE_BACKWARD_B, /* split backward, a block's B */
    MPT_PHASE_BACKWARD_W  /* split backward, a block's W */
} mpt_gpt_phase;

/* Callbacks for parallel code; any may be NULL. A non-OK status stops forward/backward. */
typedef struct mpt_gpt_hooks {
    void *ctx;
    /* the weights of unit are about to be read */
    mpt_status (*need)(void *ctx, int unit, mpt_gpt_phase phase, mpt_error *err);
    /* forward has finished with unit's weights */
    mpt_status (*done)(void *ctx, int unit, mpt_gpt_phase phase, mpt_error *err);
    /* backward has finished writing unit's gradients (and reading its weights) */
    mpt_status (*grads_done)(void *ctx, int unit, mpt_error *err);
} mpt_gpt_hooks;

/* What mpt_gpt_init allocates. */
enum {
    MPT_GPT_PARAMS = 1,    /* the full flat parameter buffer */
    MPT_GPT_GRADS = 2,     /* the full flat gradient buffer */
    MPT_GPT_BACKWARD = 4,  /* backward workspace */
    MPT_GPT_NO_ACTS = 8,   /* no activation set (a pipeline executor brings its own) */
    MPT_GPT_TRAIN = 7,
    MPT_GPT_INFER = 1,
};

typedef struct mpt_gpt {
    mpt_config cfg;
    mpt_param_table pt;
    int B, T;                        /* largest micro-batch the buffers hold */
    int flags;                       /* MPT_GPT_* given to init */
    float *params;                   /* (pt.total) or NULL, owned via arena, kind params */
    float *grads;                    /* (pt.total) or NULL, kind grads */
    float **w, **g;                  /* (pt.n) pointer tables, owned (malloc) */
    mpt_gpt_hooks hooks;
    mpt_gpt_acts own;                /* the activation set init allocates (kind activations) */
    mpt_gpt_acts *cur;               /* the set forward / backward use: &own unless re-pointed */
    size_t act_n[MPT_ACT_SLOTS];     /* elements of each */
    mpt_dtype act_dtype[MPT_ACT_SLOTS]; /* their element types (mpt_gpt_act_dtype) */
    int slot_layers[MPT_ACT_SLOTS];  /* blocks each per-layer slot holds (1 when recomputed) */
    int recompute;                   /* mpt_recompute */
    int threads;                     /* attention backward threads (place->threads, >= 1) */
    int cp, cp_rank;                 /* context parallelism (place->cp; 1: none) */
    int split_w;                     /* place->split_w */
    float *work[MPT_WORK_SLOTS];     /* kind workspace */
    size_t work_n[MPT_WORK_SLOTS];
    mpt_arena *arena;                /* not owned */
    mpt_par_ops ops;                 /* the parallel operations (identity when tp == 1) */
    int tp, tp_rank;
    int sp;                          /* sequence parallelism over the tp group */
    int nl;                          /* blocks on this rank (the pipeline stage's) */
    int first, last;                 /* pipeline: embeddings here / ln_f, head and loss here */
    int Dl, Hl, Fl, Vl;              /* this rank's width of attention, heads, MLP, vocab rows */
    int v0, Vr;                      /* its first vocabulary row and how many of them are real */
    int ep, ep_rank;                 /* expert parallelism (place->ep; 1: none) */
    float moe_weight;                /* N * dloss of the last forward: the aux losses' weight */
    int moe_stats_on;                /* forward adds to moe (not a recompute in backward) */
    mpt_moe_stats moe;               /* MoE routing statistics, summed until the caller zeroes */
    mpt_moe_stats *moe_to;           /* where forward adds them: &moe of the model mpt_gpt_init
                                      * made, also from a pipeline chunk's copy (parallel/pp.c) */
} mpt_gpt;

/* The table index of local block l's router, SIZE_MAX for a dense block. Read from pt.layer
 * (an MoE block's c_fc slot is its first local expert's, right after the router), so it holds
 * in a pipeline chunk's view of the model too, whose pt.layer starts at the chunk's blocks. */
size_t mpt_gpt_router(const mpt_gpt *m, int l);
/* The MoE MLP of local block l (model/moe.c; mpt_gpt_router(m, l) != SIZE_MAX): out (N, D) from x
 * (N, D); backward: dx (N, D) overwritten with the input gradient, expert and router grads +=. */
mpt_status mpt_gpt_moe_forward(mpt_gpt *m, int l, float *out, const float *x, size_t N,
                               mpt_error *err);
mpt_status mpt_gpt_moe_backward(mpt_gpt *m, int l, float *dx, const float *dy, const float *x,
                                size_t N, mpt_error *err);
/* split_w: the W pass of block l's MoE MLP (x its ln_2 output, all rows). */
mpt_status mpt_gpt_moe_backward_weights(mpt_gpt *m, int l, const float *x, size_t N,
                                        mpt_error *err);

/* Element counts of every activation / workspace buffer for micro-batch (B, T). Pure: the
 * memory plan and mpt_gpt_init both use it. Returns 0 on size overflow. */
int mpt_gpt_buffer_sizes(const mpt_config *cfg, int B, int T, int training, int tp, int sp,
                         const mpt_gpt_place *place, size_t act_n[MPT_ACT_SLOTS],
                         size_t work_n[MPT_WORK_SLOTS]);
/* How many blocks each activation slot holds under recompute mode rc for a stage of nl blocks
 * (nl for per-block slots that are kept, 1 for the recomputed ones, 0 for the others). */
void mpt_gpt_slot_layers(int rc, int nl, int slot_layers[MPT_ACT_SLOTS]);

/* flags: MPT_GPT_*; unit_align as mpt_params_build_aligned. place->tp > 1: this rank holds
 * shard place->tp_rank of every tensor (model/params.h, mpt_split) and place->ops sums and
 * gathers over the tp group; all its ranks call forward and backward together.
 * Pipeline stage (place->first/last/layers): forward reads its input from cur->ENCODED when not
 * first (the executor receives it there) and leaves its output in the last block's RES3 when
 * not last; backward reads the output gradient from cur->GRAD_IN when not last and leaves the
 * input gradient in the DRES workspace when not first.
 * Tensor parallelism (Megatron), in terms of the table (model/parops.h): c_attn (by heads) and
 * c_fc are column-parallel, Y_i = X A_i, behind f (copy_to_tp: nothing forward,
 * copy_to_tp_backward for the input gradient); the c_proj layers are row-parallel,
 * Y = sum_i X_i A_i, followed by g (reduce_from_tp forward, nothing backward). The embedding
 * and the tied head are vocabulary-parallel: a masked lookup summed like a row-parallel output,
 * and a cross-entropy from vocab_max / vocab_sum of the row max, sum of exponentials and
 * target logit (full logits never gathered).
 * sp (needs tp > 1 and T % tp == 0): sequence parallelism (Korthikanti et al. 2022): the
 * LayerNorm and residual regions hold N/tp tokens; gather_seq before each column-parallel
 * layer and scatter_seq after each row-parallel one replace f and g, and ln_grad_sum adds the
 * LayerNorm weight gradients over tp. parallel/tp.c fills the table over the tp group. */
mpt_status mpt_gpt_init(mpt_gpt *m, const mpt_config *cfg, int B, int T, int flags,
                        size_t unit_align, const mpt_gpt_place *place, mpt_arena *arena,
                        mpt_error *err);
/* One more activation set (pipeline micro-batches in flight), from the arena; _free returns it. */
mpt_status mpt_gpt_acts_alloc(mpt_gpt *m, mpt_gpt_acts *a, mpt_error *err);
void mpt_gpt_acts_free(mpt_gpt *m, mpt_gpt_acts *a);
/* The split backward frees a set in two parts: slot s is read no later than B (1: the head's
 * LNF*, LOGITS, LOSSES and the received GRAD_IN, which W never reads) or until W (0). */
int mpt_gpt_slot_until_b(mpt_act_slot s);
/* One part of a set: part 1 the slots until B, 0 the others (unallocated slots stay NULL;
 * mpt_gpt_acts_free frees either part). */
mpt_status mpt_gpt_acts_alloc_part(mpt_gpt *m, mpt_gpt_acts *a, int part, mpt_error *err);
/* Points w[] / g[] of every tensor of unit u at base + (offset - unit_begin[u]). */
void mpt_gpt_point_unit(mpt_gpt *m, float **table, int u, float *base);
void mpt_gpt_free(mpt_gpt *m);

/* Initial values per CONTRACT §2: each element from (seed, tensor name, flat index), written
 * into a full flat buffer laid out by pt (padding zeroed). */
void mpt_params_init_values(const mpt_param_table *pt, float *params, uint64_t seed);
/* The same values for flat positions [begin, begin + n) only, into dst (n): lets a rank that
 * holds a slice (ZeRO-3) initialise it without the rest. */
void mpt_params_init_range(const mpt_param_table *pt, float *dst, size_t begin, size_t n,
                           uint64_t seed);

/* Forward over inputs (B,T) (B <= m->B, T <= m->T and <= n_positions). With targets, computes
 * per-token losses and leaves dloss * dL/dlogits in the logits buffer; *loss_sum gets the SUM
 * of the B*T token losses. Without targets leaves logits (B,T,Vp), first V columns. */
mpt_status mpt_gpt_forward(mpt_gpt *m, const int32_t *inputs, const int32_t *targets, int B,
                           int T, float dloss, double *loss_sum, mpt_error *err);
/* Backward of the last forward (which had targets); accumulates into the g[] tensors.
 * With split_w it is the input-gradient pass B: the embeddings' and the head's gradients (with
 * their grads_done), and the blocks' input gradients; a block's gradients are left to W: its
 * four linear layers' output gradients and its LayerNorm weight gradients are saved in the set
 * (DY_* slots), its need is called with MPT_PHASE_BACKWARD_B and no grads_done. */
mpt_status mpt_gpt_backward(mpt_gpt *m, const int32_t *inputs, int B, int T, mpt_error *err);
/* split_w only: the weight-gradient pass W of the set m->cur (after its B): per block, in
 * backward order (L..1): need (MPT_PHASE_BACKWARD_W), under full recompute the block's forward
 * again, its gradients (all of them: ZeRO-2/3 stage the unit here), grads_done. The unsplit
 * backward is B then W on the same numbers (the LayerNorm sums in another order). */
mpt_status mpt_gpt_backward_weights(mpt_gpt *m, int B, int T, mpt_error *err);

#endif
