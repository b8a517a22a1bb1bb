/* gpt_sp.c — the linear layers beside sequence parallelism's collectives, by blocks of rows
 * (see gpt_sp.h). Each function fills a job with its layer's pointers and hands the table's
 * overlapped entry a callback that computes one block of rows of the layer's GEMM. */
#include "model/gpt_sp.h"

#include <string.h>

#include "core/kernels.h"
#include "core/kernels_fused.h"

typedef struct sp_job_ {
    float *out, *fch, *dw, *db, *stash;
    const float *in, *w, *b, *dout;
    int C, OC, ldo;
    size_t N;
    const int32_t *tokens; /* the embedding's rows' token ids */
    int v0, Vl;            /* the embedding's vocabulary rows here */
} sp_job_;

int mpt_gpt_sp_overlap(const mpt_gpt *m) {
    return m->sp && m->tp > 1 && m->ops.gather_seq_rows && m->ops.rows_scatter_seq;
}

/* out rows [r0, r0+n) = in w + b (or fch = that, out = gelu(fch)) */
static void forward_rows_(void *ctx, size_t r0, size_t n) {
    const sp_job_ *j = ctx;
    size_t C = (size_t)j->C, OC = (size_t)j->OC;
    if (j->fch)
        mpt_matmul_bias_gelu_forward(j->out + r0 * OC, j->fch + r0 * OC, j->in + r0 * C, j->w,
                                     j->b, n, j->C, j->OC);
    else
        mpt_matmul_forward(j->out + r0 * OC, j->in + r0 * C, j->w, j->b, n, j->C, j->OC);
}

/* out rows [r0, r0+n) (C wide) = dout rows w^T, dout (N, OC) */
static void input_grad_rows_(void *ctx, size_t r0, size_t n) {
    const sp_job_ *j = ctx;
    size_t C = (size_t)j->C, OC = (size_t)j->OC;
    mpt_matmul_backward_set(j->out + r0 * C, NULL, NULL, j->dout + r0 * OC, NULL, j->w, n, j->C,
                            j->OC);
}

/* the weight gradients over all N rows, or the stash of dout for the split backward's W */
static void weight_grad_(void *ctx, size_t r0, size_t n) {
    const sp_job_ *j = ctx;
    (void)r0, (void)n;
    if (j->dw || j->db) mpt_matmul_backward(NULL, j->dw, j->db, j->dout, j->in, NULL, j->N, j->C,
                                            j->OC);
    if (j->stash) memcpy(j->stash, j->dout, j->N * (size_t)j->OC * sizeof(float));
}

/* the head: out rows [r0, r0+n) (ldo wide) = in rows w^T, w (OC, C) nn.Linear layout */
static void lmhead_rows_(void *ctx, size_t r0, size_t n) {
    const sp_job_ *j = ctx;
    size_t C = (size_t)j->C, ldo = (size_t)j->ldo;
    mpt_lmhead_forward(j->out + r0 * ldo, j->in + r0 * C, j->w, n, j->C, j->OC, j->ldo);
}

/* the head's backward on rows [r0, r0+n): dinp rows (C wide) = dout rows w */
static void lmhead_dinp_rows_(void *ctx, size_t r0, size_t n) {
    const sp_job_ *j = ctx;
    size_t C = (size_t)j->C, ldo = (size_t)j->ldo;
    mpt_lmhead_backward_set(j->out + r0 * C, NULL, j->dout + r0 * ldo, NULL, j->w, n, j->C,
                            j->OC, j->ldo);
}

/* the head's weight gradient over all N rows: dw += dout^T in (in: the gathered rows) */
static void lmhead_dw_(void *ctx, size_t r0, size_t n) {
    const sp_job_ *j = ctx;
    (void)r0, (void)n;
    mpt_lmhead_backward(NULL, j->dw, j->dout, j->in, j->w, j->N, j->C, j->OC, j->ldo);
}

/* the vocabulary-parallel embedding on rows [r0, r0+n): out rows = the wte rows of their tokens
 * held here (zero for the others) */
static void embed_rows_(void *ctx, size_t r0, size_t n) {
    const sp_job_ *j = ctx;
    size_t C = (size_t)j->C;
    mpt_embed_masked_forward(j->out + r0 * C, j->tokens + r0, j->w, 1, (int)n, j->C, j->v0,
                             j->Vl);
}

/* its backward on rows [r0, r0+n): dw rows of their tokens held here += the rows of dout */
static void embed_grad_rows_(void *ctx, size_t r0, size_t n) {
    const sp_job_ *j = ctx;
    size_t C = (size_t)j->C;
    mpt_embed_masked_backward(j->dw, j->dout + r0 * C, j->tokens + r0, 1, (int)n, j->C, j->v0,
                              j->Vl);
}

mpt_status mpt_gpt_sp_gather_lmhead(mpt_gpt *m, float *logits, const float *local,
                                    const float *w, size_t Nl, int C, int V, int ldo,
                                    mpt_error *err) {
    float *full = m->work[MPT_WORK_GATHER];
    sp_job_ j = {.out = logits, .in = full, .w = w, .C = C, .OC = V, .ldo = ldo};
    return m->ops.gather_seq_rows(m->ops.ctx, local, full, Nl, (size_t)C, lmhead_rows_, &j, err);
}

