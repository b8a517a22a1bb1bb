/* adamw.h — the optimizer of CONTRACT §5: AdamW exactly as torch.optim.AdamW, global-norm
 * gradient clipping as torch.nn.utils.clip_grad_norm_, and the learning-rate schedule.
 * All functions work on flat slices, so ZeRO shards call them on their own range. */
#ifndef MPT_ADAMW_H
#define MPT_ADAMW_H

#include <stddef.h>

typedef struct mpt_adamw {
    float lr;            /* peak learning rate */
    float beta1, beta2;  /* 0.9, 0.95 */
    float eps;           /* 1e-8 */
    float weight_decay;  /* 0.1, on tensors of rank >= 2 only */
    float grad_clip;     /* max global norm; <= 0 disables */
    int warmup;          /* linear warm-up steps */
    int cosine;          /* 1: cosine to 0.1*lr at the last step; 0: constant after warm-up */
    long total_steps;
} mpt_adamw;

void mpt_adamw_defaults(mpt_adamw *o);

/* Learning rate of optimizer step `step` (0-based):
 *   step < warmup:  lr * (step + 1) / warmup
 *   cosine:         0.1*lr + 0.5*(1 + cos(pi * r)) * 0.9*lr,
 *                   r = (step - warmup) / max(1, total_steps - 1 - warmup)  (r = 1 at the last step)
 *   constant:       lr */
float mpt_adamw_lr(const mpt_adamw *o, long step);

/* Sum of squares of g[0..n), accumulated in double in a fixed order (bit-reproducible). */
double mpt_sum_squares(const float *g, size_t n);

/* Clip factor of clip_grad_norm_: min(1, max_norm / (norm + 1e-6)); 1 when clipping is off. */
float mpt_clip_factor(const mpt_adamw *o, double norm);

/* One AdamW step on a slice: g is scaled by clip first; t is the 1-based step count.
 *   p *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps) */
void mpt_adamw_update(const mpt_adamw *o, float *p, const float *g, float *m, float *v, size_t n,
                      float lr, float wd, float clip, long t);

#endif
