/* kernels.h — the fp32 forward/backward operators of a GPT block, tuned for CPU.
 *
 * GEMMs: oneDNN's sgemm or OpenBLAS's cblas_sgemm (mpt_kernels_set_gemm).
 * Conventions (llm.c style): outputs first, then inputs, then weights, then sizes.
 * Rows: N = B*T tokens; activations are row-major (N, C). Weights use the Hugging Face GPT-2
 * Conv1D layout W (C, OC) so that y = x W + b. Backward functions ACCUMULATE (+=) into every
 * gradient they write (inputs and weights alike) unless the comment says "overwrites".
 * Threading: every kernel parallelises internally with OpenMP; call from one thread.
 * A plain single-threaded reference of each op lives in tests/ref_kernels.c.
 */
#ifndef MPT_KERNELS_H
#define MPT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Where the GEMMs run. oneDNN (the default) picks its kernels for the CPU at run time (AVX-512
 * where the CPU has it, ~2x the AVX2 kernels that OPENBLAS_CORETYPE=Haswell pins OpenBLAS to;
 * on AVX2-only CPUs about 80% of the FMA peak, at or above OpenBLAS on every large shape);
 * OpenBLAS's cblas_sgemm is the other. Process-wide; set before training. */
typedef enum mpt_gemm_backend { MPT_GEMM_ONEDNN, MPT_GEMM_OPENBLAS } mpt_gemm_backend;
void mpt_kernels_set_gemm(mpt_gemm_backend b);
mpt_gemm_backend mpt_kernels_gemm(void);
/* How the fp32 GEMMs of the linear layers and the head use the OpenMP threads:
 * MPT_GEMM_TEAM (default): one call that the library threads itself; MPT_GEMM_SPLIT: one
 * parallel region whose threads each run the library's single-threaded GEMM on their own block
 * of the output (rows, or columns when it is wider than tall), with a linear layer's backward
 * (dinp, dW, dbias) and the biased forward each in one region without a barrier. In isolation
 * the split ran small GEMMs (tp shards, micro-batches) faster (bench/gemm_shapes.c), but whole
 * training steps measured slower on the loaded 2-core machine, so it is opt-in until a quiet
 * comparison decides (README, "Speed"). Process-wide; set before training. */
typedef enum mpt_gemm_threading { MPT_GEMM_SPLIT, MPT_GEMM_TEAM } mpt_gemm_threading;
void mpt_kernels_set_gemm_threading(mpt_gemm_threading t);
mpt_gemm_threading mpt_kernels_gemm_threading(void);
/* Under MPT_GEMM_TEAM with a team of 2 threads, a linear layer's (and the head's) backward
 * can run its two GEMMs side by side, one thread each (dinp = dout w^T on one, dw += inp^T
 * dout on the other: the same FLOPs) in one region, instead of one after the other on the
 * library's 2-thread split. Off by default: interleaved under load the busiest thread's CPU
 * time was 0.99-1.06x the library's split per GEMM (bench_profile --ab-pair; dinp and dW run
 * at different rates, so the pair is imbalanced by up to 5%); whether the region saved
 * (2 fewer fork-joins per layer) shows at idle is for an idle run of --ab-pair to say.
 * Process-wide; set before training. */
void mpt_kernels_set_backward_pair(int on);
int mpt_kernels_backward_pair(void);

/* out(B,T,D) = wte[inp] + wpe[t]. inp (B,T) token ids < rows of wte. */
void mpt_encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe,
                         int B, int T, int D);
/* dwte(rows,D) += scatter of dout by token; dwpe(T,D) += sum over batch. */
void mpt_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                          int B, int T, int D);

/* out(N,C) = (inp - mean) * rstd * w + b; mean(N), rstd(N) saved for backward. eps 1e-5. */
void mpt_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                           const float *w, const float *b, size_t N, int C);
/* dinp(N,C) +=, dw(C) +=, db(C) += */
void mpt_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean,
                            const float *rstd, size_t N, int C);

/* out(N,OC) = inp(N,C) w(C,OC) + bias(OC); bias may be NULL. Overwrites out. */
void mpt_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                        size_t N, int C, int OC);
/* dinp(N,C) += dout w^T (skipped if dinp NULL); dw(C,OC) += inp^T dout; dbias(OC) += colsum. */
void mpt_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                         const float *inp, const float *w, size_t N, int C, int OC);
/* As mpt_matmul_backward, but dinp (not NULL) is OVERWRITTEN with dout w^T: the GEMM's
 * beta = 0 replaces a zeroing pass before it (dw, dbias still accumulate, beta = 1). */
void mpt_matmul_backward_set(float *dinp, float *dw, float *dbias, const float *dout,
                             const float *inp, const float *w, size_t N, int C, int OC);

