/* kernels_internal.h — helpers shared by kernels.c, kernels_vecmath.c and kernels_fused.c (not
 * public). */
#ifndef MPT_KERNELS_INTERNAL_H
#define MPT_KERNELS_INTERNAL_H

#include <math.h>
#include <omp.h>

static inline int omp_threads_(void) { return omp_get_num_threads(); }
static inline int omp_thread_id_(void) { return omp_get_thread_num(); }

#define GELU_S 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

/* gelu_tanh(x) = 0.5 x (1 + tanh(u)), u = GELU_S (x + GELU_C x^3), written with the identity
 * 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)): one vector expf and one division
 * instead of tanhf (cheaper with libmvec; bench/profile shows the GELU share). -2u is clamped to +-80 so that exp stays
 * finite (fast-math: no infinities); beyond that sigmoid is 0 or 1 to fp32 precision anyway. */
static inline float mpt_gelu_exp_m2u_(float x) {
    float z = -2.0f * GELU_S * (x + GELU_C * x * x * x);
    return expf(z > 80.0f ? 80.0f : (z < -80.0f ? -80.0f : z));
}

/* With oneDNN as the back end, single-threaded fp32 GEMMs C(M,N) = A^T B (ta 'T', tb 'N': the
 * weight gradients X^T dY, the attention's dV and dK tile products) whose output has at most
 * this many elements run on OpenBLAS instead: oneDNN's sgemm reaches 67-81% of its large-GEMM
 * rate on them (attn.c_proj's 384 x 384 x 2048 and the byte head's 256 x 384 x 2048 weight
 * gradients, attention's 256 x 64 x 64 tiles), OpenBLAS 77-94% (bench/gemm_rates.c: one
 * thread, CPU time, 9 rounds). Larger outputs (qkv, c_fc, c_proj at D 384) are as fast or
 * faster on oneDNN, and so are all other layouts. Library-threaded calls keep oneDNN: OpenBLAS
 * threads these small shapes worse. Fixed by shape, so results are reproducible run to run.
 * BLIS 0.9.0 (zen3 sub-configuration, bench/blis/gemm_blis.h, measured by bench_gemm_rates only) routes no shape: on one thread, CPU
 * time, it was never clearly above oneDNN on a shape of the bench model's or GPT-2 124M's step
 * (Aᵀ·B weight gradients 51-54% of the FMA peak against oneDNN's 62-76%, attention's Q Kᵀ
 * tiles 30-33% against 58-61%; bench/results/gemm_rates_*.txt, 2026-11-30 under load). */
#define MPT_GEMM_TN_BLAS_MAX_ ((size_t)384 * 384)
static inline int mpt_gemm_tn_blas_(char ta, char tb, size_t M, size_t N) {
    return ta == 'T' && tb == 'N' && M * N <= MPT_GEMM_TN_BLAS_MAX_;
}

/* row[0..n) = softmax(row[0..n)) in place; the scale is already applied. Single-threaded. */
void mpt_softmax_inplace_(float *row, int n);

#endif
