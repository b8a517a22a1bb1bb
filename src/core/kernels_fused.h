/* kernels_fused.h — fused memory-bound operators of a GPT block (fp32, CPU): each replaces two or
 * three passes of the plain operators in core/kernels.h by one pass over a row (or a column
 * slice) that stays in L1, threaded with OpenMP and vectorised with `omp simd`.
 *
 * Same conventions as kernels.h: outputs first, rows N = B*T, row-major (N, C); backward
 * functions ACCUMULATE (+=) into gradients unless the comment says "overwrites"; call from one
 * thread (every function parallelises internally). Each one is tested against the chain of
 * plain operators it replaces and against finite differences (tests/test_kernels.c).
 *
 *   GEMM without bias, then                       replaces
 *   mpt_bias_gelu_forward(fchg, fch, b, N, F)     bias in the GEMM's C preload + mpt_gelu_forward
 *   mpt_matmul_bias_gelu_forward(...)             the GEMM and the line above, one region
 *   mpt_residual_layernorm_forward(res, ln, ...)  bias + mpt_residual_forward + mpt_layernorm_forward
 *   mpt_bias_residual_forward(res, a, y, b, ...)  bias + mpt_residual_forward
 *   mpt_gelu_backward_bias(dfc, dbias, ...)       memset + mpt_gelu_backward + the GEMM's bias sum
 *   mpt_matmul_backward_gelu_set(...)             c_proj's backward GEMMs and the line above, by
 *                                                 row chunks that stay in cache
 *   mpt_layernorm_backward_colsum(...)            mpt_layernorm_backward + the next GEMM's bias sum
 */
#ifndef MPT_KERNELS_FUSED_H
#define MPT_KERNELS_FUSED_H

#include <stddef.h>

/* dbias(C) += sum over the N rows of dout(N,C). Each column is summed in row order whatever
 * the thread count (bit-reproducible). */
void mpt_bias_backward(float *dbias, const float *dout, size_t N, int C);

/* h(N,C) += bias(C) in place (bias may be NULL: nothing added), then out(N,C) = gelu_tanh(h).
 * h keeps the pre-activation for the backward. */
void mpt_bias_gelu_forward(float *out, float *h, const float *bias, size_t N, int C);

/* The c_fc layer and its activation: fch(N,F) = x(N,C) w(C,F) + bias (kept for the backward),
 * out(N,F) = gelu_tanh(fch); the same values as mpt_matmul_forward without bias followed by
 * mpt_bias_gelu_forward, with each thread's rows activated right after its block of the GEMM,
 * in one parallel region (core/kernels_matmul.c, split threading). */
void mpt_matmul_bias_gelu_forward(float *out, float *fch, const float *x, const float *w,
                                  const float *bias, size_t N, int C, int F);

/* dinp(N,C) OVERWRITTEN with dout * gelu'(h); dbias(C) += its column sums (dbias may be NULL).
 * dinp may alias dout. */
void mpt_gelu_backward_bias(float *dinp, float *dbias, const float *h, const float *dout,
                            size_t N, int C);

/* The MLP's c_proj backward and the GELU backward before it, fused: dw(C,OC) += inp^T dout and
 * dbias(OC) += dout's column sums as mpt_matmul_backward (either may be NULL); then, by chunks
 * of rows (~12 MiB of an N x C array each, kernels_matmul.c), dinp's rows OVERWRITTEN with
 * (dout w^T) * gelu'(h) while the chunk is still in cache, and dbias_in(C) += their column sums
 * (may be NULL: the c_fc bias gradient, in row order as mpt_gelu_backward_bias sums it). Replaces
 * mpt_matmul_backward_set into a buffer + mpt_gelu_backward_bias from it: one N x C array
 * streamed instead of three. */
void mpt_matmul_backward_gelu_set(float *dinp, float *dw, float *dbias, float *dbias_in,
                                  const float *h, const float *dout, const float *inp,
                                  const float *w, size_t N, int C, int OC);

/* res(N,C) = a + y + bias (bias may be NULL); res may alias a or y. */
void mpt_bias_residual_forward(float *res, const float *a, const float *y, const float *bias,
                               size_t N, int C);

/* res(N,C) = a + y + bias (bias may be NULL), then out = LayerNorm(res) with weight w, bias b
 * (eps 1e-5), mean(N) and rstd(N) saved, as mpt_layernorm_forward on res. res may alias a or y. */
/* mpt_layernorm_backward, and dcol (C) += the column sums of dinp (N, C) after its update, in
 * the same pass and region: the bias gradient of the row-parallel layer whose output fed the
 * residual (attn.c_proj's bias: the column sums of d res2 once ln_2's backward has added to it),
 * without a pass of its own. */
void mpt_layernorm_backward_colsum(float *dinp, float *dw, float *db, float *dcol,
                                   const float *dout, const float *inp, const float *w,
                                   const float *mean, const float *rstd, size_t N, int C);
/* dcol (C) += the column sums of x (N, C) in mpt_layernorm_backward_colsum's order: the split
 * backward's W pass sums attn.c_proj's bias gradient with it, bit for bit as unsplit. */
void mpt_colsum_add(float *dcol, const float *x, size_t N, int C);

void mpt_residual_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                    const float *a, const float *y, const float *bias,
                                    const float *w, const float *b, size_t N, int C);

#endif