mpt_status mpt_gpt_sp_lmhead_backward(mpt_gpt *m, float *dinp, float *dw, const float *dout,
                                      const float *local, const float *w, size_t Nl, int C,
                                      int V, int ldo, mpt_error *err) {
    /* as a column-parallel layer's backward: the input gradient's row blocks (the others'
     * first) each sent to its owner as it is done, ln_f's rows gathered beside them, then the
     * weight gradient over all rows while the last sums travel */
    float *full = m->work[MPT_WORK_GATHER];
    sp_job_ j = {.out = dinp, .dw = dw, .in = full, .dout = dout, .w = w, .C = C, .OC = V,
                 .ldo = ldo, .N = Nl * (size_t)m->tp};
    return m->ops.rows_scatter_seq(m->ops.ctx, dinp, Nl, (size_t)C, m->work[MPT_WORK_SPRECV],
                                   lmhead_dinp_rows_, lmhead_dw_, &j, local, full, (size_t)C,
                                   err);
}

mpt_status mpt_gpt_sp_embed_forward(mpt_gpt *m, float *out, const int32_t *tokens,
                                    const float *wte, size_t Nl, int D, mpt_error *err) {
    sp_job_ j = {.out = out, .w = wte, .C = D, .tokens = tokens, .v0 = m->v0, .Vl = m->Vl};
    return m->ops.rows_scatter_seq(m->ops.ctx, out, Nl, (size_t)D, m->work[MPT_WORK_SPRECV],
                                   embed_rows_, NULL, &j, NULL, NULL, 0, err);
}

mpt_status mpt_gpt_sp_embed_backward(mpt_gpt *m, float *dwte, const float *dlocal,
                                     const int32_t *tokens, size_t Nl, int D, const float **dy,
                                     mpt_error *err) {
    float *full = m->work[MPT_WORK_GATHER];
    sp_job_ j = {.dw = dwte, .dout = full, .C = D, .tokens = tokens, .v0 = m->v0, .Vl = m->Vl};
    *dy = full;
    return m->ops.gather_seq_rows(m->ops.ctx, dlocal, full, Nl, (size_t)D, embed_grad_rows_, &j,
                                  err);
}

mpt_status mpt_gpt_sp_gather_matmul(mpt_gpt *m, float *out, float *fch, const float *local,
                                    const float *w, const float *b, size_t Nl, int C, int OC,
                                    const float **x, mpt_error *err) {
    float *full = m->work[MPT_WORK_GATHER];
    sp_job_ j = {.out = out, .fch = fch, .in = full, .w = w, .b = b, .C = C, .OC = OC};
    *x = full;
    return m->ops.gather_seq_rows(m->ops.ctx, local, full, Nl, (size_t)C, forward_rows_, &j,
                                  err);
}

mpt_status mpt_gpt_sp_matmul_scatter(mpt_gpt *m, float *out, const float *inp, const float *w,
                                     size_t Nl, int C, int OC, mpt_error *err) {
    sp_job_ j = {.out = out, .in = inp, .w = w, .C = C, .OC = OC};
    return m->ops.rows_scatter_seq(m->ops.ctx, out, Nl, (size_t)OC, m->work[MPT_WORK_SPRECV],
                                   forward_rows_, NULL, &j, NULL, NULL, 0, err);
}

mpt_status mpt_gpt_sp_gather_backward(mpt_gpt *m, float *dinp, float *dw, float *db,
                                      float *stash, const float *dlocal, const float *inp,
                                      const float *w, size_t Nl, int C, int OC, mpt_error *err) {
    float *dy = m->work[MPT_WORK_GATHER];
    sp_job_ j = {.out = dinp, .dw = dw, .db = db, .stash = stash, .in = inp, .w = w,
                 .dout = dy, .C = C, .OC = OC, .N = Nl * (size_t)m->tp};
    mpt_status st = m->ops.gather_seq_rows(m->ops.ctx, dlocal, dy, Nl, (size_t)OC,
                                           input_grad_rows_, &j, err);
    if (st) return st;
    weight_grad_(&j, 0, 0);
    return MPT_OK;
}

mpt_status mpt_gpt_sp_backward_scatter(mpt_gpt *m, float *dinp, float *dw, float *db,
                                       float *stash, const float *dout, const float *inp,
                                       const float *w, size_t Nl, int C, int OC, mpt_error *err) {
    /* the weight gradient's input gathered beside the input gradient's GEMMs; none is needed
     * when only the stash is written (the split backward's W gathers it itself) */
    int gx = dw != NULL;
    float *full = m->work[MPT_WORK_GATHER];
    sp_job_ j = {.out = dinp, .dw = dw, .db = db, .stash = stash, .in = gx ? full : NULL,
                 .w = w, .dout = dout, .C = C, .OC = OC, .N = Nl * (size_t)m->tp};
    return m->ops.rows_scatter_seq(m->ops.ctx, dinp, Nl, (size_t)C, m->work[MPT_WORK_SPRECV],
                                   input_grad_rows_, weight_grad_, &j, gx ? inp : NULL,
                                   gx ? full : NULL, (size_t)C, err);
}