/* Output head with an nn.Linear-layout weight (the tied wte): out(N, ldo) columns [0, V) =
 * inp(N,C) w(V,C)^T; columns >= V are not written. */
void mpt_lmhead_forward(float *out, const float *inp, const float *w, size_t N, int C, int V,
                        int ldo);
/* dinp(N,C) += dout w; dw(V,C) += dout^T inp; dout (N, ldo), only its first V columns read.
 * dinp or dw NULL: that GEMM is skipped (inp is then unused without dw). */
void mpt_lmhead_backward(float *dinp, float *dw, const float *dout, const float *inp,
                         const float *w, size_t N, int C, int V, int ldo);
/* As mpt_lmhead_backward, but dinp is OVERWRITTEN (beta = 0); dw still accumulates. */
void mpt_lmhead_backward_set(float *dinp, float *dw, const float *dout, const float *inp,
                             const float *w, size_t N, int C, int V, int ldo);

/* Causal multi-head attention. qkv (B,T,3D) holds [q | k | v], heads contiguous inside each
 * (head h of q is columns h*hs .. h*hs+hs-1, hs = D/H). out (B,T,D) overwritten; att (B,H,T,T)
 * saves the softmax probabilities (entries above the diagonal are zero). */
void mpt_attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int H);
/* dqkv (B,T,3D) += ; datt (B,H,T,T) is scratch (overwritten). */
void mpt_attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                            const float *att, int B, int T, int D, int H);

/* GELU, tanh approximation ("gelu_new"). out overwritten; dinp += dout * gelu'(inp). */
void mpt_gelu_forward(float *out, const float *inp, size_t N);
void mpt_gelu_backward(float *dinp, const float *inp, const float *dout, size_t N);

/* out = a + b (out may alias a). */
void mpt_residual_forward(float *out, const float *a, const float *b, size_t N);
/* out(N,C) += bias(C) on every row */
void mpt_add_rows(float *out, const float *bias, size_t N, int C);
/* y += x */
void mpt_add_inplace(float *y, const float *x, size_t N);
/* x[0..n) = 0, threaded (each thread a contiguous block) when n is large: the gradients' zeroing
 * at the start of a step. Call from one thread (inside a region: one plain memset). */
void mpt_zero(float *x, size_t n);

/* Fused softmax cross-entropy over a padded vocabulary. logits (N,Vp): only the first V columns
 * are real. On return losses(N) = -log softmax(logits)[target] and logits is OVERWRITTEN with
 * dloss * d(loss)/d(logits) (padded columns set to 0). targets (N) < V. */
void mpt_crossentropy_fused(float *logits, float *losses, const int32_t *targets, size_t N,
                            int V, int Vp, float dloss);

/* ---- vocabulary-parallel pieces (tensor parallelism) -----------------------------------------
 * A rank holds vocabulary rows [v0, v0 + Vl) of wte; only the first Vr <= Vl are real. */
/* out(B,T,D) = wte_local[tok - v0] for tokens in [v0, v0+Vl), else 0 (summed over tp later). */
void mpt_embed_masked_forward(float *out, const int32_t *inp, const float *wte, int B, int T,
                              int D, int v0, int Vl);
/* dwte_local += dout rows of the tokens in range. */
void mpt_embed_masked_backward(float *dwte, const float *dout, const int32_t *inp, int B, int T,
                               int D, int v0, int Vl);
/* Rows row0 .. row0+nrows-1 of the flattened (B,T) tokens: out(nrows,D) += wpe[row % T].
 * dwpe(T,D) += sum over b of dout(B,T,D). */
void mpt_positions_forward(float *out, const float *wpe, size_t row0, size_t nrows, int T, int D);
void mpt_positions_backward(float *dwpe, const float *dout, int B, int T, int D);
/* mx(N) = max of each row's first Vr columns (-FLT_MAX when Vr == 0). logits (N, ld). */
void mpt_vocab_rowmax(float *mx, const float *logits, size_t N, int Vr, int ld);
/* se(N) = sum exp(l - mx) over the first Vr columns; tl(N) = logit of the target when it lies
 * in [v0, v0 + Vr), else 0. */
void mpt_vocab_sumexp(float *se, float *tl, const float *logits, const float *mx,
                      const int32_t *targets, size_t N, int Vr, int ld, int v0);
/* logits (N, ld) overwritten with dloss * (softmax - onehot) for its columns, given the global
 * mx and se; columns in [Vr, ld) set to 0. */
void mpt_vocab_grad(float *logits, const float *mx, const float *se, const int32_t *targets,
                    size_t N, int Vr, int ld, int v0, float dloss);

/* Softmax probabilities of one row over its first V entries (for sampling); probs (V). */
void mpt_softmax_row(float *probs, const float *logits, int V, float temperature);

#endif
