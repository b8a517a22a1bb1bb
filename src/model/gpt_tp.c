/* gpt_tp.c — the column-parallel layers' backward by row chunks beside the tensor group's
 * input-gradient all-reduce (see gpt_tp.h). Each function fills a job with its layer's
 * pointers and hands the table's rows_reduce_tp entry two callbacks: one chunk of rows of the
 * input gradient, and the weight gradient's share of the same rows. */
#include "model/gpt_tp.h"

#include <math.h>
#include <string.h>

#include "core/kernels.h"
#include "core/kernels_fused.h"

typedef struct tp_job_ {
    float *dinp, *dw, *db, *stash;
    const float *dout, *inp, *w;
    int C, OC, ldo;
} tp_job_;

int mpt_gpt_tp_overlap(const mpt_gpt *m) {
    return m->tp > 1 && !m->sp && m->ops.rows_reduce_tp;
}

/* dinp rows [r0, r0+n) = dout rows w^T */
static void input_grad_rows_(void *ctx, size_t r0, size_t n) {
    const tp_job_ *j = ctx;
    size_t C = (size_t)j->C, OC = (size_t)j->OC;
    mpt_matmul_backward_set(j->dinp + r0 * C, NULL, NULL, j->dout + r0 * OC, NULL, j->w, n, j->C,
                            j->OC);
}

/* dw += inp rows^T dout rows, db += their column sums; or the rows of dout into the stash */
static void weight_grad_rows_(void *ctx, size_t r0, size_t n) {
    const tp_job_ *j = ctx;
    size_t C = (size_t)j->C, OC = (size_t)j->OC;
    if (j->dw || j->db)
        mpt_matmul_backward(NULL, j->dw, j->db, j->dout + r0 * OC, j->inp + r0 * C, NULL, n, j->C,
                            j->OC);
    if (j->stash) memcpy(j->stash + r0 * OC, j->dout + r0 * OC, n * OC * sizeof(float));
}

/* the head: dinp rows = dout rows w */
static void lmhead_rows_(void *ctx, size_t r0, size_t n) {
    const tp_job_ *j = ctx;
    size_t C = (size_t)j->C, ldo = (size_t)j->ldo;
    mpt_lmhead_backward_set(j->dinp + r0 * C, NULL, j->dout + r0 * ldo, NULL, j->w, n, j->C,
                            j->OC, j->ldo);
}

/* the head: dw += dout rows^T inp rows (the same GEMM the one call above made after dinp's,
 * so the same bits; it now runs behind every chunk's sum, like weight_grad_rows_) */
static void lmhead_dw_rows_(void *ctx, size_t r0, size_t n) {
    const tp_job_ *j = ctx;
    size_t C = (size_t)j->C, ldo = (size_t)j->ldo;
    mpt_lmhead_backward_set(NULL, j->dw, j->dout + r0 * ldo, j->inp + r0 * C, j->w, n, j->C,
                            j->OC, j->ldo);
}

mpt_status mpt_gpt_tp_backward_reduce(mpt_gpt *m, float *dinp, float *dw, float *db,
                                      float *stash, const float *dout, const float *inp,
                                      const float *w, size_t N, int C, int OC, mpt_error *err) {
    tp_job_ j = {.dinp = dinp, .dw = dw, .db = db, .stash = stash, .dout = dout, .inp = inp,
                 .w = w, .C = C, .OC = OC};
    return m->ops.rows_reduce_tp(m->ops.ctx, dinp, N, (size_t)C, input_grad_rows_,
                                 weight_grad_rows_, &j, err);
}

mpt_status mpt_gpt_tp_lmhead_backward(mpt_gpt *m, float *dinp, float *dw, const float *dout,
                                      const float *inp, const float *w, size_t N, int C, int V,
                                      int ldo, mpt_error *err) {
    tp_job_ j = {.dinp = dinp, .dw = dw, .dout = dout, .inp = inp, .w = w, .C = C, .OC = V,
                 .ldo = ldo};
    return m->ops.rows_reduce_tp(m->ops.ctx, dinp, N, (size_t)C, lmhead_rows_, lmhead_dw_rows_,
                                 &j, err);
}

/* ---- the vocabulary-parallel cross-entropy (model/gpt_tp.h) -------------------------------- */

typedef struct ce_job_ {
    mpt_gpt *m;
    float *logits, *st, *losses;
    const float *x, *w;
    const int32_t *targets;
    float dloss;
} ce_job_;

