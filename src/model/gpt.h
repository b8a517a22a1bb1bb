/* gpt.h — the single-rank GPT-2 engine: weights, activations, forward and backward.
 *
 * One mpt_gpt holds the flat parameter buffer (and its gradient buffer when training) laid out
 * by model/params.h, plus the activations of one micro-batch of B sequences of T tokens, all
 * from the caller's arena. Forward saves what backward needs; backward accumulates (+=) into
 * grads, so micro-batches accumulate until the caller zeroes grads.
 *
 *   mpt_gpt m;  mpt_gpt_init(&m, &cfg, B, T, 1, &arena, &err);  mpt_gpt_init_weights(&m, seed);
 *   loss_sum = mpt_gpt_forward(&m, inputs, targets, B, T, 1.0f / (B_global * T));
 *   mpt_gpt_backward(&m, inputs, B, T);
 */
#ifndef MPT_GPT_H
#define MPT_GPT_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/status.h"
#include "model/config.h"
#include "model/params.h"

/* Every activation buffer, in one table so that the memory plan and the allocation are the
 * same list. Per-layer buffers hold all L layers back to back. */
typedef enum mpt_act_slot {
    MPT_ACT_ENCODED,  /* (N, D) */
    MPT_ACT_LN1,      /* (L, N, D) */
    MPT_ACT_LN1_MEAN, /* (L, N) */
    MPT_ACT_LN1_RSTD, /* (L, N) */
    MPT_ACT_QKV,      /* (L, N, 3D) */
    MPT_ACT_ATTY,     /* (L, N, D) attention output before c_proj */
    MPT_ACT_ATT,      /* (L, B, H, T, T) softmax probabilities */
    MPT_ACT_RES2,     /* (L, N, D) residual after attention */
    MPT_ACT_LN2,      /* (L, N, D) */
    MPT_ACT_LN2_MEAN, /* (L, N) */
    MPT_ACT_LN2_RSTD, /* (L, N) */
    MPT_ACT_FCH,      /* (L, N, F) c_fc output */
    MPT_ACT_FCH_GELU, /* (L, N, F) */
    MPT_ACT_RES3,     /* (L, N, D) block output */
    MPT_ACT_LNF,      /* (N, D) */
    MPT_ACT_LNF_MEAN, /* (N) */
    MPT_ACT_LNF_RSTD, /* (N) */
    MPT_ACT_LOGITS,   /* (N, Vp); after a forward with targets: dloss * dL/dlogits */
    MPT_ACT_LOSSES,   /* (N) per-token cross-entropy */
    MPT_ACT_SLOTS
} mpt_act_slot;

/* Backward scratch (workspace category). */
typedef enum mpt_work_slot {
    MPT_WORK_DRES,  /* (N, D) gradient flowing down the residual stream */
    MPT_WORK_DTMP,  /* (N, D) dln / datty; also forward scratch for projections */
    MPT_WORK_DQKV,  /* (N, 3D) */
    MPT_WORK_DATT,  /* (B, H, T, T) */
    MPT_WORK_DFCG,  /* (N, F) */
    MPT_WORK_DFC,   /* (N, F) */
    MPT_WORK_SLOTS
} mpt_work_slot;

typedef struct mpt_gpt {
    mpt_config cfg;
    mpt_param_table pt;
    int B, T;                        /* largest micro-batch the buffers hold */
    int training;                    /* grads and backward workspace exist */
    float *params;                   /* (pt.total) owned via arena, kind params */
    float *grads;                    /* (pt.total) or NULL, kind grads */
    float *act[MPT_ACT_SLOTS];       /* kind activations */
    size_t act_n[MPT_ACT_SLOTS];     /* elements of each */
    float *work[MPT_WORK_SLOTS];     /* kind workspace */
    size_t work_n[MPT_WORK_SLOTS];
    mpt_arena *arena;                /* not owned */
} mpt_gpt;

/* Element counts of every activation / workspace buffer for micro-batch (B, T). Pure: the
 * memory plan and mpt_gpt_init both use it. Returns 0 on size overflow. */
int mpt_gpt_buffer_sizes(const mpt_config *cfg, int B, int T, int training,
                         size_t act_n[MPT_ACT_SLOTS], size_t work_n[MPT_WORK_SLOTS]);

mpt_status mpt_gpt_init(mpt_gpt *m, const mpt_config *cfg, int B, int T, int training,
                        mpt_arena *arena, mpt_error *err);
void mpt_gpt_free(mpt_gpt *m);

/* Initial values per CONTRACT §2: each element from (seed, tensor name, flat index). */
void mpt_gpt_init_weights(mpt_gpt *m, uint64_t seed);

/* Forward over inputs (B,T) (B <= m->B, T <= m->T and <= n_positions). With targets, computes
 * per-token losses and leaves dloss * dL/dlogits in the logits buffer; returns the SUM of the
 * B*T token losses. Without targets returns 0 and leaves logits (B,T,Vp), first V columns. */
double mpt_gpt_forward(mpt_gpt *m, const int32_t *inputs, const int32_t *targets, int B, int T,
                       float dloss);
/* Backward of the last forward (which had targets); accumulates into m->grads. */
void mpt_gpt_backward(mpt_gpt *m, const int32_t *inputs, int B, int T);

static inline float *mpt_gpt_param(const mpt_gpt *m, size_t tensor_index) {
    return m->params + m->pt.t[tensor_index].offset;
}
static inline float *mpt_gpt_grad(const mpt_gpt *m, size_t tensor_index) {
    return m->grads + m->pt.t[tensor_index].offset;
}

#endif
