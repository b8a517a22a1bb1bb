/* moe_experts.h — the experts' GEMM work of one MoE block on this rank (model/moe.c's helper,
 * not public): forward, input-gradient backward and weight gradients over the received rows,
 * sorted into one contiguous run per local expert (off[j] .. off[j+1] for local expert j).
 *
 * Threading: an expert's GEMMs are small (M = the rows it got, about N*K/E), and a GEMM that
 * the library threads itself forks a team per call and splits that small M again. Here one
 * parallel region runs (local expert, row tile) tasks: the forward and the input-gradient path
 * are independent per row, so each task runs its GEMMs and its GELU on one thread (the kernels
 * see omp_in_parallel and stay single-threaded). An expert is one tile (the GEMMs at its full
 * M) when there are at least twice as many local experts as threads, else it is cut into
 * equal tiles for about two tasks per thread. The weight gradients sum over an expert's rows,
 * so they run one expert per task. Call from one thread (outside a parallel region).
 *
 * w, g: the tensor tables at local expert 0's c_fc.weight (4 tensors per expert: c_fc.weight
 * [D, F], c_fc.bias [F], c_proj.weight [F, D], c_proj.bias [D]). */
#ifndef MPT_MOE_EXPERTS_H
#define MPT_MOE_EXPERTS_H

#include <stddef.h>
#include <stdint.h>

/* h (R, F) = xr W_fc (pre-activation, kept), hg = gelu(h + b_fc) (h keeps the bias added),
 * y (R, D) = hg W_proj + b_proj; every output overwritten. */
void mpt_moe_experts_forward(float *y, float *h, float *hg, const float *xr,
                             float *const *w, const int32_t *off, size_t El, size_t D, size_t F);

/* The input-gradient backward from dyr (R, D), the gradient of y: dhg (R, F) = dyr W_proj^T,
 * dh = dhg * gelu'(h) (both overwritten; dh is what the weight gradients need), dxr (R, D) =
 * dh W_fc^T (overwritten). The GEMMs run with beta = 0: no zeroing pass. */
void mpt_moe_experts_backward(float *dxr, float *dh, float *dhg, const float *dyr,
                              const float *xr, const float *h, const float *hg, float *const *w,
                              const int32_t *off, size_t El, size_t D, size_t F);

/* The weight gradients, accumulated (+=) into g: W_proj += hg^T dyr, b_proj += colsum dyr,
 * W_fc += xr^T dh, b_fc += colsum dh. One expert per task when there are at least as many
 * local experts as threads; otherwise each GEMM is threaded by the library. */
void mpt_moe_experts_weights(float *const *g, const float *dyr, const float *dh,
                             const float *xr, const float *hg, const int32_t *off, size_t El,
                             size_t D, size_t F);

#endif