/* rows [r0, r0+n): their logits over this rank's slice (when x is set), then the slice's
 * [max | sum of exponentials | target logit] into st + 3 r0 */
static void ce_stats_rows_(void *ctx, size_t r0, size_t n) {
    const ce_job_ *j = ctx;
    const mpt_gpt *m = j->m;
    size_t ld = (size_t)m->Vl;
    float *lg = j->logits + r0 * ld, *mx = j->st + 3 * r0;
    if (j->x)
        mpt_lmhead_forward(lg, j->x + r0 * (size_t)m->cfg.d_model, j->w, n, m->cfg.d_model, m->Vr,
                           m->Vl);
    mpt_vocab_rowmax(mx, lg, n, m->Vr, m->Vl);
    mpt_vocab_sumexp(mx + n, mx + 2 * n, lg, mx, j->targets + r0, n, m->Vr, m->Vl, m->v0);
}

/* rows [r0, r0+n), st + 3 r0 now over the whole vocabulary: their losses, and their logits
 * overwritten with the loss gradient */
static void ce_grad_rows_(void *ctx, size_t r0, size_t n) {
    const ce_job_ *j = ctx;
    const mpt_gpt *m = j->m;
    const float *mx = j->st + 3 * r0, *se = mx + n, *tl = mx + 2 * n;
    for (size_t i = 0; i < n; i++) j->losses[r0 + i] = logf(se[i]) - (tl[i] - mx[i]);
    mpt_vocab_grad(j->logits + r0 * (size_t)m->Vl, mx, se, j->targets + r0, n, m->Vr, m->Vl,
                   m->v0, j->dloss);
}

mpt_status mpt_gpt_tp_vocab_ce(mpt_gpt *m, const float *x, const int32_t *targets, size_t N,
                               float dloss, mpt_error *err) {
    float *ce = m->work[MPT_WORK_CE];
    ce_job_ j = {.m = m, .logits = m->cur->a[MPT_ACT_LOGITS], .st = ce,
                 .losses = m->cur->a[MPT_ACT_LOSSES], .x = x, .w = m->w[m->pt.lm_head],
                 .targets = targets, .dloss = dloss};
    return m->ops.vocab_merge_rows(m->ops.ctx, ce, ce + 3 * N, N, (size_t)m->Vl, ce_stats_rows_,
                                   ce_grad_rows_, &j, err);
}

/* ---- the vocabulary-parallel embedding (model/gpt_tp.h) ------------------------------------ */

typedef struct embed_job_ {
    const mpt_gpt *m;
    float *out;
    const int32_t *inputs;
    int T;
} embed_job_;

/* rows [r0, r0+n): this rank's wte rows of their tokens (0 for the others), and on tp rank 0
 * their position embeddings */
static void embed_rows_(void *ctx, size_t r0, size_t n) {
    const embed_job_ *j = ctx;
    const mpt_gpt *m = j->m;
    int D = m->cfg.d_model;
    float *o = j->out + r0 * (size_t)D;
    mpt_embed_masked_forward(o, j->inputs + r0, m->w[m->pt.wte], 1, (int)n, D, m->v0, m->Vl);
    if (m->tp_rank == 0) mpt_positions_forward(o, m->w[m->pt.wpe], r0, n, j->T, D);
}

mpt_status mpt_gpt_tp_embed_forward(mpt_gpt *m, float *out, const int32_t *inputs, int B, int T,
                                    mpt_error *err) {
    embed_job_ j = {.m = m, .out = out, .inputs = inputs, .T = T};
    size_t N = (size_t)B * (size_t)T;
    return m->ops.rows_reduce_tp(m->ops.ctx, out, N, (size_t)m->cfg.d_model, embed_rows_, NULL,
                                 &j, err);
}

/* ---- the row-parallel layers' epilogues (model/gpt_tp.h) ----------------------------------- */

void mpt_gpt_tp_epi_res_ln(void *ctx, size_t r0, size_t n) {
    const mpt_gpt_tp_epi *e = ctx;
    size_t o = r0 * (size_t)e->C;
    mpt_residual_layernorm_forward(e->res + o, e->out + o, e->mean + r0, e->rstd + r0, e->a + o,
                                   e->y + o, e->bias, e->w, e->b, n, e->C);
}

void mpt_gpt_tp_epi_res(void *ctx, size_t r0, size_t n) {
    const mpt_gpt_tp_epi *e = ctx;
    size_t o = r0 * (size_t)e->C;
    mpt_bias_residual_forward(e->res + o, e->a + o, e->y + o, e->bias, n, e->C);
}
