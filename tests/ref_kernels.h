/* ref_kernels.h — a plain, single-threaded, double-precision reference of every operator in
 * src/core/kernels.h, written for clarity rather than speed. The tests compare the fast fp32
 * kernels against it and check its backward passes against central finite differences.
 *
 * Same argument conventions as kernels.h, with double in place of float: outputs first, then
 * inputs, then weights, then sizes; rows N = B*T; weights in the Conv1D layout W (C, OC) so that
 * y = x W + b; backward functions ACCUMULATE (+=) into every gradient unless "overwrites".
 */
#ifndef MPT_REF_KERNELS_H
#define MPT_REF_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* out(B,T,D) = wte[inp[b,t]] + wpe[t]. */
void ref_encoder_forward(double *out, const int32_t *inp, const double *wte, const double *wpe,
                         int B, int T, int D);
/* dwte(rows,D) += dout scattered by token; dwpe(T,D) += dout summed over the batch. */
void ref_encoder_backward(double *dwte, double *dwpe, const double *dout, const int32_t *inp,
                          int B, int T, int D);

/* out(N,C) = (inp - mean) * rstd * w + b, biased variance, eps 1e-5; saves mean(N), rstd(N). */
void ref_layernorm_forward(double *out, double *mean, double *rstd, const double *inp,
                           const double *w, const double *b, size_t N, int C);
/* dinp(N,C) +=, dw(C) +=, db(C) += (any of them may be NULL to skip it). */
void ref_layernorm_backward(double *dinp, double *dw, double *db, const double *dout,
                            const double *inp, const double *w, const double *mean,
                            const double *rstd, size_t N, int C);

/* out(N,OC) = inp(N,C) w(C,OC) + bias(OC); bias may be NULL. Overwrites out. */
void ref_matmul_forward(double *out, const double *inp, const double *w, const double *bias,
                        size_t N, int C, int OC);
/* dinp(N,C) += dout w^T; dw(C,OC) += inp^T dout; dbias(OC) += column sums of dout.
 * dinp and dbias may be NULL to skip them. */
void ref_matmul_backward(double *dinp, double *dw, double *dbias, const double *dout,
                         const double *inp, const double *w, size_t N, int C, int OC);

/* Output head with an nn.Linear-layout weight w(V,C): columns [0, V) of out(N, ldo) =
 * inp(N,C) w^T; columns >= V are not written. */
void ref_lmhead_forward(double *out, const double *inp, const double *w, size_t N, int C, int V,
                        int ldo);
/* dinp(N,C) += dout w; dw(V,C) += dout^T inp; only the first V columns of dout(N, ldo) read. */
void ref_lmhead_backward(double *dinp, double *dw, const double *dout, const double *inp,
                         const double *w, size_t N, int C, int V, int ldo);

/* Causal multi-head attention over qkv (B,T,3D) = [q | k | v], heads contiguous inside each,
 * hs = D/H, scale 1/sqrt(hs). out (B,T,D) overwritten; att (B,H,T,T) = softmax probabilities,
 * zero above the diagonal. */
void ref_attention_forward(double *out, double *att, const double *qkv, int B, int T, int D,
                           int H);
/* dqkv (B,T,3D) +=; datt (B,H,T,T) is scratch (overwritten with dL/datt). */
void ref_attention_backward(double *dqkv, double *datt, const double *dout, const double *qkv,
                            const double *att, int B, int T, int D, int H);

/* out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), overwritten; dinp += dout * gelu'(x). */
void ref_gelu_forward(double *out, const double *inp, size_t N);
void ref_gelu_backward(double *dinp, const double *inp, const double *dout, size_t N);

/* out = a + b (out may alias a); y += x. */
void ref_residual_forward(double *out, const double *a, const double *b, size_t N);
void ref_add_inplace(double *y, const double *x, size_t N);

/* Softmax cross-entropy over the first V of Vp columns of logits (N,Vp). losses(N) =
 * -log softmax(logits)[target]; logits OVERWRITTEN with dloss * (softmax - onehot), and 0 in
 * the padded columns V..Vp-1. */
void ref_crossentropy_fused(double *logits, double *losses, const int32_t *targets, size_t N,
                            int V, int Vp, double dloss);

/* probs(V) = softmax(logits[0..V-1] / temperature), temperature > 0. */
void ref_softmax_row(double *probs, const double *logits, int V, double temperature);

#endif
