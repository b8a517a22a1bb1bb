/* gpt_tp.h — the column-parallel layers' backward beside the tensor group's input-gradient
 * all-reduce (f backward, without sp), and the vocabulary-parallel cross-entropy (below), computed by row chunks so that the table's
 * rows_reduce_tp entry (model/parops.h; parallel/tp_overlap.c) sums one chunk while the next
 * is multiplied and the weight gradient's shares of the chunks are computed after the last
 * one, while the sums travel (Megatron's async input-gradient all-reduce). model/gpt_pass.c calls these when mpt_gpt_tp_overlap;
 * every tp rank calls them in the same order with the same N.
 *
 * Math: the plain layer's. A row of the input gradient depends on the same row of the output
 * gradient only; the weight and bias gradients are sums over the rows, accumulated chunk by
 * chunk (dW += X_c^T dY_c), so they equal the unsplit ones up to the order of the sum. */
#ifndef MPT_GPT_TP_H
#define MPT_GPT_TP_H

#include "model/gpt.h"

/* 1 when the overlapped f backward is on: tp > 1 without sp, and the table has the entry. */
int mpt_gpt_tp_overlap(const mpt_gpt *m);

/* Column-parallel linear backward, dout (N, OC), inp (N, C), w (C, OC): dinp (N, C) =
 * (OVERWRITTEN) the sum over tp of dout w^T; dw += inp^T dout and db += the column sums of
 * dout (each skipped if NULL); with stash not NULL, dout copied there (the split backward's W
 * stash, N * OC). */
mpt_status mpt_gpt_tp_backward_reduce(mpt_gpt *m, float *dinp, float *dw, float *db,
                                      float *stash, const float *dout, const float *inp,
                                      const float *w, size_t N, int C, int OC, mpt_error *err);

/* The vocabulary-parallel head's backward (nn.Linear-layout w (V, C), dout (N, ldo), its first
 * V columns read): dinp (N, C) = (OVERWRITTEN) the sum over tp of dout w; dw (V, C) +=
 * dout^T inp, by the same row chunks. */
mpt_status mpt_gpt_tp_lmhead_backward(mpt_gpt *m, float *dinp, float *dw, const float *dout,
                                      const float *inp, const float *w, size_t N, int C, int V,
                                      int ldo, mpt_error *err);

/* The vocabulary-parallel cross-entropy of the N rows (every tp rank calls, tp > 1): with x
 * (N, D: ln_f's output) not NULL, the head's logits (N, Vl) of this rank's vocabulary slice
 * are computed here too, by the row chunks of the table's vocab_merge_rows entry, each chunk's
 * statistics travelling while the next chunk's GEMM runs; with x NULL the logits are already
 * in MPT_ACT_LOGITS. Then the losses (N) in MPT_ACT_LOSSES and the logits overwritten with
 * dloss * (softmax - onehot) over the slice (padded columns 0). Math: the row's maximum, sum
 * of exponentials and target logit merged over the slices as an online softmax; equal to the
 * one-rank loss up to rounding. */
mpt_status mpt_gpt_tp_vocab_ce(mpt_gpt *m, const float *x, const int32_t *targets, size_t N,
                               float dloss, mpt_error *err);

/* The vocabulary-parallel embedding without sp (every tp rank calls; cp == 1): out (B*T, D) =
 * wte[token] + wpe[position], by the row chunks of the table's rows_reduce_tp entry: each rank
 * looks up the tokens of its vocabulary rows (0 for the others), tp rank 0 adds the positions,
 * and each chunk's sum over tp travels while the next chunk is looked up. Exactly the one-rank
 * values: every sum has at most two non-zero terms, the token's row and its position. */
mpt_status mpt_gpt_tp_embed_forward(mpt_gpt *m, float *out, const int32_t *inputs, int B, int T,
                                    mpt_error *err);

/* The row-parallel layers' epilogues (mpt_rows_fn; the ctx of the table's row_parallel_matmul
 * epi, model/parops.h): rows [r0, r0+n) of the summed output y (n, C), each row exactly the
 * arithmetic of the whole-matrix kernel (core/kernels_fused.h), so any split gives the same
 * bits.
 *   res_ln (attn.c_proj): res = a + y + bias, out = LayerNorm(res; w, b), mean and rstd saved
 *   res    (mlp.c_proj):  res = a + y + bias */
typedef struct mpt_gpt_tp_epi {
    float *res, *out, *mean, *rstd;
    const float *a, *y, *bias, *w, *b;
    int C;
} mpt_gpt_tp_epi;
void mpt_gpt_tp_epi_res_ln(void *ctx, size_t r0, size_t n);
void mpt_gpt_tp_epi_res(void *ctx, size_t r0, size_t n);

#endif
